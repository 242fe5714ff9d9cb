"""Score many responses at once in a persistent pool with a per-item wall-clock limit.

``RewardScorer`` owns a ``tsm.parallel.TimeoutPool`` of worker subprocesses (so it is safe from
the training process, from DataLoader workers and under DDP; no ``signal.alarm``). An item that
overruns ``timeout_s`` scores 0 with reason ``timeout``; its worker is killed and replaced, the
other items are unaffected, and order is kept. ``workers=0`` scores inline in the caller (no
time limit: the parser's size guards are then the only bound), for tests and small runs.

Each worker keeps its own gold cache, so sending a batch grouped by prompt (as GRPO does) reuses
the parsed gold across a group. The pool starts on first use and is left out when the scorer is
pickled, so a copy sent to a DDP rank or DataLoader worker starts its own.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from tsm.parallel import TaskResult, TimeoutPool
from tsm.reward.scoring import RewardConfig, Score, score
from tsm.tasks.base import get_task

__all__ = ["BatchScores", "RewardScorer", "score_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchScores:
    """Scores in input order, and how many items timed out or hit an unexpected error."""

    scores: list[Score]
    n_timeouts: int
    n_errors: int

    @property
    def values(self) -> list[float]:
        return [s.value for s in self.scores]

    @property
    def correct_frac(self) -> float:
        return sum(s.correct for s in self.scores) / len(self.scores) if self.scores else 0.0

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, i: int) -> Score:
        return self.scores[i]


def score_item(item: tuple[str, str, dict]) -> Score:
    """Pool entry point: ``(response, ground_truth, options)`` -> Score, where ``options`` are the
    ``RewardConfig`` fields and ``task`` (whose ``verify`` judges; differentiation when absent)."""
    response, ground_truth, options = item
    options = dict(options)
    task = options.pop("task", "differentiation")
    if task == "differentiation":
        return score(response, ground_truth, **options)
    return get_task(task).verify(response, ground_truth, RewardConfig(**options))


def warm_up() -> None:
    """Pool initializer: import sympy/mpmath and fill caches before the first timed item."""
    score("\\boxed{2x}", "2*x")


def _to_score(res: TaskResult) -> Score:
    if res.ok:
        return res.value
    if res.timed_out:
        return Score(0.0, False, "timeout")
    return Score(0.0, False, "error", None, res.error)


class RewardScorer:
    """The reward as a configured object: ``scorer(responses, ground_truths) -> BatchScores``.

    ``task`` names the task whose check judges (``tsm.tasks.get_task``): the derivative reward
    for ``differentiation``, the antiderivative check for ``integration``."""

    def __init__(self, correct_score: float = 1.0, format_score: float = 0.1,
                 max_answer_chars: int = 1000, max_depth: int = 20, shortness_weight: float = 0.0,
                 workers: int = 0, timeout_s: float = 5.0, chunk_size: int = 1,
                 task: str = "differentiation"):
        self.config = RewardConfig(correct_score=correct_score, format_score=format_score,
                                   max_answer_chars=max_answer_chars, max_depth=max_depth,
                                   shortness_weight=shortness_weight)
        if workers < 0 or not timeout_s > 0 or chunk_size < 1:
            raise ValueError("need workers >= 0, timeout_s > 0, chunk_size >= 1")
        self.task = get_task(task).name  # an unknown task fails here, before any scoring
        self.workers, self.timeout_s, self.chunk_size = workers, timeout_s, chunk_size
        self._pool: TimeoutPool | None = None  # started on first use, so the scorer pickles
        self.n_timeouts = 0

    @property
    def pool(self) -> TimeoutPool:
        if self._pool is None:
            self._pool = TimeoutPool("tsm.reward.batch:score_item", self.workers, self.timeout_s,
                                     init="tsm.reward.batch:warm_up" if self.workers else None)
        return self._pool

    def __getstate__(self) -> dict:
        # A copy sent to another process (DDP spawn, DataLoader worker) starts its own pool.
        return {**self.__dict__, "_pool": None}

    def __call__(self, responses: Sequence[str], ground_truths: Sequence[str]) -> BatchScores:
        if len(responses) != len(ground_truths):
            raise ValueError(f"{len(responses)} responses but {len(ground_truths)} ground truths")
        opts = {**asdict(self.config), "task": self.task}
        results = self.pool.map([(r, g, opts) for r, g in zip(responses, ground_truths)],
                                chunk_size=self.chunk_size)
        scores = [_to_score(r) for r in results]
        n_timeouts = sum(r.timed_out for r in results)
        n_errors = sum(s.reason == "error" for s in scores)
        self.n_timeouts += n_timeouts
        if n_timeouts or n_errors:
            log.warning("reward: %d timeouts, %d errors in a batch of %d", n_timeouts, n_errors,
                        len(scores))
        return BatchScores(scores, n_timeouts, n_errors)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> RewardScorer:  # noqa: PYI034 - same pattern as TimeoutPool
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score_batch(responses: Sequence[str], ground_truths: Sequence[str], *, workers: int = 0,
                timeout_s: float = 5.0, **options: float) -> BatchScores:
    """One-off batch scoring (starts and stops a pool; keep a ``RewardScorer`` to reuse one)."""
    with RewardScorer(workers=workers, timeout_s=timeout_s, **options) as scorer:
        return scorer(responses, ground_truths)
