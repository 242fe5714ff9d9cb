"""What ``train.py`` runs: build the pieces a composed config names, run its stages, report.

A run folder (``paths.output_dir``) holds ``config.yaml`` (resolved), ``config_tree.txt``, one
folder per stage (``sft/``: checkpoints, HF export, CSV logs) and ``metrics.json`` with the test
Accuracy@1 before and after training.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tsm.io import config_summary, print_config_tree  # noqa: F401 - re-exported (tests, scripts)

log = logging.getLogger("tsm")


def load_policy(cfg: DictConfig, init_from: str | Path | None = None):
    """The model a run starts from: ``init_from`` (an HF folder, a shipped model's name such as
    ``tsm-diff-5m``, a hub id) when given, else ``cfg.model`` (random init for scratch models)."""
    from tsm.models import load_checkpoint, load_model_and_tokenizer

    if init_from:
        log.info("Loading weights from %s", init_from)
        return load_checkpoint(str(init_from))
    log.info("Instantiating model <%s>", cfg.model.get("name", cfg.model._target_))
    return load_model_and_tokenizer(instantiate(cfg.model))


def test_accuracy(cfg: DictConfig, model, tokenizer, reward, tag: str) -> dict[str, float]:
    """Greedy Accuracy@1 on the first ``evaluate.n_rows`` rows of the test split: ``data``'s, or
    ``evaluate.data``'s when set (a run trained on another mix, scored on a fixed test split)."""
    from tsm.data.build import build_dataset
    from tsm.data.sft import encode_prompt
    from tsm.evaluation import generate_and_score
    from tsm.io import read_rows
    from tsm.rollout.base import SamplingParams
    from tsm.rollout.hf import HFEngine, autocast_dtype_for

    data = cfg.evaluate.get("data") or cfg.data
    files = build_dataset(instantiate(data), progress=True)
    rows = read_rows(files.test)[: cfg.evaluate.n_rows]
    t0 = time.perf_counter()
    result = generate_and_score(
        HFEngine(model, tokenizer, batch_size=cfg.evaluate.batch_size, autocast_dtype=autocast_dtype_for(cfg.trainer.precision)),
        [encode_prompt(tokenizer, r["prompt"]) for r in rows],
        [r["reward_model"]["ground_truth"] for r in rows],
        SamplingParams(max_new_tokens=cfg.evaluate.max_new_tokens, temperature=0.0),
        reward,
        function_types=[r["extra_info"]["function_type"] for r in rows],
    )
    m = result.metrics
    m["decoding"] = "greedy"
    if "accuracy@1/ci95_low" not in m:  # metrics from elsewhere than evaluation.summarize
        from tsm.stats import wilson_interval

        m["accuracy@1/ci95_low"], m["accuracy@1/ci95_high"] = wilson_interval(
            round(m["accuracy@1"] * len(rows)), len(rows))
    log.info(
        "[%s] test Accuracy@1 (greedy) = %.2f%%, 95%% interval [%.1f, %.1f], on %d rows (boxed %.0f%%, %.0f s)",
        tag, 100 * m["accuracy@1"], 100 * m["accuracy@1/ci95_low"], 100 * m["accuracy@1/ci95_high"],
        len(rows), 100 * m["boxed_rate"], time.perf_counter() - t0,
    )
    if result.responses:
        log.info("[%s] sample response: %r", tag, result.responses[0][0][:200])
        if cfg.evaluate.get("save_responses", True):  # per-row verdicts, for paired tests between runs
            from tsm.evaluation import write_responses

            write_responses(Path(cfg.paths.output_dir) / f"test_{tag}" / "responses.parquet", rows, result)
    return m


def user_callbacks(cfg: DictConfig) -> list:
    """The run's ``callbacks:`` (name -> Lightning callback config), added to every stage's trainer,
    after the whole-run progress (``console.progress``)."""
    from tsm.console import RunProgress

    extra = [RunProgress(OmegaConf.select(cfg, "console.every_n_steps", default=None))] \
        if OmegaConf.select(cfg, "console.progress", default=True) else []
    return extra + [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def fit_stage(cfg: DictConfig, module: L.LightningModule, dm: L.LightningDataModule, stage_dir: Path,
              ckpt_path: str | None, max_steps: int, val_check_interval: int, save_every_n_steps: int,
              callbacks: list | None = None, **trainer_kwargs: Any) -> Path:
    """The one Trainer every stage runs: the run's loggers, atomic checkpoints every
    ``save_every_n_steps`` (and ``last.ckpt``), the whole-run progress and ``callbacks:``, step
    batches sharded by the data module itself; fits, exports and returns ``<stage_dir>/hf``."""
    from tsm.checkpointing import AtomicCheckpointIO, checkpoint_callbacks, finalize_stage

    loggers = [instantiate(lg, save_dir=str(stage_dir)) for lg in cfg.get("logger", {}).values()]
    log.info("Instantiating trainer <%s>", cfg.trainer._target_)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=max_steps,
        val_check_interval=val_check_interval,
        default_root_dir=str(stage_dir),
        callbacks=[*checkpoint_callbacks(stage_dir, save_every_n_steps), *(callbacks or []), *user_callbacks(cfg)],
        plugins=[AtomicCheckpointIO()],
        # no implicit ModelCheckpoint: saves are ours (periodic when asked, last.ckpt at the end)
        enable_checkpointing=save_every_n_steps > 0,
        logger=loggers or False,
        use_distributed_sampler=False,  # the data modules shard step batches themselves
        reload_dataloaders_every_n_epochs=1,  # a new order each epoch, and exact mid-epoch resume
        **trainer_kwargs,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return finalize_stage(trainer, stage_dir)


def stage_data(stage_cfg: DictConfig, tokenizer) -> L.LightningDataModule:
    """The stage's data module, with the policy's tokenizer."""
    log.info("Instantiating data module <%s>", stage_cfg.data_module._target_)
    dm = instantiate(stage_cfg.data_module)
    dm.set_tokenizer(tokenizer)
    return dm


def run_sft_stage(cfg: DictConfig, stage_cfg: DictConfig, model, tokenizer, reward, stage_dir: Path,
                  ckpt_path: str | None) -> Path:
    dm = stage_data(stage_cfg, tokenizer)
    log.info("Instantiating module <%s>", stage_cfg.module._target_)
    module = instantiate(stage_cfg.module)(model=model, tokenizer=tokenizer, reward=reward)
    return fit_stage(cfg, module, dm, stage_dir, ckpt_path, stage_cfg.max_steps, stage_cfg.val_check_interval,
                     stage_cfg.save_every_n_steps)


def run_grpo_stage(cfg: DictConfig, stage_cfg: DictConfig, model, tokenizer, reward, stage_dir: Path,
                   ckpt_path: str | None) -> Path:
    from tsm.rollout.sync import WeightSync

    dm = stage_data(stage_cfg, tokenizer)
    log.info("Instantiating rollout engine <%s>", cfg.rollout._target_)
    engine = instantiate(cfg.rollout)(model=model, tokenizer=tokenizer)
    try:
        module = instantiate(stage_cfg.module)(model=model, tokenizer=tokenizer, reward=reward, engine=engine)
        # Lightning counts optimizer steps: ppo_epochs per rollout batch
        steps = module.total_optimizer_steps
        return fit_stage(cfg, module, dm, stage_dir, ckpt_path, steps, steps,
                         stage_cfg.save_every_n_steps * module.ppo_epochs, callbacks=[WeightSync(engine)],
                         limit_val_batches=0)  # validation is generation-based, inside the module
    finally:
        engine.close()


def run_ei_stage(cfg: DictConfig, stage_cfg: DictConfig, model, tokenizer, reward, stage_dir: Path,
                 ckpt_path: str | None) -> Path:
    """Expert iteration (``tsm.algorithms.expert_iteration``): rounds of sample, verify, SFT."""
    from omegaconf import open_dict

    from tsm.algorithms.expert_iteration import sample_round
    from tsm.atomic import write_atomic
    from tsm.io import write_rows
    from tsm.models import load_checkpoint

    if ckpt_path:
        log.info("ei: a .ckpt does not resume expert iteration; finished rounds are skipped instead")
    if int(stage_cfg.rounds) < 1 or int(stage_cfg.prompts_per_round) < 1 or int(stage_cfg.samples_per_prompt) < 1:
        raise ValueError("ei: rounds, prompts_per_round and samples_per_prompt must be >= 1")
    prompt_source = instantiate(stage_cfg.prompts)
    prompt_source.set_tokenizer(tokenizer)
    prompt_source.setup("fit")
    stage_dir.mkdir(parents=True, exist_ok=True)
    record = stage_dir / "rounds.json"
    history: list[dict[str, Any]] = json.loads(record.read_text()) if record.exists() else []
    hf = None
    for r in range(int(stage_cfg.rounds)):
        round_dir = stage_dir / f"round{r}"
        done = round_dir / "sft" / "hf"
        if (done / "config.json").exists():
            log.info("ei round %d: already done (%s), loading its weights", r, done)
            trained, _ = load_checkpoint(str(done))
            model.load_state_dict(trained.state_dict())
            hf = done
            continue
        rows, stats = sample_round(stage_cfg, prompt_source, model, tokenizer, reward, r, cfg.trainer.get("precision"))
        log.info("ei round %d: pass rate %.1f%% on %d fresh prompts x %d; kept %d prompts (%d responses) "
                 "in [%.2f, %.2f]; sampling %.0f s", r, 100 * stats["pass_rate/mean"], stats["prompts"],
                 int(stage_cfg.samples_per_prompt), stats["prompts_kept"], stats["responses_kept"],
                 float(stage_cfg.min_pass_rate), float(stage_cfg.max_pass_rate), stats["sample_seconds"])
        if stats["responses_kept"] < int(stage_cfg.sft.data_module.batch_size):
            log.warning("ei round %d: %d responses kept < one SFT batch (%d); the round trains nothing", r,
                        stats["responses_kept"], int(stage_cfg.sft.data_module.batch_size))
        else:
            samples = round_dir / "samples.parquet"
            write_rows(samples, rows)
            sft_cfg = stage_cfg.sft.copy()
            with open_dict(sft_cfg):
                sft_cfg.data_module.sft_target = "responses"
                sft_cfg.data_module.responses_path = str(samples)
            t0 = time.perf_counter()
            hf = run_sft_stage(cfg, sft_cfg, model, tokenizer, reward, round_dir / "sft", None)
            stats["sft_seconds"] = time.perf_counter() - t0
        history = [h for h in history if h["round"] != r] + [stats]
        record.write_text(json.dumps(history, indent=2))
    if hf is None:
        raise RuntimeError("ei: no round kept a prompt, so nothing was trained (widen the pass-rate band or "
                           "draw more prompts)")
    link = stage_dir / "hf"
    write_atomic(link, lambda tmp: os.symlink(os.path.relpath(hf.resolve(), stage_dir), tmp))
    return link


STAGE_RUNNERS = {"sft": run_sft_stage, "grpo": run_grpo_stage, "ei": run_ei_stage}


def resolve_ckpt_path(cfg: DictConfig) -> Path:
    """``ckpt_path`` as a checkpoint file: a ``.ckpt`` as given, or a run folder's newest complete one."""
    from tsm.atomic import remove_stale_temps
    from tsm.checkpointing import latest_checkpoint

    path = Path(cfg.ckpt_path)
    if path.is_dir():
        found = latest_checkpoint(path, list(cfg.stages))
        remove_stale_temps(found.parent)  # what the killed run was writing when it died
        log.info("ckpt_path %s: resuming from its newest checkpoint %s", path, found)
        return found
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path {path} does not exist (give a .ckpt file or a run folder)")
    return path


def resume_point(cfg: DictConfig) -> tuple[int, Path | None, Path | None]:
    """Which stage ``ckpt_path`` resumes, the weights that stage starts from, and the checkpoint file.

    A checkpoint inside ``<run>/<stage>/checkpoints/`` resumes that stage (earlier stages are
    skipped; the stage starts from ``<run>/<previous stage>/hf`` before the .ckpt restores its own
    weights, optimizer and step); any other ``ckpt_path`` resumes the first stage.
    """
    if not cfg.ckpt_path:
        return 0, None, None
    path = resolve_ckpt_path(cfg)
    stage = path.parent.parent.name if path.parent.name == "checkpoints" else None
    if stage not in cfg.stages or cfg.stages.index(stage) == 0:
        return 0, None, path
    i = list(cfg.stages).index(stage)
    prev = path.parent.parent.parent / cfg.stages[i - 1] / "hf"
    log.info("Resuming stage %s from %s", stage, path)
    return i, prev if (prev / "config.json").exists() else None, path


def run(cfg: DictConfig) -> dict[str, Any]:
    """Runs every stage in ``cfg.stages``; returns the metrics also written to metrics.json."""
    from tsm.console import quiet_libraries

    quiet_libraries()
    out = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    print_config_tree(cfg, out)
    unknown = [s for s in cfg.stages if s not in STAGE_RUNNERS]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {sorted(STAGE_RUNNERS)}")
    first, init_from, ckpt = resume_point(cfg)  # a wrong ckpt_path fails here, before any work
    reward = instantiate(cfg.reward)
    model, tokenizer = load_policy(cfg, cfg.get("init_from"))
    if cfg.get("grow") and first == 0:  # before a resumed .ckpt restores the grown weights
        from tsm.models.grow import grow_depth

        grow_depth(model, int(cfg.grow.num_layers))
    metrics: dict[str, Any] = {"output_dir": str(out),
                               "model/parameters": sum(p.numel() for p in model.parameters())}
    t_start = time.perf_counter()
    if cfg.evaluate.before:
        metrics["before"] = test_accuracy(cfg, model, tokenizer, reward, "before")
    for i, stage in enumerate(cfg.stages):
        if i < first:
            continue
        if init_from is not None:
            model, tokenizer = load_policy(cfg, init_from)
        t0 = time.perf_counter()
        init_from = STAGE_RUNNERS[stage](
            cfg, cfg[stage], model, tokenizer, reward, out / stage, str(ckpt) if i == first and ckpt else None
        )
        metrics[f"{stage}/seconds"] = time.perf_counter() - t0
        metrics[f"{stage}/hf"] = str(init_from)
    if cfg.evaluate.after:
        metrics["after"] = test_accuracy(cfg, model, tokenizer, reward, "after")
    metrics["seconds"] = time.perf_counter() - t_start
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return metrics  # rank 0 writes the run's files
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if "before" in metrics and "after" in metrics:
        log.info(
            "Test Accuracy@1 (greedy): before %.1f%% -> after %.1f%%  (%s)",
            100 * metrics["before"]["accuracy@1"], 100 * metrics["after"]["accuracy@1"], out,
        )
    return metrics
