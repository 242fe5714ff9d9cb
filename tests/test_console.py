"""What a training run prints: a config summary (not the 200-line tree), whole-run progress with
ETA, every validation result, no library noise, each line once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_run_console_shows_progress_and_validation_and_no_noise(tmp_path):
    cmd = [sys.executable, "train.py", "experiment=tiny_sft", "model=tiny_1m", "sft.max_steps=6",
           "sft.val_check_interval=3", "data.n_train=64", "data.n_test=16", "data.workers=0", "evaluate.n_rows=4",
           "evaluate.max_new_tokens=8", "sft.module.val_max_new_tokens=8", "sft.data_module.n_val_generate=4",
           f"hydra.run.dir={tmp_path / 'run'}", f"data.output_dir={tmp_path / 'data'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out, err = proc.stdout, proc.stderr
    assert "CONFIG" not in out and "Config: task tiny_sft; sft 6 steps" in out
    assert (tmp_path / "run" / "config_tree.txt").read_text().startswith("CONFIG")  # the whole tree, in a file
    assert "step 6/6 |" in out and "ETA" in out and "lr " in out
    assert "validation at step 3: val/loss" in out and "validation at step 6: val/loss" in out
    for noise in ("GPU available", "TPU available", "Tip:", "LeafSpec", "weights_only", "Writing model shards", "v_num"):
        assert noise not in out + err, noise
    lines = [ln.split(" - ", 1)[-1] for ln in out.splitlines() if ln.strip()]
    assert len(lines) < 40
    assert "Trainer.fit` stopped" not in err  # Lightning's lines reach the console once (through Hydra's log)
    assert (tmp_path / "run" / "train.log").read_text().count("validation at step 3") == 1


def test_progress_line_reads_metrics_and_eta():
    from types import SimpleNamespace

    import torch

    from tsm.console import RunProgress

    p = RunProgress(every_n_steps=10, tty=False)
    p._t0, p._first_step = 0.0, 100
    trainer = SimpleNamespace(global_step=110, max_steps=200,
                              callback_metrics={"train/loss": torch.tensor(0.0712), "train/lr": torch.tensor(7.6e-4)})
    p._val, p._val_step = {"val/accuracy@1": 0.582}, 100
    import time

    p._t0 = time.perf_counter() - 25.0  # 10 steps in 25 s -> 2.5 s a step, 90 left -> 3:45
    line = p.line(trainer)
    assert line.startswith("step 110/200 | 2.50 s/step | ETA 3:4")
    assert "loss 0.0712" in line and "lr 7.60e-04" in line and "val/accuracy@1 58.20% (step 100)" in line
    trainer.callback_metrics["train/reward/mean"] = torch.tensor(0.5)  # GRPO: the reward instead of a loss
    assert "reward 0.500" in p.line(trainer) and "loss" not in p.line(trainer).split("|")[3]
