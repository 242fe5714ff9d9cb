"""Where GRPO spends its rollouts: dynamic sampling, a pass-rate band, a replay of failed prompts.

At 90% accuracy most groups of a GRPO step are all-correct: their advantages are zero and they
cost a rollout and a backward pass for nothing. Three knobs (``grpo.module.dynamic_sampling``):

* **Dynamic sampling with refill** (DAPO, arXiv 2503.14476): a step samples groups for
  ``ceil(oversample x batch)`` prompts, keeps the informative ones, and draws more prompts (another
  rollout round) until it has its batch of kept groups or ``max_rounds`` rounds are spent; the
  update trains on at most ``batch`` kept groups.
* **A pass-rate band** (online difficulty filtering, arXiv 2504.03380): a group is kept when the
  share of correct samples ``p`` lies in ``[min_pass_rate, max_pass_rate]``; groups whose rewards
  are all equal are never kept (they carry no signal), so the default band ``[0, 1]`` is DAPO's
  rule and e.g. ``[0.1, 0.7]`` keeps the prompts near the edge of the policy's competence.
* **Replay** of recently failed prompts: a prompt whose pass rate is at most ``replay.max_pass_rate``
  goes to a FIFO buffer (``replay.size`` prompts); ``replay.fraction`` of each step's first round
  comes from the buffer (oldest first), each prompt at most ``replay.max_uses`` times.

The selection is pure (:func:`keep_groups`); the buffer is saved in the GRPO checkpoint, so a
resumed run replays what an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tsm.algorithms.losses import zero_std_groups


@dataclass
class ReplayConfig:
    fraction: float = 0.0      # share of a step's first-round prompts taken from the buffer (0: off)
    size: int = 256            # buffer capacity (prompts; the oldest fall out)
    max_pass_rate: float = 0.0  # a prompt this hard or harder is stored (0: only prompts no sample solved)
    max_uses: int = 2          # times one prompt may be replayed

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.fraction) <= 1.0:
            raise ValueError(f"dynamic_sampling.replay.fraction={self.fraction!r}: must be in [0, 1]")
        if int(self.size) < 1 or int(self.max_uses) < 1:
            raise ValueError("dynamic_sampling.replay.size and max_uses must be >= 1")
        if not 0.0 <= float(self.max_pass_rate) <= 1.0:
            raise ValueError(f"dynamic_sampling.replay.max_pass_rate={self.max_pass_rate!r}: must be in [0, 1]")


@dataclass
class DynamicSampling:
    """``grpo.module.dynamic_sampling``; ``enabled: false`` is plain GRPO (every sampled group trains)."""

    enabled: bool = False
    oversample: float = 1.0     # prompts sampled per round as a multiple of the prompts still needed
    max_rounds: int = 1         # rollout rounds per step (1: no refill)
    min_pass_rate: float = 0.0  # keep a group when min_pass_rate <= correct share <= max_pass_rate ...
    max_pass_rate: float = 1.0  # ... and its rewards are not all equal
    replay: ReplayConfig = field(default_factory=ReplayConfig)

    def __post_init__(self) -> None:
        if isinstance(self.replay, Mapping):
            self.replay = ReplayConfig(**dict(self.replay))
        if float(self.oversample) < 1.0:
            raise ValueError(f"dynamic_sampling.oversample={self.oversample!r}: must be >= 1")
        if int(self.max_rounds) < 1:
            raise ValueError(f"dynamic_sampling.max_rounds={self.max_rounds!r}: must be >= 1")
        if not 0.0 <= float(self.min_pass_rate) <= float(self.max_pass_rate) <= 1.0:
            raise ValueError("dynamic_sampling: need 0 <= min_pass_rate <= max_pass_rate <= 1")

    @classmethod
    def of(cls, value: Any) -> DynamicSampling:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(**dict(value))

    def n_draw(self, needed: int) -> int:
        """Prompts to sample in a round when ``needed`` kept groups are still missing."""
        return max(1, math.ceil(needed * float(self.oversample)))


def keep_groups(rewards: torch.Tensor, correct: torch.Tensor, min_pass_rate: float = 0.0,
                max_pass_rate: float = 1.0) -> torch.Tensor:
    """Which groups to train on: ``rewards``/``correct`` are (prompts, G); returns a bool (prompts,).

    A group is kept when its rewards are not all equal and its correct share is inside the band.
    """
    p = correct.float().mean(dim=1)
    return ~zero_std_groups(rewards) & (p >= min_pass_rate - 1e-9) & (p <= max_pass_rate + 1e-9)


class ReplayBuffer:
    """FIFO of failed prompts (anything with ``token_ids`` and ``ground_truth``), with use counts."""

    def __init__(self, cfg: ReplayConfig):
        self.cfg = cfg
        self.items: deque[tuple[Any, int]] = deque()  # (prompt, times replayed)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, prompts: Sequence[Any], pass_rates: Sequence[float], uses: Sequence[int] | None = None) -> int:
        """Stores the prompts at most ``max_pass_rate`` hard that may still be replayed; returns how many."""
        n = 0
        for i, (p, rate) in enumerate(zip(prompts, pass_rates)):
            used = uses[i] if uses is not None else 0
            if rate <= self.cfg.max_pass_rate + 1e-9 and used < self.cfg.max_uses:
                self.items.append((p, used))
                n += 1
        while len(self.items) > self.cfg.size:
            self.items.popleft()
        return n

    def take(self, n: int) -> tuple[list[Any], list[int]]:
        """Up to ``n`` prompts, oldest first, with the times each was replayed before (now + 1)."""
        out, uses = [], []
        while self.items and len(out) < n:
            p, used = self.items.popleft()
            out.append(p)
            uses.append(used + 1)
        return out, uses

    def state_dict(self) -> dict[str, Any]:
        return {"prompts": [(list(p.token_ids), p.ground_truth) for p, _ in self.items],
                "uses": [u for _, u in self.items]}

    def load_state_dict(self, state: Mapping[str, Any], make_prompt) -> None:
        self.items = deque((make_prompt(ids, gt), int(u)) for (ids, gt), u in zip(state["prompts"], state["uses"]))


__all__ = ["DynamicSampling", "ReplayBuffer", "ReplayConfig", "keep_groups"]
