"""The ``Task`` protocol: what a verifiable task gives the rest of tsm.

A task draws a problem from an explicit :class:`random.Random` (or rejects the draw), renders
the chat messages that pose it, and names the ground truth the reward compares against. The
dataset builder only needs these three; checking answers lives in ``tsm.reward``.
"""

from __future__ import annotations

import random
from typing import Any, Protocol, runtime_checkable

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


class Rejected(Exception):
    """A draw the task refuses (too long, not finite, ...); ``reason`` is a short stable key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@runtime_checkable
class Task(Protocol):
    """A task: ``sample`` a problem, pose it as ``messages``, and give its ``ground_truth``."""

    name: str

    def sample(self, rng: random.Random) -> Any:
        """One problem drawn from ``rng``; raises :class:`Rejected` for a refused draw."""
        ...

    def messages(self, problem: Any, rng: random.Random) -> list[dict[str, str]]:
        """Chat messages (``role``/``content``) that pose ``problem``; ``rng`` picks the wording."""
        ...

    def ground_truth(self, problem: Any) -> str:
        """The reference answer as the reward expects it."""
        ...
