"""train.py with stages [sft, grpo] on a tiny model: metrics, export, exact mid-RL resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from tests.helpers import TINY_RUN, compose_cfg
from tests.test_train import csv_metrics, params

GRPO_METRICS = [
    "train/reward/mean", "train/reward/correct_frac", "train/reward/parse_rate", "train/reward/timeouts",
    "train/groups_zero_std_frac", "train/clip_frac", "train/kl", "train/entropy", "train/response_len/mean",
    "train/response_len/max", "train/truncated_frac", "rollout/tokens_per_s", "rollout/logprob_diff",
    "time/rollout_s", "time/reward_s", "time/update_s", "val/accuracy@1",
]

TINY_RL = [
    "stages=[sft,grpo]",
    "sft.max_steps=40",            # enough for the boxed format: wrong-but-parsed (0.1) vs no box (0) gives groups variance
    "sft.module.optimizer.lr=3e-3",
    "grpo.max_steps=4",
    "grpo.module.group_size=4",
    "grpo.module.micro_batch_size=8",
    "grpo.module.val_generate_every=2",
    "grpo.module.val_max_new_tokens=40",
    "grpo.module.sampling.max_new_tokens=40",
    "grpo.module.optimizer.lr=1e-3",
    "grpo.data_module.batch_size=4",
    "grpo.data_module.n_val_generate=8",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def rl_cfg(tmp_path: Path, data_dir: Path, *extra: str):
    cfg = compose_cfg("train", [*TINY_RUN, *TINY_RL, *extra], tmp_path)
    with open_dict(cfg):
        cfg.data.output_dir = str(data_dir)
    return cfg


def test_sft_then_grpo_logs_every_metric_and_exports(tmp_path, data_dir):
    from tsm.models import load_checkpoint
    from tsm.pipeline import run

    cfg = rl_cfg(tmp_path, data_dir, "grpo.save_every_n_steps=2")
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert (out / "sft" / "hf" / "config.json").exists()
    assert (out / "grpo" / "hf").resolve() == (out / "grpo" / "checkpoints" / "hf-step4").resolve()
    assert (out / "grpo" / "checkpoints" / "step2.ckpt").exists()
    rows = csv_metrics(out, "grpo")
    logged = {k for r in rows for k, v in r.items() if v not in ("", None)}
    missing = [m for m in GRPO_METRICS if m not in logged]
    assert not missing, missing
    steps = [r for r in rows if r.get("train/reward/mean")]
    assert len(steps) == 4  # one row of metrics per rollout step
    # val/accuracy@1 only after rollout steps 2 and 4 (rows 1 and 3), not re-logged stale in between
    assert [int(r["step"]) for r in rows if r.get("val/accuracy@1")] == [1, 3], rows
    assert all(float(r["rollout/logprob_diff"]) < 1e-3 for r in steps)  # HF engine: sampler == policy
    # rewards varied within groups, so the policy got a gradient
    assert any(float(r["train/groups_zero_std_frac"]) < 1 for r in steps), [r["train/reward/mean"] for r in steps]
    saved = json.loads((out / "metrics.json").read_text())
    assert "after" in saved and saved["grpo/hf"] == str(out / "grpo" / "hf")
    # the exported GRPO weights differ from the SFT ones they started from
    sft_model, _ = load_checkpoint(str(out / "sft" / "hf"))
    grpo_model, _ = load_checkpoint(str(out / "grpo" / "hf"))
    assert not torch.allclose(params(sft_model), params(grpo_model))
    assert metrics["after"] == saved["after"]


def test_resume_mid_grpo_matches_uninterrupted(tmp_path, data_dir):
    from tsm.models import load_checkpoint
    from tsm.pipeline import run

    full = rl_cfg(tmp_path / "full", data_dir, "grpo.save_every_n_steps=2", "evaluate.before=false", "evaluate.after=false")
    run(full)
    ckpt = Path(full.paths.output_dir) / "grpo" / "checkpoints" / "step2.ckpt"
    resumed = rl_cfg(tmp_path / "resumed", data_dir, f"ckpt_path={ckpt}", "evaluate.before=false", "evaluate.after=false")
    metrics = run(resumed)
    assert "sft/seconds" not in metrics  # the SFT stage was skipped: the checkpoint lives in grpo/
    a, _ = load_checkpoint(str(Path(full.paths.output_dir) / "grpo" / "hf"))
    b, _ = load_checkpoint(str(Path(resumed.paths.output_dir) / "grpo" / "hf"))
    assert torch.equal(params(a), params(b))


def test_resume_grpo_across_an_epoch_end_matches_uninterrupted(tmp_path, data_dir):
    """16 prompts / 4 per step = 4 steps an epoch: resumed at step 5 (one step into the second
    epoch), the run must take the uninterrupted run's prompts through the next epoch end (step 8)."""
    from tsm.models import load_checkpoint
    from tsm.pipeline import run

    common = ["data.n_train=16", "grpo.max_steps=10", "evaluate.before=false", "evaluate.after=false",
              "grpo.module.val_generate_every=0"]
    full = rl_cfg(tmp_path / "full", data_dir, *common, "grpo.save_every_n_steps=5")
    run(full)
    ckpt = Path(full.paths.output_dir) / "grpo" / "checkpoints" / "step5.ckpt"
    resumed = rl_cfg(tmp_path / "resumed", data_dir, *common, f"ckpt_path={ckpt}")
    run(resumed)

    def rewards(cfg):
        rows = csv_metrics(Path(cfg.paths.output_dir), "grpo")
        return {int(r["step"]): float(r["train/reward/mean"]) for r in rows if r.get("train/reward/mean")}

    a, b = rewards(full), rewards(resumed)
    assert len(b) == 5 and all(a[s] == b[s] for s in b), (a, b)
    x, _ = load_checkpoint(str(Path(full.paths.output_dir) / "grpo" / "hf"))
    y, _ = load_checkpoint(str(Path(resumed.paths.output_dir) / "grpo" / "hf"))
    assert torch.equal(params(x), params(y))


@pytest.mark.slow
def test_smollm2_135m_rl_end_to_end_on_cpu(tmp_path):
    """The embedded SmolLM2-135M: a few SFT and GRPO steps, every metric logged, evaluate.py reads the export."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    common = [f"data.output_dir={tmp_path / 'data'}", "data.n_train=64", "data.n_test=16", "reward.workers=2"]
    subprocess.run(
        [sys.executable, "train.py", "experiment=smollm2_135m_rl", *common, f"hydra.run.dir={run_dir}",
         "sft.max_steps=2", "sft.val_check_interval=2", "sft.data_module.n_val=8", "sft.data_module.n_val_generate=4",
         "sft.module.val_max_new_tokens=32", "grpo.max_steps=3", "grpo.module.group_size=4",
         "grpo.data_module.batch_size=2", "grpo.module.sampling.max_new_tokens=48", "grpo.module.val_generate_every=3",
         "grpo.data_module.n_val_generate=4", "grpo.module.val_max_new_tokens=32", "evaluate.n_rows=8",
         "evaluate.max_new_tokens=48", "trainer.enable_progress_bar=false"],
        cwd=root, check=True, timeout=1800,
    )
    rows = csv_metrics(run_dir, "grpo")
    logged = {k for r in rows for k, v in r.items() if v not in ("", None)}
    assert not [m for m in GRPO_METRICS if m not in logged]
    steps = [r for r in rows if r.get("train/reward/mean")]
    assert len(steps) == 3
    # bf16 rollouts vs the bf16-autocast policy forward: close, not exact
    assert all(float(r["rollout/logprob_diff"]) < 0.1 for r in steps)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["model/parameters"] > 100e6 and "after" in saved
    ckpt = run_dir / "grpo" / "checkpoints" / "last.ckpt"
    subprocess.run(
        [sys.executable, "evaluate.py", f"checkpoint={ckpt}", *common, "n_rows=8", "sampling.max_new_tokens=48",
         "sampling.temperature=0", "bf16=true", f"hydra.run.dir={eval_dir}"],
        cwd=root, check=True, timeout=900,
    )
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["n_prompts"] == 8 and 0.0 <= metrics["accuracy@1"] <= 1.0
