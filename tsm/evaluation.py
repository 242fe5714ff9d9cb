"""Generate responses for prompts, score them with the reward, and summarize as Accuracy@k.

Used by the SFT stage's ``val/accuracy@1``, by ``train.py``'s before/after test evaluation and
by ``evaluate.py``. Metric names match the logs: ``accuracy@1`` is the first sample of each
prompt, ``accuracy@k`` any of the ``n`` samples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def score_groups(reward: Any, responses: Sequence[Sequence[str]], ground_truths: Sequence[str]) -> list[list[Any]]:
    """Scores ``responses[i][j]`` against ``ground_truths[i]`` in one reward batch; same shape back."""
    if len(responses) != len(ground_truths):
        raise ValueError("one ground truth per prompt")
    flat = reward([r for group in responses for r in group],
                  [g for g, group in zip(ground_truths, responses) for _ in group])
    out, k = [], 0
    for group in responses:
        out.append([flat[k + j] for j in range(len(group))])
        k += len(group)
    return out


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
    responses = [ro.texts[i * n : (i + 1) * n] for i in range(len(prompt_ids))]  # prompt-major
    groups = score_groups(reward, responses, ground_truths)
    tokens = [[len(ro.token_ids[i * n + j]) for j in range(n)] for i in range(len(prompt_ids))]
    metrics = summarize(groups, tokens, function_types)
    metrics["tokens_per_s"] = ro.stats.get("tokens_per_s", 0.0)
    return EvalResult(
        metrics=metrics,
        responses=responses,
        scores=[[s.value for s in g] for g in groups],
        reasons=[[s.reason for s in g] for g in groups],
        response_tokens=tokens,
    )


# -- evaluate.py ---------------------------------------------------------------------------------


def resolve_checkpoint(checkpoint: str) -> str:
    """A Lightning ``.ckpt`` maps to the HF folder saved beside it at the same step; others pass through."""
    if not str(checkpoint).endswith(".ckpt"):
        return str(checkpoint)
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    step = torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"]
    folder = path.parent / f"hf-step{step}"
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{checkpoint} is at step {step} but {folder} (its HF export) is missing")
    return str(folder)


def format_table(metrics: dict[str, float]) -> str:
    """The console table: one metric a line, percentages where they are fractions."""
    pct = ("accuracy", "rate", "reward/mean")
    width = max(len(k) for k in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -------"]
    for k, v in metrics.items():
        shown = f"{100 * v:6.1f}%" if any(p in k for p in pct) and "reward" not in k else f"{v:8.3f}"
        lines.append(f"{k:<{width}}  {shown}")
    return "\n".join(lines)


def run_evaluation(cfg) -> dict[str, float]:
    """Generate (or read) responses, score them, write metrics.json and responses.parquet."""
    import json
    import logging

    import pyarrow as pa
    import pyarrow.parquet as pq
    from hydra.utils import instantiate

    from tsm.data.build import write_atomic
    from tsm.data.datamodule import read_rows

    log = logging.getLogger("tsm")
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    reward = instantiate(cfg.reward)
    if cfg.responses:
        rows = read_rows(cfg.responses)
        if not rows or "responses" not in rows[0]:
            raise ValueError(f"{cfg.responses} has no 'responses' column")
    else:
        if cfg.data_path:
            rows = read_rows(cfg.data_path)
        else:
            from tsm.data.build import build_dataset

            rows = read_rows(str(build_dataset(instantiate(cfg.data), progress=True).test))
    if cfg.n_rows is not None:
        rows = rows[: cfg.n_rows]
    if not rows:
        raise ValueError("no rows to evaluate")
    gts = [r["reward_model"]["ground_truth"] for r in rows]
    types = [r.get("extra_info", {}).get("function_type", "unknown") for r in rows]
    if cfg.responses:
        n = len(rows[0]["responses"])
        if any(len(r["responses"]) != n for r in rows):
            raise ValueError("every row needs the same number of responses")
        responses = [list(r["responses"]) for r in rows]
        scores = score_groups(reward, responses, gts)
        metrics = summarize(scores, function_types=types)
        values = [[s.value for s in g] for g in scores]
    else:
        import torch

        from tsm.data.sft import encode_prompt
        from tsm.models import load_checkpoint
        from tsm.rollout.hf import HFEngine

        ckpt = resolve_checkpoint(cfg.checkpoint)
        log.info("Loading checkpoint %s", ckpt)
        model, tokenizer = load_checkpoint(ckpt)
        engine = HFEngine(model, tokenizer, batch_size=cfg.batch_size,
                          autocast_dtype=torch.bfloat16 if cfg.bf16 else None)
        result = generate_and_score(
            engine, [encode_prompt(tokenizer, r["prompt"]) for r in rows], gts,
            instantiate(cfg.sampling), reward, n=cfg.n_samples, function_types=types,
        )
        metrics, responses, values = result.metrics, result.responses, result.scores
    table = pa.Table.from_pylist(
        [{**r, "responses": resp, "scores": sc} for r, resp, sc in zip(rows, responses, values)]
    )
    write_atomic(out / "responses.parquet", lambda tmp: pq.write_table(table, tmp))
    text = json.dumps(metrics, indent=2)
    write_atomic(out / "metrics.json", lambda tmp: tmp.write_text(text))
    log.info("\n%s", format_table(metrics))
    return metrics
