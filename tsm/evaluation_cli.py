"""``evaluate.py``'s work: pick the rows (the run's own test split by default), generate or read
responses, score them with the evaluation core (``tsm.evaluation``), write metrics.json,
responses.parquet and the chart, and log the W&B run. The core knows nothing of this module."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from tsm.evaluation import (
    EvalResult,
    build_engine,
    close_engine,
    format_table,
    generate_and_score,
    resolve_checkpoint,
    score_groups,
    summarize,
)
from tsm.tasks.base import rows_task


def run_folder_of(checkpoint: str) -> Path | None:
    """The train.py run folder a checkpoint lives in (``<run>/<stage>/hf``, ``.../checkpoints/hf-step<N>``,
    a ``.ckpt``): the nearest folder up the tree whose ``config.yaml`` has ``stages`` and ``data``."""
    from omegaconf import OmegaConf

    path = Path(str(checkpoint)).expanduser()
    if not path.exists():
        return None
    for folder in [path.absolute(), *path.absolute().parents][:5]:
        conf = folder / "config.yaml"
        if conf.is_file():
            try:
                run_cfg = OmegaConf.load(conf)
            except Exception:  # noqa: BLE001, S112 - not a run's config: keep looking
                continue
            if "stages" in run_cfg and "data" in run_cfg:
                return folder
    return None


def adopt_run_data(cfg, user_overrides: Sequence[str]) -> Path | None:
    """When ``cfg.checkpoint`` belongs to a train.py run and the user chose no data
    (``data=``/``data.*``/``data_path=``), score on the run's own test split: its ``evaluate.data``
    when it had one, else its ``data``. Returns the run folder it read, or None."""
    from omegaconf import OmegaConf, open_dict

    if cfg.get("responses") or any(o.lstrip("+~").startswith(("data=", "data.", "data_path=")) for o in user_overrides):
        return None
    folder = run_folder_of(cfg.checkpoint)
    if folder is None:
        return None
    run_cfg = OmegaConf.load(folder / "config.yaml")
    data = OmegaConf.select(run_cfg, "evaluate.data") or run_cfg.data
    with open_dict(cfg):
        cfg.data = data
    return folder


def _dataset_rows(cfg) -> list[dict[str, Any]]:
    """The rows to evaluate: ``data_path``, else the test split of the ``data`` config (only its
    first ``n_rows`` generated when the dataset is not built yet: ``tsm.data.build.first_test_rows``)."""
    from hydra.utils import instantiate

    from tsm.data.build import first_test_rows
    from tsm.io import read_rows

    if cfg.data_path:
        return read_rows(cfg.data_path)
    return first_test_rows(instantiate(cfg.data), cfg.n_rows, progress=True)


def _generate(cfg, rows, gts, types, reward) -> EvalResult:
    import logging

    from hydra.utils import instantiate

    from tsm.data.sft import encode_prompt
    from tsm.models import load_checkpoint

    ckpt = resolve_checkpoint(cfg.checkpoint)
    logging.getLogger("tsm").info("Loading checkpoint %s", ckpt)
    model, tokenizer = load_checkpoint(ckpt)
    engine = build_engine(cfg.rollout, model, tokenizer, cfg.bf16)
    try:
        result = generate_and_score(
            engine, [encode_prompt(tokenizer, r["prompt"]) for r in rows], gts,
            instantiate(cfg.sampling), reward, n=cfg.n_samples, function_types=types, progress=True,
        )
        n_robust = int(OmegaConf.select(cfg, "robustness.n_functions", default=0) or 0)
        if n_robust > 0:
            result.metrics.update(_robustness(cfg, engine, tokenizer, reward, rows, result, n_robust))
        return result
    finally:
        close_engine(engine)


def _robustness(cfg, engine, tokenizer, reward, rows, result: EvalResult, n_functions: int) -> dict[str, float]:
    """Variants of the first ``n_functions`` solved rows (tsm.robustness), answered greedily."""
    import logging

    from tsm.data.sft import encode_prompt
    from tsm.math.parse import parse_expression
    from tsm.robustness import consistency, make_variants
    from tsm.rollout.base import SamplingParams

    solved = [parse_expression(r["extra_info"]["function_sympy"])
              for r, sc in zip(rows, result.scores) if sc and sc[0] >= 1.0][:n_functions]
    variants = make_variants(solved, seed=int(OmegaConf.select(cfg, "robustness.seed", default=0)))
    if not variants:
        return {}
    task = rows_task(rows)  # variants are posed as the rows' task poses a function
    posed = [task.pose(v.function, function_type=v.kind) for v in variants]
    greedy = SamplingParams(max_new_tokens=cfg.sampling.max_new_tokens, temperature=0.0)
    out = generate_and_score(engine, [encode_prompt(tokenizer, p.messages) for p in posed],
                             [p.ground_truth for p in posed], greedy, reward, n=1)
    correct = [r == "correct" for r, *_ in out.reasons]
    m = consistency(variants, correct)
    logging.getLogger("tsm").info("robustness: %d variants of %d solved functions, %.1f%% still solved (greedy)",
                                  len(variants), len(solved), 100 * m["robustness/consistency"])
    return m


def _score_responses(rows, gts, types, reward) -> EvalResult:
    for r in rows:  # a plain-string column is one response per row, not a list of characters
        if isinstance(r["responses"], str):
            r["responses"] = [r["responses"]]
    n = len(rows[0]["responses"])
    if any(len(r["responses"]) != n for r in rows):
        raise ValueError("every row needs the same number of responses")
    responses = [list(r["responses"]) for r in rows]
    groups = score_groups(reward, responses, gts)
    return EvalResult(
        metrics=summarize(groups, function_types=types), responses=responses,
        scores=[[s.value for s in g] for g in groups], reasons=[[s.reason for s in g] for g in groups],
        answers=[[s.answer for s in g] for g in groups],
    )


def _data_label(cfg) -> str:
    if cfg.data_path:
        return str(cfg.data_path)
    try:  # the config group choice (data=ood) when run through Hydra's app
        from hydra.core.hydra_config import HydraConfig

        return f"data={HydraConfig.get().runtime.choices['data']}"
    except (ValueError, KeyError):
        return str(cfg.data.get("_target_", "data")).rsplit(".", 1)[-1]


def _title(cfg, n_rows: int) -> str:
    source = f"responses {cfg.responses}" if cfg.responses else f"checkpoint {cfg.checkpoint}"
    data = _data_label(cfg)
    if cfg.responses:
        return f"Evaluation of {source} ({n_rows} rows)"
    s = cfg.sampling
    how = "greedy" if s.temperature == 0 else f"T={s.temperature}, top_p={s.top_p}, top_k={s.top_k}"
    return (f"Evaluation of {source} on {data}: {n_rows} rows x {cfg.n_samples} sample(s), {how}, "
            f"max {s.max_new_tokens} new tokens")


def wandb_run_name(cfg) -> str:
    """``evaluate <checkpoint> on <data>``: e.g. ``evaluate tsm-diff-5m on test(s0.5, seed 100, 5000)``."""
    if cfg.get("responses"):
        what = f"responses {Path(str(cfg.responses)).parent.name}/{Path(str(cfg.responses)).name}"
    else:
        ck = Path(str(cfg.checkpoint))
        what = "/".join(ck.parts[-3:]) if len(ck.parts) > 1 else str(cfg.checkpoint)
    data = cfg.get("data") or {}
    if str(data.get("_target_", "")).endswith("OODSpec"):
        on = "ood"
    elif cfg.get("data_path"):
        on = Path(str(cfg.data_path)).name
    else:
        on = f"test(s{data.get('simplicity')}, seed {data.get('seed')}, {data.get('n_test')})"
    return f"evaluate {what} on {on}"


def run_evaluation(cfg) -> dict[str, float]:
    """Generate (or read) responses, score them; write metrics.json, responses.parquet, the chart.

    The W&B run (``cfg.wandb.enabled``) starts first and is finished in all cases, marked failed
    after an exception, so one failed multirun job leaves no run open for the next.
    """
    import json
    import logging

    from hydra.utils import instantiate

    from tsm import evaluation_report as report
    from tsm.atomic import write_atomic
    from tsm.evaluation import write_responses
    from tsm.io import print_config_tree, read_rows

    log = logging.getLogger("tsm")
    out = Path(cfg.paths.output_dir)
    print_config_tree(cfg, out)
    if cfg.wandb.get("name") in (None, cfg.get("task_name")):  # name W&B runs by what they measure
        from omegaconf import open_dict

        with open_dict(cfg):
            cfg.wandb.name = wandb_run_name(cfg)
    run = report.start_wandb(cfg.wandb, cfg, out)
    ok = False
    try:
        if cfg.responses:
            rows = read_rows(cfg.responses)
            if not rows or "responses" not in rows[0]:
                raise ValueError(f"{cfg.responses} has no 'responses' column")
        else:
            rows = _dataset_rows(cfg)
        if cfg.n_rows is not None:
            rows = rows[: cfg.n_rows]
        if not rows:
            raise ValueError("no rows to evaluate")
        # the rows say which task's check judges them (a parquet of integration rows is scored as
        # integration whatever `task=` says)
        with instantiate(cfg.reward, task=rows_task(rows).name) as reward:
            gts = [r["reward_model"]["ground_truth"] for r in rows]
            types = [r.get("extra_info", {}).get("function_type", "unknown") for r in rows]
            if cfg.responses:
                result = _score_responses(rows, gts, types, reward)
            else:
                result = _generate(cfg, rows, gts, types, reward)
        metrics = result.metrics
        if not cfg.responses:  # which decoding gave this Accuracy@1: greedy or Diff-TSM's sampling
            s = cfg.sampling
            metrics["decoding"] = ("greedy" if s.temperature == 0 and s.get("num_beams", 1) <= 1 else
                                   f"beam search ({s.num_beams} beams)" if s.temperature == 0 else
                                   f"sampling T={s.temperature} top_p={s.top_p} top_k={s.top_k}")
        write_responses(out / "responses.parquet", rows, result)
        text = json.dumps(metrics, indent=2)
        write_atomic(out / "metrics.json", lambda tmp: tmp.write_text(text))
        title = _title(cfg, len(rows))
        png = report.plot_accuracy_by_type(metrics, out / "accuracy_by_type.png", title)
        if run is not None:
            report.log_wandb(run, metrics, report.sample_rows(rows, result, cfg.wandb.table_rows))
        log.info("\n%s", format_table(metrics, title))
        log.info("Wrote %s, %s, %s", out / "metrics.json", out / "responses.parquet", png)
        ok = True
        return metrics
    finally:
        if run is not None:
            report.finish_wandb(run, ok)
