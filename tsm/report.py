"""One table and one plot from a multirun folder: ``python -m tsm.report multirun/<task>/<time>``.

A multirun folder holds a subfolder per job (``hydra.sweep.subdir``), each with ``.hydra/``
(``overrides.yaml``, ``config.yaml``) and, once the job finished, ``metrics.json``: train.py's has
``before``/``after`` test metrics, evaluate.py's the metrics themselves (taken as "after"). A job
without ``metrics.json`` (failed, or still running) is a row with status ``no metrics``.

The report writes into the folder (or ``--out``):
  ``report.csv``  one row per job, raw numbers (accuracies as fractions)
  ``report.md``   the same as a markdown table (also printed)
  ``report.png``  test Accuracy@1 after training against parameter count (log x), one line per
                  data simplicity (and per value of any other swept key besides the model); beside
                  it the final ``val/loss`` (last one in the job's CSV logs), when there is one
and, when W&B is on (``--wandb on``; ``auto``: the jobs logged to W&B), the table, a line chart and
the PNG to a ``job_type=report`` W&B run (offline unless a key is set, see tsm.tracking).

Parameter count: ``metrics["model/parameters"]`` when the job recorded it, else counted from the
safetensors header of the job's last exported HF folder (no weights are loaded).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger("tsm")

PARAMS_KEY = "model/parameters"
# keys shown in their own columns; every other override that differs between jobs gets one too
_FIXED_KEYS = ("model", "data.simplicity")


@dataclass(frozen=True)
class JobResult:
    job: str                                   # the job's subfolder name (Hydra job number)
    overrides: dict[str, str]                  # the job's command-line overrides, key -> value
    metrics: dict[str, Any] | None             # metrics.json; None when the job left none
    task: str | None = None                    # cfg.task_name
    model: str | None = None                   # cfg.model.name
    simplicity: float | None = None            # cfg.data.simplicity
    parameters: int | None = None
    val_loss: float | None = None              # the last val/loss in the job's CSV logs
    logged_to_wandb: bool = False              # the job's config had a wandb logger
    extra: dict[str, str] = field(default_factory=dict)  # swept keys besides model and simplicity
    problem: str = "differentiation"           # cfg.data.task: which tsm task (tsm/tasks/<name>/) the job solved

    @property
    def after(self) -> dict[str, Any]:
        m = self.metrics or {}
        return m.get("after") or (m if "accuracy@1" in m else {})

    @property
    def before(self) -> dict[str, Any]:
        return (self.metrics or {}).get("before") or {}


def _override_dict(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def count_hf_parameters(folder: str | Path) -> int | None:
    """Parameters stored in an HF folder's safetensors files (tied weights are stored once)."""
    from safetensors import safe_open

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with safe_open(str(f), framework="np") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())  # noqa: SIM118 (not iterable)
    return total


def _parameters(metrics: dict[str, Any] | None) -> int | None:
    if not metrics:
        return None
    if metrics.get(PARAMS_KEY):
        return int(metrics[PARAMS_KEY])
    exports = [v for k, v in metrics.items() if k.endswith("/hf") and isinstance(v, str)]
    for folder in reversed(exports):  # the last stage's export: json keeps the stages' order
        if Path(folder).exists():
            return count_hf_parameters(folder)
    return None


def last_val_loss(job_dir: Path, metrics: dict[str, Any] | None) -> float | None:
    """The last ``val/loss`` that the job's CSV logger wrote, from its last stage that has one."""
    stages = [k[: -len("/hf")] for k in (metrics or {}) if k.endswith("/hf")]
    for stage in reversed(stages):
        files = sorted((job_dir / stage).glob("csv/version_*/metrics.csv"),
                       key=lambda f: int(f.parent.name.split("_")[-1]))
        if not files:
            continue
        with open(files[-1]) as fh:
            values = [r["val/loss"] for r in csv.DictReader(fh) if r.get("val/loss")]
        if values:
            return float(values[-1])
    return None


def _select(cfg: Any, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job subfolders (those with a ``.hydra`` folder), in job-number order."""
    dirs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def collect(sweep_dir: str | Path) -> list[JobResult]:
    """One :class:`JobResult` per job subfolder of ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    raw = []
    for d in job_dirs(sweep_dir):
        overrides_file = d / ".hydra" / "overrides.yaml"
        overrides = _override_dict(OmegaConf.load(overrides_file)) if overrides_file.exists() else {}
        cfg_file = d / ".hydra" / "config.yaml"
        cfg = OmegaConf.load(cfg_file) if cfg_file.exists() else OmegaConf.create()
        metrics_file = d / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        simplicity = _select(cfg, "data.simplicity")
        raw.append(JobResult(
            job=d.name, overrides=overrides, metrics=metrics, task=_select(cfg, "task_name"),
            model=_select(cfg, "model.name"),
            simplicity=float(simplicity) if simplicity is not None else None,
            parameters=_parameters(metrics), val_loss=last_val_loss(d, metrics), logged_to_wandb=_select(cfg, "logger.wandb") is not None,
            problem=_select(cfg, "data.task") or "differentiation",
        ))
    swept = varying_keys(raw)
    return [JobResult(**{**r.__dict__, "extra": {k: r.overrides.get(k, "") for k in swept}}) for r in raw]


def varying_keys(jobs: Sequence[JobResult]) -> list[str]:
    """Override keys whose values differ between jobs, other than model and simplicity."""
    keys = sorted({k for j in jobs for k in j.overrides})
    return [k for k in keys
            if k not in _FIXED_KEYS and len({j.overrides.get(k) for j in jobs}) > 1]


def _fmt_params(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _pct(x: Any) -> str:
    return "" if x is None else f"{100 * float(x):.1f}%"


def table(jobs: Sequence[JobResult]) -> tuple[list[str], list[list[Any]], list[list[str]]]:
    """(columns, raw rows for CSV/W&B, formatted rows for markdown)."""
    extra = list(jobs[0].extra) if jobs else []
    columns = ["job", "model", "parameters", "simplicity", *extra, "accuracy@1 before",
               "accuracy@1 after", "boxed after", "test rows", "val/loss", "seconds", "status", "task"]
    raw, shown = [], []
    for j in jobs:
        after, before = j.after, j.before
        seconds = (j.metrics or {}).get("seconds")
        status = "done" if j.metrics is not None else "no metrics"
        raw.append([j.job, j.model, j.parameters, j.simplicity, *j.extra.values(), before.get("accuracy@1"),
                    after.get("accuracy@1"), after.get("boxed_rate"), after.get("n_prompts"), j.val_loss,
                    seconds, status, j.problem])
        shown.append([
            j.job, j.model or "", _fmt_params(j.parameters), "" if j.simplicity is None else f"{j.simplicity:g}",
            *j.extra.values(), _pct(before.get("accuracy@1")), _pct(after.get("accuracy@1")),
            _pct(after.get("boxed_rate")), "" if after.get("n_prompts") is None else f"{int(after['n_prompts'])}",
            "" if j.val_loss is None else f"{j.val_loss:.3f}", "" if seconds is None else f"{seconds:.0f}", status,
            j.problem,
        ])
    return columns, raw, shown


def markdown(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _series(jobs: Sequence[JobResult], value: str = "accuracy@1") -> dict[str, list[tuple[int, float, str]]]:
    """Plot lines: label -> (parameters, value, model) points sorted by size; value: accuracy@1 | val/loss."""
    lines: dict[str, list[tuple[int, float, str]]] = {}
    for j in jobs:
        y = j.after.get("accuracy@1") if value == "accuracy@1" else j.val_loss
        if j.parameters is None or y is None:
            continue
        parts = [f"simplicity {j.simplicity:g}" if j.simplicity is not None else "simplicity ?"]
        if len({k.problem for k in jobs}) > 1:  # a sweep over tasks: one line per task
            parts.insert(0, j.problem)
        parts += [f"{k}={v}" for k, v in j.extra.items() if not k.startswith("model.")]
        lines.setdefault(", ".join(parts), []).append((j.parameters, float(y), j.model or ""))
    return {k: sorted(v) for k, v in sorted(lines.items())}


def report_title(jobs: Sequence[JobResult], sweep_dir: Path) -> str:
    """The plot's title: the task name when every job shares one, else the folder's name."""
    tasks = sorted({j.task for j in jobs if j.task})
    name = tasks[0] if len(tasks) == 1 else f"{sweep_dir.name} ({len(tasks)} experiments)" if tasks else sweep_dir.name
    problems = sorted({j.problem for j in jobs})
    return f"{name} [{', '.join(problems)}]: by model size and data simplicity ({sweep_dir.name})"


def plot(jobs: Sequence[JobResult], path: Path, title: str = "") -> Path | None:
    """Accuracy@1 after training against parameter count (log x), one line per series, and beside it
    the final val/loss when the jobs logged one (it still separates runs that are all at 0%).
    None when there is no point to draw."""
    panels = [(v, lines) for v in ("accuracy@1", "val/loss") if (lines := _series(jobs, v))]
    if not panels or panels[0][0] != "accuracy@1":
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), dpi=150, squeeze=False)
    for ax, (value, lines) in zip(axes[0], panels):
        scale = 100.0 if value == "accuracy@1" else 1.0
        top = 0.0
        for i, (label, pts) in enumerate(lines.items()):
            xs, ys = [p[0] for p in pts], [scale * p[1] for p in pts]
            top = max(top, *ys)
            line, = ax.plot(xs, ys, marker="o", linewidth=2, markersize=7, label=label, clip_on=False, zorder=3)
            for x, y in zip(xs, ys):  # values of neighbouring lines: one above, the next below
                text = f"{y:.1f}%" if value == "accuracy@1" else f"{y:.3f}"
                dy = 5 if i % 2 == 0 else -13
                if value == "accuracy@1" and y < 3:  # near the axis: stack the labels above the point
                    dy = 5 + 10 * i
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(8, dy), fontsize=8,
                            color=line.get_color())
        ax.set_xscale("log")
        # one tick per model, named: the sizes are few and uneven, the names are what a reader looks for
        sizes = {p[0]: p[2] for pts in lines.values() for p in pts}
        ticks = sorted(sizes)
        ax.set_xticks(ticks, [f"{sizes[n]}\n{_fmt_params(n)}" if sizes[n] else _fmt_params(n) for n in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(min(sizes) / 1.8, max(sizes) * 1.8)
        ax.set_xlabel("parameters (log scale)")
        if value == "accuracy@1":
            ax.set_ylim(0, min(105.0, max(10.0, top * 1.15 + 3)))
            ax.set_ylabel("test Accuracy@1 after training (%)")
            ax.set_title("Accuracy@1 (greedy, test split)", fontsize=10)
            if top == 0:  # the lines lie on top of each other on the axis: say so
                ax.text(0.5, 0.5, "0% in every run", transform=ax.transAxes, ha="center", color="0.4")
        else:
            ax.set_ylim(0, top * 1.15)
            ax.set_ylabel("val/loss at the end of SFT (per target token)")
            ax.set_title("Validation loss (lower is better)", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(title="data", fontsize=9, title_fontsize=9, loc="best")
    fig.suptitle(title or "By model size and data simplicity", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def log_wandb(jobs: Sequence[JobResult], columns: list[str], raw: list[list[Any]], png: Path | None,
              sweep_dir: Path) -> None:
    """The table, a line chart (stroke = series) and the PNG to one ``job_type=report`` W&B run."""
    import wandb

    from tsm.tracking import finish_wandb, wandb_mode

    task = next((j.task for j in jobs if j.task), "tsm")
    run = wandb.init(project="tsm", group=task, job_type="report", name=f"report {task}/{sweep_dir.name}",
                     dir=str(sweep_dir), mode=wandb_mode(), reinit="finish_previous")
    try:
        data = {"report/jobs": wandb.Table(columns=columns, data=[list(r) for r in raw])}
        points = [[x, 100 * y, label] for label, pts in _series(jobs).items() for x, y, _ in pts]
        if points:
            chart = wandb.Table(columns=["parameters", "accuracy@1 after (%)", "series"], data=points)
            data["report/accuracy_vs_parameters"] = wandb.plot.line(
                chart, "parameters", "accuracy@1 after (%)", stroke="series",
                title="Accuracy@1 after training vs. parameters")
        if png is not None:
            data["report/accuracy_vs_parameters_png"] = wandb.Image(str(png))
        run.log(data)
        log.info("W&B report run %s in %s", run.name, run.dir)
    finally:
        finish_wandb()


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None, *, make_plot: bool = True,
                 wandb: bool | None = None, echo: bool = True) -> dict[str, Path]:
    """Writes report.csv/.md (+ .png) for ``sweep_dir``; returns the files written (none without a finished job)."""
    from tsm.atomic import write_atomic

    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    jobs = collect(sweep_dir)
    if all(j.metrics is None for j in jobs):  # no job folders, or jobs that write no metrics.json
        log.info("No job with a metrics.json under %s: no report", sweep_dir)
        return {}
    out.mkdir(parents=True, exist_ok=True)
    columns, raw, shown = table(jobs)
    buf = io.StringIO()
    csv.writer(buf).writerows([columns, *[["" if c is None else c for c in r] for r in raw]])
    md = markdown(columns, shown)
    files = {"csv": out / "report.csv", "md": out / "report.md"}
    write_atomic(files["csv"], lambda tmp: tmp.write_text(buf.getvalue()))
    write_atomic(files["md"], lambda tmp: tmp.write_text(md))
    png = None
    if make_plot:
        png = plot(jobs, out / ".report.png.tmp.png", title=report_title(jobs, sweep_dir))
        if png is not None:
            files["png"] = png.replace(out / "report.png")
    if echo:
        print(f"\nReport of {len(jobs)} jobs in {sweep_dir} ({', '.join(p.name for p in files.values())}):\n{md}")
    if wandb is None:
        wandb = any(j.logged_to_wandb for j in jobs)
    if wandb:
        log_wandb(jobs, columns, raw, files.get("png"), sweep_dir)
    return files


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tsm.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (multirun/<task>/<time>)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the multirun folder)")
    parser.add_argument("--wandb", choices=["auto", "on", "off"], default="auto",
                        help="log table + chart to W&B; auto: when the jobs logged to W&B")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"not a folder: {args.sweep_dir}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    wandb = {"auto": None, "on": True, "off": False}[args.wandb]
    files = write_report(args.sweep_dir, args.out, make_plot=not args.no_plot, wandb=wandb)
    if not files:
        raise SystemExit(f"no job folder (with .hydra/ and metrics.json) under {args.sweep_dir}")


if __name__ == "__main__":
    main()
