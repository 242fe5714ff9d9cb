"""kill -9 a tiny SFT run and a tiny GRPO run at chosen points (mid-epoch, just before and just after
an epoch end, while a checkpoint is being written), resume from the run folder, and compare every
later step's logged loss / reward with an uninterrupted run: identical. A killed checkpoint write
leaves the previous checkpoint usable and no partial file under a real name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from tests.helpers import TINY_RUN, compose_cfg
from tests.test_train import RESUME, csv_metrics, train_losses
from tests.test_train_rl import TINY_RL

ROOT = Path(__file__).resolve().parents[1]

# 256 rows / batch 8 = 32 steps an epoch; a checkpoint every step, so the kill point is the resume point
SFT = [*TINY_RUN, *RESUME, "sft.max_steps=40", "sft.save_every_n_steps=1", "model.arch.num_layers=1",
       "model.arch.hidden_size=32", "model.arch.intermediate_size=64", "model.arch.num_heads=2"]
# GRPO alone, from one SFT export made once (so the killed and the uninterrupted run start from the
# same weights and reference model); 16 prompts / 4 a step = 4 steps an epoch
GRPO = [*TINY_RUN, *TINY_RL, "stages=[grpo]", "data.n_train=16", "grpo.max_steps=7", "grpo.save_every_n_steps=1",
        "evaluate.before=false", "evaluate.after=false", "grpo.module.val_generate_every=0"]


def cfg_for(base: list[str], tmp: Path, data_dir: Path, *extra: str):
    cfg = compose_cfg("train", [*base, *extra], tmp)
    with open_dict(cfg):
        cfg.data.output_dir = str(data_dir)
    return cfg


def killed_run(base: list[str], run_dir: Path, data_dir: Path, step: int, when: str, stage: str) -> Path:
    """train.py in a subprocess with a KillAt callback; asserts it died of SIGKILL."""
    cmd = [sys.executable, "train.py", *base, f"data.output_dir={data_dir}", f"hydra.run.dir={run_dir}",
           f"+callbacks.kill={{_target_: tests.faults.KillAt, step: {step}, when: {when}, stage: {stage}}}"]
    # the same torch thread count as this process (conftest sets it): reductions then round alike
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    return run_dir


def same_weights(a: Path, b: Path) -> bool:
    """Bit-identical parameters in two HF folders."""
    from tsm.models import load_checkpoint

    x, _ = load_checkpoint(str(a))
    y, _ = load_checkpoint(str(b))
    return all(torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters()))


def ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def full_sft(tmp_path_factory, data_dir):
    from tsm.pipeline import run

    cfg = cfg_for(SFT, tmp_path_factory.mktemp("full_sft"), data_dir)
    run(cfg)
    return train_losses(cfg), Path(cfg.paths.output_dir)


def grpo_rewards(run_dir: Path) -> dict[int, float]:
    rows = csv_metrics(run_dir, "grpo")
    return {int(r["step"]): float(r["train/reward/mean"]) for r in rows if r.get("train/reward/mean")}


@pytest.fixture(scope="module")
def sft_export(tmp_path_factory, data_dir) -> Path:
    from tsm.pipeline import run

    cfg = cfg_for([*TINY_RUN, *TINY_RL], tmp_path_factory.mktemp("sft_export"), data_dir, "stages=[sft]",
                  "evaluate.before=false", "evaluate.after=false")
    run(cfg)
    return Path(cfg.paths.output_dir) / "sft" / "hf"


@pytest.fixture(scope="module")
def full_grpo(tmp_path_factory, data_dir, sft_export):
    from tsm.pipeline import run

    cfg = cfg_for(GRPO, tmp_path_factory.mktemp("full_grpo"), data_dir, f"init_from={sft_export}")
    run(cfg)
    return grpo_rewards(Path(cfg.paths.output_dir)), Path(cfg.paths.output_dir)


@pytest.mark.parametrize(("step", "when", "name"), [
    (5, "step", "mid-epoch"), (31, "step", "just before the epoch end"),
    (33, "step", "just after the epoch end"), (32, "write", "while writing the epoch-end checkpoint")])
def test_sft_killed_and_resumed_logs_the_uninterrupted_losses(tmp_path, data_dir, full_sft, step, when, name):
    from tsm.checkpointing import latest_checkpoint
    from tsm.pipeline import run

    killed = killed_run(SFT, tmp_path / "killed", data_dir, step, when, "sft")
    ckpts = killed / "sft" / "checkpoints"
    latest = latest_checkpoint(killed, ["sft"])
    start = ckpt_step(latest)  # the kill comes before or after the save of its own step
    assert start in (step - 1, step), (name, start)
    if when == "write":
        assert start == step - 1 and not (ckpts / f"step{step}.ckpt").exists()
        partial = list(ckpts.glob(f".step{step}.ckpt.tmp-*"))
        assert len(partial) == 1 and partial[0].stat().st_size > 0  # half a file, never under its real name
        with pytest.raises(Exception):  # noqa: B017 - truncated: torch's own error, whatever its type
            torch.load(partial[0], map_location="cpu", weights_only=False)
    resumed = cfg_for(SFT, tmp_path / "resumed", data_dir, f"ckpt_path={killed}")  # the run folder
    run(resumed)
    assert not list(ckpts.glob(".*.tmp-*"))  # the stale temporary is gone
    a, b = full_sft[0], train_losses(resumed)
    assert sorted(b) == list(range(start, 40)), (name, sorted(b))
    diff = {s: (a[s], b[s]) for s in b if a[s] != b[s]}
    assert not diff, (name, diff)
    assert same_weights(full_sft[1] / "sft" / "hf", Path(resumed.paths.output_dir) / "sft" / "hf")


@pytest.mark.parametrize(("step", "when", "name"), [
    (2, "step", "mid-epoch"), (5, "step", "just after the epoch end"),
    (4, "write", "while writing the epoch-end checkpoint")])
def test_grpo_killed_and_resumed_logs_the_uninterrupted_rewards(tmp_path, data_dir, sft_export, full_grpo, step,
                                                                  when, name):
    from tsm.checkpointing import latest_checkpoint
    from tsm.pipeline import run

    killed = killed_run([*GRPO, f"init_from={sft_export}"], tmp_path / "killed", data_dir, step, when, "grpo")
    latest = latest_checkpoint(killed, ["grpo"])
    start = ckpt_step(latest)
    assert start in (step - 1, step), (name, start)
    if when == "write":
        assert start == step - 1 and list(latest.parent.glob(f".step{step}.ckpt.tmp-*"))
    resumed = cfg_for(GRPO, tmp_path / "resumed", data_dir, f"init_from={sft_export}", f"ckpt_path={killed}")
    run(resumed)
    assert not list(latest.parent.glob(".*.tmp-*"))
    a, b = full_grpo[0], grpo_rewards(Path(resumed.paths.output_dir))
    assert len(b) == 7 - start and b, (name, b)
    diff = {s: (a[s], b[s]) for s in b if a[s] != b[s]}  # the same samples, so the same rewards
    assert not diff, (name, diff)
    assert same_weights(full_grpo[1] / "grpo" / "hf", Path(resumed.paths.output_dir) / "grpo" / "hf")


def test_a_run_folder_without_a_checkpoint_fails_before_any_work(tmp_path):
    from tsm.pipeline import resolve_ckpt_path

    (tmp_path / "sft" / "checkpoints").mkdir(parents=True)
    cfg = OmegaConf.create({"ckpt_path": str(tmp_path), "stages": ["sft"]})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_ckpt_path(cfg)
