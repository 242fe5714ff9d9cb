"""Generate responses for prompts, score them with the reward, and summarize as Accuracy@k.

Used by the SFT stage's ``val/accuracy@1``, by ``train.py``'s before/after test evaluation and
by ``evaluate.py``. Metric names match the logs: ``accuracy@1`` is the first sample of each
prompt, ``accuracy@k`` any of the ``n`` samples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tsm.rollout.base import RolloutEngine, Rollouts, SamplingParams

# Score reasons that mean "a box was found and its content parsed"
_PARSED = {"correct", "wrong"}


@dataclass
class EvalResult:
    metrics: dict[str, float]
    responses: list[list[str]]  # [prompt][sample]
    scores: list[list[float]]
    reasons: list[list[str]] = field(default_factory=list)
    response_tokens: list[list[int]] = field(default_factory=list)


def summarize(
    scores: Sequence[Sequence[Any]],
    response_tokens: Sequence[Sequence[int]] | None = None,
    function_types: Sequence[str] | None = None,
) -> dict[str, float]:
    """Metrics from per-prompt lists of ``Score`` objects (``.value``, ``.correct``, ``.reason``)."""
    n_prompts = len(scores)
    if n_prompts == 0:
        raise ValueError("nothing to summarize: no prompts")
    k = len(scores[0])
    flat = [s for group in scores for s in group]
    m: dict[str, float] = {
        "n_prompts": float(n_prompts),
        "n_samples": float(k),
        "accuracy@1": sum(bool(g[0].correct) for g in scores) / n_prompts,
        f"accuracy@{k}": sum(any(s.correct for s in g) for g in scores) / n_prompts,
        "reward/mean": sum(s.value for s in flat) / len(flat),
        "boxed_rate": sum(s.reason != "no_box" for s in flat) / len(flat),
        "parse_rate": sum(s.reason in _PARSED for s in flat) / len(flat),
        "timeouts": float(sum(s.reason == "timeout" for s in flat)),
    }
    if response_tokens is not None:
        lens = [t for group in response_tokens for t in group]
        m["response_tokens/mean"] = sum(lens) / max(1, len(lens))
    if function_types is not None:
        by_type: dict[str, list[bool]] = defaultdict(list)
        for t, g in zip(function_types, scores):
            by_type[t].append(bool(g[0].correct))
        for t, v in sorted(by_type.items()):
            m[f"accuracy/{t}"] = sum(v) / len(v)
    return m


def generate_and_score(
    engine: RolloutEngine,
    prompt_ids: Sequence[Sequence[int]],
    ground_truths: Sequence[str],
    sampling: SamplingParams,
    reward: Any,
    n: int = 1,
    function_types: Sequence[str] | None = None,
) -> EvalResult:
    """``reward(responses, ground_truths)`` (a ``tsm.reward.RewardScorer``) scores the flat samples."""
    if len(prompt_ids) != len(ground_truths):
        raise ValueError("one ground truth per prompt")
    ro: Rollouts = engine.generate(prompt_ids, n=n, sampling=sampling)
    batch = reward(ro.texts, [ground_truths[i] for i in ro.prompt_index])
    flat_scores = [batch[i] for i in range(len(batch))]
    groups = [flat_scores[i * n : (i + 1) * n] for i in range(len(prompt_ids))]
    tokens = [[len(ro.token_ids[i * n + j]) for j in range(n)] for i in range(len(prompt_ids))]
    metrics = summarize(groups, tokens, function_types)
    metrics["tokens_per_s"] = ro.stats.get("tokens_per_s", 0.0)
    return EvalResult(
        metrics=metrics,
        responses=[ro.texts[i * n : (i + 1) * n] for i in range(len(prompt_ids))],
        scores=[[s.value for s in g] for g in groups],
        reasons=[[s.reason for s in g] for g in groups],
        response_tokens=tokens,
    )
