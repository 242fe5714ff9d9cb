"""Bad input fails before any work: one line naming the key, exit status 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import open_dict

from tests.helpers import TINY_RUN, compose_cfg
from tsm.validate import UserError, check_evaluate, check_train

ROOT = Path(__file__).resolve().parents[1]


def train_cfg(tmp_path, *extra):
    return compose_cfg("train", [*TINY_RUN, f"data.output_dir={tmp_path / 'data'}", *extra], tmp_path)


@pytest.mark.parametrize(("overrides", "expected"), [
    (["stages=[sft,grpo]", "grpo.module.group_size=1"], "grpo.module.group_size=1: must be an integer >= 2"),
    (["ckpt_path=/nonexistent.ckpt"], "ckpt_path /nonexistent.ckpt does not exist"),
    (["sft.module.optimizer.lr=-1"], "sft.module.optimizer.lr=-1: must be a number > 0"),
    (["sft.max_steps=0"], "sft.max_steps=0: must be an integer > 0"),
    (["sft.data_module.batch_size=10", "sft.data_module.micro_batch_size=4"], "must be a multiple of micro_batch_size=4"),
    (["stages=[sft,ppo]"], "stages=['sft', 'ppo']: each must be one of"),
    (["stages=[ei]", "ei.rounds=0"], "ei.rounds=0: must be an integer > 0"),
    (["stages=[ei]", "ei.min_pass_rate=0.9", "ei.max_pass_rate=0.5"], "ei.max_pass_rate=0.5: need 0 <= min <= max <= 1"),
    (["stages=[ei]", "ei.sft.data_module.batch_size=10", "ei.sft.data_module.micro_batch_size=4"],
     "ei.sft.data_module.batch_size=10: must be a multiple of micro_batch_size=4"),
    (["init_from=./no/such/folder"], "init_from=./no/such/folder: no such folder"),
    (["grow={num_layers: 4}"], "grow needs init_from"),
    (["init_from=tsm-diff-5m", "grow={layers: 12}"], "must be {num_layers: <int>}"),
    (["init_from=tsm-diff-5m", "grow={num_layers: twelve}"], "must be {num_layers: <int>}"),
    (["init_from=tsm-diff-5m", "grow={num_layers: 3}"], "grow.num_layers=3: fewer than tsm-diff-5m's 6 layers"),
    (["data.simplicity=2"], "data: data.simplicity=2: must be a probability"),
    (["data.output_dir=/proc/tsm-data"], "data.output_dir=/proc/tsm-data: not a writable folder"),
])
def test_check_train_names_the_bad_key(tmp_path, overrides, expected):
    cfg = train_cfg(tmp_path, *overrides)
    with open_dict(cfg):  # compose_cfg points data at tmp_path; the case's own output_dir wins
        cfg.data.output_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("data.output_dir=")),
                                   cfg.data.output_dir)
    with pytest.raises(UserError) as err:
        check_train(cfg)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_check_train_reports_every_problem_and_passes_a_good_config(tmp_path):
    check_train(train_cfg(tmp_path))  # the tiny test run itself is fine
    with pytest.raises(UserError) as err:
        check_train(train_cfg(tmp_path, "sft.module.optimizer.lr=-1", "sft.max_steps=0"))
    assert "lr=-1" in str(err.value) and "max_steps=0" in str(err.value)


def test_a_finished_run_folder_is_never_overwritten(tmp_path):
    cfg = train_cfg(tmp_path)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a finished run"):
        check_train(cfg)


def test_check_evaluate_checks_checkpoint_and_responses_before_any_build(tmp_path):
    base = [f"data.output_dir={tmp_path / 'data'}", "wandb.enabled=false"]
    with pytest.raises(UserError, match="checkpoint=/nonexistent: no such folder"):
        check_evaluate(compose_cfg("evaluate", [*base, "checkpoint=/nonexistent"], tmp_path))
    assert not (tmp_path / "data").exists()  # no dataset was built first
    no_gold = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "responses": ["\\boxed{1}"]}]), no_gold)
    with pytest.raises(UserError, match=r"missing column\(s\) \['reward_model'\]"):
        check_evaluate(compose_cfg("evaluate", [*base, f"responses={no_gold}"], tmp_path))
    corrupt = tmp_path / "c.parquet"
    corrupt.write_bytes(b"not a parquet file at all")
    with pytest.raises(UserError, match="not a readable parquet file"):
        check_evaluate(compose_cfg("evaluate", [*base, f"responses={corrupt}"], tmp_path))
    check_evaluate(compose_cfg("evaluate", [*base, "checkpoint=tsm-diff-5m"], tmp_path))  # a shipped name is fine


def test_train_py_prints_one_line_and_exits_2(tmp_path):
    cmd = [sys.executable, "train.py", "experiment=tiny_sft", "model=tiny_1m", f"hydra.run.dir={tmp_path / 'run'}",
           f"data.output_dir={tmp_path / 'data'}", "stages=[sft,grpo]", "grpo.module.group_size=1"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: grpo.module.group_size=1")
    assert not (tmp_path / "data").exists()  # failed before any data was built
