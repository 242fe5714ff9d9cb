"""Generate responses for prompts, score them with the reward, and summarize as Accuracy@k.

Used by the SFT stage's ``val/accuracy@1``, by ``train.py``'s before/after test evaluation and
by ``evaluate.py`` (:func:`tsm.evaluation_cli.run_evaluation`, which this core never imports). Metric names match the logs: ``accuracy@1`` is the
first sample of each prompt, ``accuracy@k`` any of the ``n`` samples, ``accuracy/<type>`` and
``count/<type>`` the per-``function_type`` Accuracy@1 and prompt count, ``rollout/*`` the
generation throughput (wall clock around the engine's ``generate``, so engines compare fairly).
W&B logging and the accuracy chart live in :mod:`tsm.evaluation_report`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsm.rollout.base import RolloutEngine, Rollouts, SamplingParams

# Score reasons that mean "a box was found and its content parsed": parse_rate (evaluation) and
# train/reward/parse_rate (GRPO) are this one share
PARSED_REASONS = frozenset({"correct", "wrong"})


@dataclass
class EvalResult:
    metrics: dict[str, float]
    responses: list[list[str]]  # [prompt][sample]
    scores: list[list[float]]
    reasons: list[list[str]] = field(default_factory=list)
    response_tokens: list[list[int]] = field(default_factory=list)
    answers: list[list[str | None]] = field(default_factory=list)  # the boxed text judged


def write_responses(path: Path, rows: Sequence[dict[str, Any]], result: EvalResult) -> None:
    """``rows`` with each one's ``responses``, ``scores``, ``answers`` and ``reasons`` as a parquet
    (atomic): what ``evaluate.py`` and ``train.py``'s test write, and what paired tests read."""
    from tsm.io import write_rows

    write_rows(path, [{**r, "responses": resp, "scores": sc, "answers": ans, "reasons": why}
                      for r, resp, sc, ans, why in zip(rows, result.responses, result.scores,
                                                       result.answers, result.reasons)])


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):  # prod_{i=n-c+1}^{n} (1 - k/i), numerically stable
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


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
        "parse_rate": sum(s.reason in PARSED_REASONS for s in flat) / len(flat),
        "timeouts": float(sum(s.reason == "timeout" for s in flat)),
    }
    from tsm.stats import wilson_interval

    m["accuracy@1/ci95_low"], m["accuracy@1/ci95_high"] = wilson_interval(
        sum(bool(g[0].correct) for g in scores), n_prompts)
    if k > 1:  # unbiased pass@j over all k samples (Chen et al. 2021), beside "any of the first k"
        for j in sorted({2 ** i for i in range(k.bit_length()) if 2 ** i <= k} | {k}):
            m[f"pass@{j}"] = sum(pass_at_k(k, sum(bool(s.correct) for s in g), j) for g in scores) / n_prompts
    if response_tokens is not None:
        lens = [t for group in response_tokens for t in group]
        m["response_tokens/mean"] = sum(lens) / max(1, len(lens))
    if function_types is not None:
        by_type: dict[str, list[bool]] = defaultdict(list)
        for t, g in zip(function_types, scores):
            by_type[t].append(bool(g[0].correct))
        for t, v in sorted(by_type.items()):
            m[f"accuracy/{t}"] = sum(v) / len(v)
            m[f"count/{t}"] = float(len(v))
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


def generate_with_progress(engine: RolloutEngine, prompt_ids: Sequence[Sequence[int]], n: int,
                           sampling: SamplingParams) -> Rollouts:
    """``engine.generate`` with a progress bar: one call per engine batch (``engine.batch_size``
    sequences), longest prompts first as the HF engine orders them itself, so greedy output is the
    same as one call. Chunk ``c`` samples with seed ``seed + c`` (no stream repeats across chunks).
    An engine without ``batch_size`` (vLLM: it batches everything itself) gets one call."""
    from dataclasses import replace

    from tqdm import tqdm

    per_call = max(1, getattr(engine, "batch_size", 0) // n)
    if not getattr(engine, "batch_size", 0) or per_call >= len(prompt_ids):
        return engine.generate(prompt_ids, n=n, sampling=sampling)
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    parts: dict[int, tuple] = {}
    stats = {"seconds": 0.0, "tokens": 0.0}
    with tqdm(total=len(order), desc="generate", unit="prompt") as bar:
        for c, start in enumerate(range(0, len(order), per_call)):
            idx = order[start : start + per_call]
            seed = None if sampling.seed is None else sampling.seed + c
            ro = engine.generate([prompt_ids[i] for i in idx], n=n, sampling=replace(sampling, seed=seed))
            for j, i in enumerate(idx):
                sl = slice(j * n, (j + 1) * n)
                parts[i] = (ro.token_ids[sl], ro.texts[sl], ro.logprobs[sl], ro.finish_reasons[sl])
            for key in stats:
                stats[key] += ro.stats.get(key, 0.0)
            bar.update(len(idx))
    flat = [[x for i in range(len(prompt_ids)) for x in parts[i][f]] for f in range(4)]
    return Rollouts(prompt_index=[i for i in range(len(prompt_ids)) for _ in range(n)], token_ids=flat[0],
                    texts=flat[1], logprobs=flat[2], finish_reasons=flat[3], n=n, stats=stats)


def generate_and_score(
    engine: RolloutEngine,
    prompt_ids: Sequence[Sequence[int]],
    ground_truths: Sequence[str],
    sampling: SamplingParams,
    reward: Any,
    n: int = 1,
    function_types: Sequence[str] | None = None,
    progress: bool = False,
) -> EvalResult:
    """``reward(responses, ground_truths)`` (a ``tsm.reward.RewardScorer``) scores the flat samples.

    ``progress``: generate batch by batch under a progress bar (:func:`generate_with_progress`).
    """
    if len(prompt_ids) != len(ground_truths):
        raise ValueError("one ground truth per prompt")
    t0 = time.perf_counter()
    if progress:
        ro = generate_with_progress(engine, prompt_ids, n, sampling)
    else:
        ro = engine.generate(prompt_ids, n=n, sampling=sampling)
    seconds = max(time.perf_counter() - t0, 1e-9)
    responses = [ro.texts[i * n : (i + 1) * n] for i in range(len(prompt_ids))]  # prompt-major
    groups = score_groups(reward, responses, ground_truths)
    tokens = [[len(ro.token_ids[i * n + j]) for j in range(n)] for i in range(len(prompt_ids))]
    metrics = summarize(groups, tokens, function_types)
    metrics["truncated_rate"] = sum(r == "length" for r in ro.finish_reasons) / len(ro)  # hit max_new_tokens
    metrics["rollout/seconds"] = seconds
    metrics["rollout/responses_per_s"] = len(ro) / seconds
    metrics["rollout/tokens_per_s"] = ro.n_tokens / seconds
    return EvalResult(
        metrics=metrics,
        responses=responses,
        scores=[[s.value for s in g] for g in groups],
        reasons=[[s.reason for s in g] for g in groups],
        response_tokens=tokens,
        answers=[[s.answer for s in g] for g in groups],
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


def format_table(metrics: dict[str, float], title: str | None = None) -> str:
    """The console table: headline metrics, then Accuracy@1 per function type, then throughput."""
    lines = [title] if title else []
    k = int(metrics.get("n_samples", 1))
    head = [("accuracy@1", "pct"), (f"accuracy@{k}", "pct") if k > 1 else None,
            ("reward/mean", "num"), ("boxed_rate", "pct"), ("parse_rate", "pct"),
            ("timeouts", "int"), ("response_tokens/mean", "tokens"), ("truncated_rate", "pct")]
    shown = [(key, kind) for key, kind in filter(None, head) if key in metrics]
    width = max(20, *(len(key) for key, _ in shown))
    for key, kind in shown:
        v = metrics[key]
        text = (f"{100 * v:.1f}%" if kind == "pct" else f"{int(v)} " if kind == "int"
                else f"{v:.1f} " if kind == "tokens" else f"{v:.3f} ")
        if key == "accuracy@1" and "accuracy@1/ci95_low" in metrics:
            text += (f"  95% interval [{100 * metrics['accuracy@1/ci95_low']:.1f}, "
                     f"{100 * metrics['accuracy@1/ci95_high']:.1f}] on {int(metrics['n_prompts'])} rows")
            lines.append(f"  {key:<{width}} {text}")
            continue
        lines.append(f"  {key:<{width}} {text:>8}")
    types = sorted(key.split("/", 1)[1] for key in metrics if key.startswith("accuracy/"))
    if types:  # the % column lines up with the one above
        width = max(width, *(len(type_label(t)) + 5 for t in types))
        lines.append(f"  {'function_type':<{width - 5}}{'n':>5} {'acc@1':>8}")
        for t in types:
            n = metrics.get(f"count/{t}")
            count = str(int(n)) if n is not None else ""
            lines.append(f"  {type_label(t):<{width - 5}}{count:>5} {100 * metrics[f'accuracy/{t}']:7.1f}%")
    if "rollout/seconds" in metrics:
        n_resp = int(metrics["n_prompts"] * metrics["n_samples"])
        lines.append(f"  generation: {n_resp} responses in {metrics['rollout/seconds']:.1f} s = "
                     f"{metrics['rollout/responses_per_s']:.2f} responses/s, "
                     f"{metrics['rollout/tokens_per_s']:.1f} tokens/s")
    return "\n".join(lines)


def type_label(function_type: str) -> str:
    """A function type as tables print it: the stored key ``composite-complex`` (Diff-TSM's name,
    kept in rows and metric keys) is a random expression tree of any size, ``x + 5`` included."""
    return "random tree (composite-complex)" if function_type == "composite-complex" else function_type


def build_engine(rollout_cfg, model, tokenizer, bf16: bool = False):
    """``instantiate(rollout_cfg)(model=, tokenizer=)``; ``bf16`` decodes in bfloat16: the HF
    engine under bf16 autocast (``autocast_dtype``), an engine with weights of its own (vLLM) with
    bf16 weights (``dtype``)."""
    import inspect
    import logging

    from hydra.utils import instantiate

    make_engine = instantiate(rollout_cfg)
    extra = {}
    if bf16:
        params = inspect.signature(getattr(make_engine, "func", make_engine)).parameters
        key = next((k for k in ("autocast_dtype", "dtype") if k in params), None)
        if key is None:
            raise ValueError(f"bf16=true: {rollout_cfg._target_} takes no autocast_dtype or dtype")
        extra[key] = "bfloat16"
    logging.getLogger("tsm").info("Instantiating rollout <%s>%s", rollout_cfg._target_,
                                  f" ({next(iter(extra))}=bfloat16)" if extra else "")
    return make_engine(model=model, tokenizer=tokenizer, **extra)


def close_engine(engine) -> None:
    close = getattr(engine, "close", None)  # frees vLLM; HF has nothing to free
    if close is not None:
        close()
