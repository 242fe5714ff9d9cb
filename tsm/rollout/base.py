"""The rollout-engine contract: token ids in, sampled completions with per-token logprobs out.

Training (GRPO), validation accuracy and evaluate.py all generate through an engine, so one
place decides sampling semantics. An engine takes *token ids* (already chat-templated prompts),
never text, so the policy and the sampler see exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class SamplingParams:
    """What to sample. ``temperature == 0`` means greedy (top_p/top_k ignored).

    ``num_beams > 1`` (with ``temperature == 0``): deterministic beam search, the ``n`` best beams
    per prompt by mean token log-probability (HF's default length penalty 1.0); HF engine only.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    seed: int | None = None
    num_beams: int = 1

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.num_beams > 1 and self.temperature != 0:
            raise ValueError("beam search is deterministic: num_beams > 1 needs temperature 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Rollouts:
    """``n`` completions per prompt, flattened prompt-major: completion ``i*n + j`` is sample j of prompt i.

    ``logprobs[k][t]`` is the sampler's log-probability of ``token_ids[k][t]`` under the
    *processed* distribution it sampled from at temperature 1 (greedy: the raw model distribution).
    ``finish_reasons`` is "stop" (EOS emitted, included in token_ids) or "length" (truncated).
    """

    prompt_index: list[int]
    token_ids: list[list[int]]
    texts: list[str]
    logprobs: list[list[float]]
    finish_reasons: list[str]
    n: int = 1
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.token_ids)
        for name in ("prompt_index", "texts", "logprobs", "finish_reasons"):
            if len(getattr(self, name)) != k:
                raise ValueError(f"Rollouts.{name} has {len(getattr(self, name))} entries, expected {k}")
        for ids, lps in zip(self.token_ids, self.logprobs):
            if len(ids) != len(lps):
                raise ValueError("each completion needs one logprob per token")
        bad = set(self.finish_reasons) - {"stop", "length"}
        if bad:
            raise ValueError(f"unknown finish reasons {sorted(bad)}")

    @classmethod
    def decoded(cls, tokenizer: Any, prompt_index: list[int], token_ids: list[list[int]],
                logprobs: list[list[float]], finish_reasons: list[str], n: int,
                seconds: float) -> Rollouts:
        """Rollouts with their texts decoded by ``tokenizer`` and the engines' common stats."""
        n_tok = sum(len(t) for t in token_ids)
        return cls(
            prompt_index=prompt_index,
            token_ids=token_ids,
            texts=tokenizer.batch_decode(token_ids, skip_special_tokens=True),
            logprobs=logprobs,
            finish_reasons=finish_reasons,
            n=n,
            stats={"seconds": seconds, "tokens": float(n_tok), "tokens_per_s": n_tok / max(seconds, 1e-9)},
        )

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.token_ids)


@runtime_checkable
class RolloutEngine(Protocol):
    """What every engine does. The shipped engines also have ``close()`` (and are context managers)
    and ``shares_policy_weights`` (True: it samples from the policy's own parameters, so
    `tsm.rollout.sync.WeightSync` skips it); callers reach those with ``getattr`` so that test
    doubles need only the two methods below."""

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> Rollouts: ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...
