"""``train.py -m`` end to end on tiny models, and the W&B run lifecycle of a job (tsm.tracking)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_RUN, compose_cfg

ROOT = Path(__file__).resolve().parents[1]


def file_gets(path: Path, data: bytes, timeout_s: float = 30.0) -> bool:
    """Whether ``data`` shows up in ``path`` (W&B's service process may flush after the job ends)."""
    deadline = time.monotonic() + timeout_s
    while data not in path.read_bytes():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def tiny_multirun_args(tmp_path: Path) -> list[str]:
    return [*(a for a in TINY_RUN if not a.startswith(("model=", "logger="))), "model=tiny_1m",
            "sft.max_steps=2", "sft.val_check_interval=2", "evaluate.n_rows=4",
            f"data.output_dir={tmp_path / 'data'}"]


def test_two_job_multirun_writes_each_job_and_the_report(tmp_path):
    from tsm.models import build_math_tokenizer
    from tsm.models.tiny import TINY_PRESETS, build_tiny_model, count_parameters

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *tiny_multirun_args(tmp_path),
           "data.simplicity=0.5,1.0", "logger=[csv,wandb]", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    # one folder per job, with its overrides, its metrics and its own, finished W&B run
    wandb_runs = set()
    for num, simplicity in ((0, 0.5), (1, 1.0)):
        job = sweep / str(num)
        assert f"data.simplicity={simplicity}" in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        metrics = json.loads((job / "metrics.json").read_text())
        assert 0.0 <= metrics["after"]["accuracy@1"] <= 1.0 and metrics["after"]["n_prompts"] == 4
        assert (job / "sft" / "hf" / "config.json").exists()
        runs = list((job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1, runs
        assert file_gets(runs[0], b"test/after/accuracy@1")  # the sweeps' metric is in the summary
        wandb_runs.add(runs[0].name)
        assert f"Output dir: {job}" in out
        # the run is named after the swept key only, not the fixed tiny settings
        assert f"W&B run tiny_sft data.simplicity={simplicity} (offline)" in out
    assert len(wandb_runs) == 2

    # the sweep's report, written by the Hydra callback: table (printed too), CSV, plot
    with open(sweep / "report.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["job"], r["model"], float(r["simplicity"]), r["status"]) for r in rows] == [
        ("0", "tiny_1m", 0.5, "done"), ("1", "tiny_1m", 1.0, "done")]
    expected = count_parameters(build_tiny_model(TINY_PRESETS["tiny_1m"], build_math_tokenizer()))
    assert [int(r["parameters"]) for r in rows] == [expected, expected]
    for r, num in zip(rows, (0, 1)):
        after = json.loads((sweep / str(num) / "metrics.json").read_text())["after"]["accuracy@1"]
        assert float(r["accuracy@1 after"]) == pytest.approx(after)
    assert (sweep / "report.md").read_text() in out
    assert (sweep / "report.png").read_bytes().startswith(b"\x89PNG")
    assert list((sweep / "wandb").glob("offline-run-*/run-*.wandb"))  # the report's own W&B run


def test_wandb_run_carries_the_config_names_and_summary(tmp_path, monkeypatch):
    import wandb

    from tsm.tracking import log_summary, wandb_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg("train", ["experiment=tiny_sft", "model=tiny_1m", "logger=[csv,wandb]"], tmp_path)
    with wandb_run(cfg) as run:
        assert run is wandb.run and run.group == "tiny_sft" and run.project == "tsm"
        assert set(run.tags) == {"tiny_sft", "tiny_1m"} and run.name == "tiny_sft"
        assert run.config["model"]["name"] == "tiny_1m" and run.config["sft"]["max_steps"] == 2000  # resolved
        log_summary(run, {"after": {"accuracy@1": 0.25}, "seconds": 3.0, "sft/hf": "x"})
        assert run.summary["test/after/accuracy@1"] == 0.25 and run.summary["seconds"] == 3.0
    assert wandb.run is None
    assert Path(run.dir).is_relative_to(tmp_path / "run")  # under the run folder


def test_a_failed_job_finishes_its_wandb_run_and_the_next_job_gets_a_new_one(tmp_path, monkeypatch):
    import wandb

    from train import main
    from tsm.tracking import wandb_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    # model=local without model.path: fails after the W&B run is open
    bad = compose_cfg("train", ["experiment=tiny_sft", "model=local", "logger=wandb"], tmp_path / "bad")
    with pytest.raises(Exception, match="path"):
        main(bad)  # @hydra.main passes a config straight through
    assert wandb.run is None
    failed = list((tmp_path / "bad" / "run" / "wandb").glob("offline-run-*"))
    assert len(failed) == 1
    good = compose_cfg("train", ["experiment=tiny_sft", "model=tiny_1m", "logger=wandb"], tmp_path / "good")
    with wandb_run(good) as run:
        assert run is not None and run.id not in failed[0].name
    assert wandb.run is None


def test_no_wandb_node_no_run(tmp_path):
    import wandb

    from tsm.tracking import wandb_run

    with wandb_run(compose_cfg("train", ["experiment=tiny_sft", "logger=csv"], tmp_path)) as run:
        assert run is None and wandb.run is None


@pytest.mark.parametrize("env, offline, mode", [
    ({}, None, "offline"),
    ({"WANDB_API_KEY": "k"}, None, "online"),
    ({"WANDB_SWEEP_ID": "s"}, None, "online"),
    ({"WANDB_API_KEY": "k", "WANDB_MODE": "disabled"}, None, "disabled"),
    ({"WANDB_API_KEY": "k"}, True, "offline"),
    ({}, False, "online"),
])
def test_wandb_mode(env, offline, mode, monkeypatch):
    from tsm.tracking import wandb_mode

    for key in ("WANDB_API_KEY", "WANDB_SWEEP_ID", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert wandb_mode(offline) == mode


@pytest.mark.slow
def test_optuna_grid_search_runs_each_point_once_and_reports_the_best(tmp_path):
    sweep = tmp_path / "optuna"
    args = [a for a in tiny_multirun_args(tmp_path) if not a.startswith("experiment=")]
    # narrowing the grid: a one-value choice() (a plain model=... would leave Optuna's grid at 3 x 2)
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=size_simplicity", *args,
           "model=choice(tiny_1m)", "data.simplicity=0.5,1.0", "logger=csv", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = sorted(json.loads((sweep / str(i) / "metrics.json").read_text())["after"]["accuracy@1"]
                    for i in (0, 1))
    assert result["best_value"] == pytest.approx(values[-1])  # train.py's return value is the objective
    assert not (sweep / "2").exists()
    with open(sweep / "report.csv") as fh:
        assert sorted(float(r["simplicity"]) for r in csv.DictReader(fh)) == [0.5, 1.0]
