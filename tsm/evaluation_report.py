"""What ``evaluate.py`` shows besides metrics.json: the accuracy-by-type chart and the W&B run.

* :func:`plot_accuracy_by_type` always writes a PNG (matplotlib, Agg backend: no display needed).
* :func:`start_wandb` / :func:`log_wandb` / :func:`finish_wandb`: a W&B run in ``cfg.wandb.mode``
  (offline by default; ``wandb sync <output_dir>/wandb/offline-run-*`` uploads it later) with the
  metrics (same names as metrics.json), a table of sampled rows and a bar chart of accuracy by
  ``function_type``. The caller finishes the run in a ``finally`` (failed runs get exit code 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE_COLUMNS = ["index", "function_type", "prompt", "response", "answer", "ground_truth", "score",
                 "reason"]


@dataclass(frozen=True)
class SampleRow:
    """One row of the W&B samples table (first sample of a prompt)."""

    index: int
    function_type: str
    prompt: str  # the user message
    response: str
    answer: str | None
    ground_truth: str
    score: float
    reason: str

    def as_list(self) -> list[Any]:
        return [getattr(self, c) for c in TABLE_COLUMNS]


def sample_rows(rows: list[dict[str, Any]], result: Any, cap: int) -> list[SampleRow]:
    """At most ``cap`` rows at evenly spaced positions (so every part of the set shows)."""
    n = len(rows)
    picks = sorted({j * n // min(cap, n) for j in range(min(cap, n))}) if cap > 0 else []
    out = []
    for i in picks:
        r = rows[i]
        user = [m["content"] for m in r["prompt"] if m["role"] == "user"]
        out.append(SampleRow(
            index=i, function_type=r.get("extra_info", {}).get("function_type", "unknown"),
            prompt=user[-1] if user else "", response=result.responses[i][0],
            answer=result.answers[i][0] if result.answers else None,
            ground_truth=r["reward_model"]["ground_truth"], score=float(result.scores[i][0]),
            reason=result.reasons[i][0] if result.reasons else "",
        ))
    return out


def accuracy_by_type(metrics: dict[str, float]) -> list[tuple[str, float, int]]:
    """``(function_type, accuracy@1, count)`` from the metrics, in name order."""
    types = sorted(k.split("/", 1)[1] for k in metrics if k.startswith("accuracy/"))
    return [(t, metrics[f"accuracy/{t}"], int(metrics.get(f"count/{t}", 0))) for t in types]


def plot_accuracy_by_type(metrics: dict[str, float], path: Path, title: str = "") -> Path:
    """A horizontal bar per function type (Accuracy@1, with k/n), the overall accuracy as a line."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    bars = accuracy_by_type(metrics)
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.42 * max(1, len(bars))), dpi=120)
    from tsm.evaluation import type_label

    names = [type_label(t) for t, _, _ in bars]
    values = [100 * a for _, a, _ in bars]
    ax.barh(names, values, color="#4C72B0", height=0.6)
    ax.invert_yaxis()  # first name on top, like the console table
    for y, (_, acc, n) in enumerate(bars):
        label = f"{100 * acc:.1f}%  ({round(acc * n)}/{n})" if n else f"{100 * acc:.1f}%"
        if acc > 0.75:  # no room right of a long bar: write inside it, in white
            ax.text(100 * acc - 1.5, y, label, va="center", ha="right", fontsize=9, color="white")
        else:
            ax.text(100 * acc + 1.5, y, label, va="center", fontsize=9)
    overall = 100 * metrics["accuracy@1"]
    ax.axvline(overall, color="#C44E52", linestyle="--", linewidth=1.2)
    ax.set_xlim(0, 100)
    ax.set_xlabel("Accuracy@1 (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Accuracy@1 by function type (dashed: overall {overall:.1f}% of "
                 f"{int(metrics['n_prompts'])} prompts)", fontsize=11)
    if title:
        fig.suptitle(title, fontsize=8, color="#555555", y=0.995, wrap=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def start_wandb(wandb_cfg: Any, cfg: Any, out: Path):
    """A W&B run under ``out/wandb`` with the resolved config, or None when disabled."""
    if not wandb_cfg.enabled:
        return None
    import wandb
    from omegaconf import OmegaConf

    out.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=wandb_cfg.project, name=wandb_cfg.name, tags=list(wandb_cfg.tags or []),
        mode=wandb_cfg.mode, dir=str(out), job_type="evaluate",
        config=OmegaConf.to_container(cfg, resolve=True),
        reinit="finish_previous",  # a multirun in one process: never log into the last job's run
        settings=wandb.Settings(quiet=True),  # the console table stays the last thing printed
    )


def log_wandb(run: Any, metrics: dict[str, float], samples: list[SampleRow]) -> None:
    """Metrics (as metrics.json names them), the samples table and the accuracy bar chart."""
    import wandb

    run.log(dict(metrics))
    run.summary.update(dict(metrics))
    run.log({"samples": wandb.Table(columns=TABLE_COLUMNS, data=[s.as_list() for s in samples])})
    data = [[t, 100 * a] for t, a, _ in accuracy_by_type(metrics)]
    if data:
        chart = wandb.Table(columns=["function_type", "accuracy@1 (%)"], data=data)
        run.log({"accuracy_by_type": wandb.plot.bar(chart, "function_type", "accuracy@1 (%)",
                                                    title="Accuracy@1 by function type")})


def finish_wandb(run: Any, ok: bool) -> None:
    run.finish(exit_code=0 if ok else 1)
