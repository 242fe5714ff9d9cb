r"""Easiest-first SFT curricula: competence-based sampling (Platanios et al., NAACL 2019).

Every training example gets a difficulty; the examples are ranked easiest first. At global step
``g < steps`` a batch is drawn (without replacement within the batch) from the easiest
``competence(g)`` fraction of that ranking, where competence grows as the square root of time from
``start`` at step 0 to 1 at ``steps``::

    c(g) = min(1, sqrt(start^2 + (1 - start^2) * g / steps))

From step ``steps`` on, batches are the ordinary shuffled epoch plan. ``by`` chooses the ranking:

- ``length``: the number of target tokens (the derivative's length, or the derivation's), a
  sequence-length curriculum;
- ``type``: template rows before random-tree rows (``composite-complex``), each group by target
  length: the simplicity schedule, i.e. the share of random trees rises from 0 to the dataset's
  mix as competence reaches 1.

Ties are broken by a seeded shuffle, so equal-difficulty examples are not taken in file order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tsm.math.sampling import TREE_TYPE

CURRICULUM_KEYS = ("length", "type")


@dataclass(frozen=True)
class Curriculum:
    by: str | None = None  # None (off) | "length" | "type"
    steps: int = 0  # global optimizer steps over which competence grows to 1
    start: float = 0.2  # competence at step 0: the easiest fraction available at first

    def __post_init__(self) -> None:
        if self.by is not None and self.by not in CURRICULUM_KEYS:
            raise ValueError(f"curriculum.by must be null or one of {CURRICULUM_KEYS}, got {self.by!r}")
        if self.steps < 0:
            raise ValueError(f"curriculum.steps must be >= 0, got {self.steps}")
        if not 0.0 < self.start <= 1.0:
            raise ValueError(f"curriculum.start must be in (0, 1], got {self.start}")
        if self.by is not None and self.steps == 0:
            raise ValueError(f"curriculum.by={self.by!r} needs curriculum.steps > 0")

    @property
    def active(self) -> bool:
        return self.by is not None  # validated above: a set `by` comes with steps > 0

    def competence(self, step: int) -> float:
        """The fraction of the ranking (easiest first) that batches at global ``step`` draw from."""
        if not self.active or step >= self.steps:
            return 1.0
        c0 = self.start * self.start
        return math.sqrt(c0 + (1.0 - c0) * max(0, step) / self.steps)  # <= 1 since step < steps

    def rank(self, target_lengths: Sequence[int], function_types: Sequence[str | None], seed: int) -> list[int]:
        """Example indices, easiest first, for this curriculum's ``by``."""
        if len(target_lengths) != len(function_types):
            raise ValueError("target_lengths and function_types differ in length")
        rng = random.Random(seed * 7919 + 17)
        tiebreak = list(range(len(target_lengths)))
        rng.shuffle(tiebreak)
        if self.by == "type":
            key = lambda i: (function_types[i] == TREE_TYPE, target_lengths[i], tiebreak[i])
        else:
            key = lambda i: (target_lengths[i], tiebreak[i])
        return sorted(range(len(target_lengths)), key=key)

    def batch(self, ranking: Sequence[int], step: int, batch_size: int, seed: int) -> list[int]:
        """The indices of global ``step``'s batch: a seeded draw from the easiest competence share."""
        pool = max(batch_size, math.ceil(self.competence(step) * len(ranking)))
        rng = random.Random((seed * 1_000_003 + step) * 31 + 5)
        return [ranking[j] for j in rng.sample(range(pool), batch_size)]  # positions: no copy of the ranking
