"""tsm.report on a hand-made multirun folder: table, CSV/markdown, plot, W&B table and chart."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tsm.report import collect, count_hf_parameters, main, report_title, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_job(sweep: Path, num: int, model: str, simplicity: float, *, lr: str = "0.001",
             after: float | None = None, parameters: int | None = None, export_shapes: list | None = None,
             val_losses: list[float] | None = None, wandb: bool = False, task: str | None = None) -> Path:
    """A job folder as train.py + Hydra leave it; ``after=None`` = a job that wrote no metrics."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    overrides = ["experiment=tiny_sft", f"model={model}", f"data.simplicity={simplicity}",
                 f"sft.module.optimizer.lr={lr}"]
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    cfg = {"task_name": "tiny_sft", "model": {"name": model},
           "data": {"simplicity": simplicity, **({"task": task} if task else {})},
           "paths": {"output_dir": "${hydra:runtime.output_dir}"},  # unresolvable outside Hydra, as in real files
           "logger": {"wandb": {"project": "tsm"}} if wandb else {"csv": {}}}
    OmegaConf.save(OmegaConf.create(cfg), job / ".hydra" / "config.yaml")
    if after is None:
        return job
    metrics = {"output_dir": str(job), "before": {"accuracy@1": 0.0, "n_prompts": 64.0},
               "sft/seconds": 10.0, "sft/hf": str(job / "sft" / "hf"),
               "after": {"accuracy@1": after, "boxed_rate": 1.0, "n_prompts": 64.0}, "seconds": 12.5}
    if parameters is not None:
        metrics["model/parameters"] = parameters
    if export_shapes is not None:
        from safetensors.numpy import save_file

        (job / "sft" / "hf").mkdir(parents=True)
        save_file({f"w{i}": np.zeros(s, dtype=np.float32) for i, s in enumerate(export_shapes)},
                  str(job / "sft" / "hf" / "model.safetensors"))
    if val_losses is not None:  # Lightning's CSV logger: train rows and val rows, blanks elsewhere
        for version, losses in enumerate([[9.9], val_losses]):  # version_1 is the latest
            log_dir = job / "sft" / "csv" / f"version_{version}"
            log_dir.mkdir(parents=True)
            rows = [f"0,{i},1.5,\n0,{i},,{v}" for i, v in enumerate(losses)]
            (log_dir / "metrics.csv").write_text("epoch,step,train/loss,val/loss\n" + "\n".join(rows) + "\n")
    (job / "metrics.json").write_text(json.dumps(metrics))
    return job


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    sweep = tmp_path / "multirun" / "tiny_sft" / "2026-01-01_00-00-00"
    make_job(sweep, 0, "tiny_1m", 0.5, after=0.25, parameters=1_000_000, val_losses=[2.0, 0.9])
    make_job(sweep, 1, "tiny_1m", 1.0, after=0.50, export_shapes=[(1000, 1000)], val_losses=[1.0, 0.5])
    make_job(sweep, 2, "tiny_5m", 0.5, after=0.40, parameters=5_000_000)
    make_job(sweep, 3, "tiny_5m", 1.0, after=0.75, export_shapes=[(2000, 2000), (1000, 1000)])
    make_job(sweep, 10, "tiny_20m", 1.0, after=None)  # failed: no metrics.json
    return sweep


def test_collect_reads_jobs_in_order_with_parameters_from_metrics_or_export(sweep_dir):
    jobs = collect(sweep_dir)
    assert [j.job for j in jobs] == ["0", "1", "2", "3", "10"]  # numeric order, not "10" < "2"
    assert [j.parameters for j in jobs] == [1_000_000, 1_000_000, 5_000_000, 5_000_000, None]
    assert [j.simplicity for j in jobs] == [0.5, 1.0, 0.5, 1.0, 1.0]
    assert jobs[3].after["accuracy@1"] == 0.75 and jobs[4].metrics is None
    assert all(j.extra == {} for j in jobs)  # lr is the same everywhere: not a swept key
    assert [j.val_loss for j in jobs] == [0.9, 0.5, None, None, None]  # last row of the latest version
    assert jobs[0].task == "tiny_sft"


def test_report_files_table_and_plot(sweep_dir, capsys):
    files = write_report(sweep_dir, wandb=False)
    assert set(files) == {"csv", "md", "png"}
    with open(files["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["tiny_1m", "tiny_1m", "tiny_5m", "tiny_5m", "tiny_20m"]
    assert [r["accuracy@1 after"] for r in rows[:4]] == ["0.25", "0.5", "0.4", "0.75"]
    assert rows[3]["parameters"] == "5000000" and rows[3]["simplicity"] == "1.0"
    assert rows[4]["status"] == "no metrics" and rows[4]["accuracy@1 after"] == ""
    assert rows[0]["val/loss"] == "0.9" and rows[2]["val/loss"] == ""
    md = files["md"].read_text()
    assert "| 3 | tiny_5m | 5.00M | 1 | 0.0% | 75.0% | 100.0% | 64 |  | 12 | done |" in md
    assert md in capsys.readouterr().out  # printed too
    png = files["png"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 20_000  # a real figure, not an empty canvas
    width = int.from_bytes(png[16:20], "big")  # IHDR: two panels (accuracy, val/loss) side by side
    assert width > 1.6 * int.from_bytes(png[20:24], "big")
    assert not list(sweep_dir.glob(".report*"))  # no temporary files left


def test_plot_has_one_line_per_simplicity_sorted_by_size(sweep_dir):
    from tsm.report import _series

    lines = _series(collect(sweep_dir))
    assert list(lines) == ["simplicity 0.5", "simplicity 1"]
    assert lines["simplicity 1"] == [(1_000_000, 0.5, "tiny_1m"), (5_000_000, 0.75, "tiny_5m")]
    assert _series(collect(sweep_dir), "val/loss") == {
        "simplicity 0.5": [(1_000_000, 0.9, "tiny_1m")], "simplicity 1": [(1_000_000, 0.5, "tiny_1m")]}


def test_other_swept_keys_get_columns_and_their_own_lines(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "tiny_1m", 0.5, lr="0.001", after=0.2, parameters=10**6)
    make_job(sweep, 1, "tiny_1m", 0.5, lr="0.0003", after=0.1, parameters=10**6)
    jobs = collect(sweep)
    assert [j.extra for j in jobs] == [{"sft.module.optimizer.lr": "0.001"}, {"sft.module.optimizer.lr": "0.0003"}]
    from tsm.report import _series

    assert len(_series(jobs)) == 2
    assert "sft.module.optimizer.lr" in write_report(sweep, wandb=False, echo=False)["csv"].read_text()


def test_plot_title_names_the_task_only_when_jobs_share_one(sweep_dir):
    jobs = collect(sweep_dir)
    assert report_title(jobs, sweep_dir).startswith("tiny_sft [differentiation]: ")
    jobs[1] = dataclasses.replace(jobs[1], task="smallest_tiny5m_rl")  # runs of different experiments
    title = report_title(jobs, sweep_dir)
    assert "tiny_sft" not in title and "smallest" not in title
    assert title.startswith(f"{sweep_dir.name} (2 experiments)")


def test_count_hf_parameters_matches_the_model(tiny_llama, tmp_path):
    model, _ = tiny_llama
    model.save_pretrained(tmp_path / "hf")
    assert count_hf_parameters(tmp_path / "hf") == sum(p.numel() for p in model.parameters())  # tied: once
    assert count_hf_parameters(tmp_path) is None


def test_cli_logs_table_and_chart_to_offline_wandb(sweep_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "report"
    main([str(sweep_dir), "--out", str(out), "--wandb", "on"])
    assert (out / "report.csv").exists() and (out / "report.png").exists()
    runs = list((sweep_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # the SDK writes logged media beside the run before log() returns (the .wandb records are
    # flushed by the W&B service process, maybe after finish() returns)
    media = runs[0] / "files" / "media"
    (jobs_table,) = (media / "table" / "report").glob("jobs_*.table.json")
    table = json.loads(jobs_table.read_text())
    assert table["columns"][:4] == ["job", "model", "parameters", "simplicity"] and len(table["data"]) == 5
    (chart,) = (media / "table" / "report").glob("accuracy_vs_parameters_table_*.table.json")
    assert sorted(row[:2] for row in json.loads(chart.read_text())["data"]) == [
        [1_000_000, 25.0], [1_000_000, 50.0], [5_000_000, 40.0], [5_000_000, 75.0]]
    assert list((media / "images" / "report").glob("accuracy_vs_parameters_png_*.png"))
    import wandb

    assert wandb.run is None  # the report's run is finished


def test_cli_auto_wandb_follows_the_jobs_logger(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, "tiny_1m", 0.5, after=0.2, parameters=10**6)
    main([str(sweep), "--no-plot"])
    assert not (sweep / "wandb").exists() and not (sweep / "report.png").exists()
    make_job(sweep, 1, "tiny_5m", 0.5, after=0.3, parameters=5 * 10**6, wandb=True)
    main([str(sweep)])
    assert list((sweep / "wandb").glob("offline-run-*/files/media/table/report/jobs_*.table.json"))


def test_no_report_without_finished_jobs(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    make_job(tmp_path, 0, "tiny_1m", 0.5, after=None)  # e.g. a `python -m tsm.data` multirun
    assert write_report(tmp_path, wandb=False) == {}
    assert not (tmp_path / "report.csv").exists()


def test_jobs_report_their_task(tmp_path):
    """A sweep per task: the task is a column and in the title; a sweep over tasks gets a line per task."""
    sweep = tmp_path / "multirun" / "tiny_sft" / "t"
    make_job(sweep, 0, "tiny_1m", 0.5, after=0.2, parameters=1_000_000, task="integration")
    make_job(sweep, 1, "tiny_5m", 0.5, after=0.4, parameters=5_000_000, task="integration")
    jobs = collect(sweep)
    assert {j.problem for j in jobs} == {"integration"}
    assert "[integration]" in report_title(jobs, sweep)
    write_report(sweep, make_plot=False, wandb=False, echo=False)
    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert [r["task"] for r in rows] == ["integration", "integration"]
    make_job(sweep, 2, "tiny_1m", 0.5, after=0.9, parameters=1_000_000)  # no data.task: differentiation
    jobs = collect(sweep)
    assert "[differentiation, integration]" in report_title(jobs, sweep)
