"""tsm.atomic: a write is all-or-nothing under its real name; a killed writer's temporaries are
removed by the next build, and a live writer's are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tsm.atomic import remove_stale_temps, temp_path, write_atomic


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_write_atomic_publishes_whole_or_nothing(tmp_path):
    target = tmp_path / "a.txt"
    write_atomic(target, lambda tmp: tmp.write_text("one"))
    assert target.read_text() == "one"

    def fails(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, fails)
    assert target.read_text() == "one" and not list(tmp_path.glob(".*"))  # old file kept, no temp left


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = dead_pid()
    stale_file = tmp_path / f".train-abc.parquet.tmp-{dead}"
    stale_dir = tmp_path / f".hf-step4.tmp-{dead}"
    stale_trash = tmp_path / f".hf.old.tmp-{dead}.x1y2"
    stale_file.write_bytes(b"PAR1 half")
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"x")
    stale_trash.mkdir()
    live = temp_path(tmp_path / "metrics.json")  # this process: a write in progress
    live.write_text("{")
    keep = tmp_path / "step4.ckpt"
    keep.write_bytes(b"ok")
    removed = remove_stale_temps(tmp_path)
    assert set(removed) == {stale_file, stale_dir, stale_trash}
    assert live.exists() and keep.exists() and not stale_dir.exists()
    assert remove_stale_temps(tmp_path / "missing") == []


def test_the_next_build_removes_a_killed_builds_temporary(tmp_path):
    from tsm.data.build import DatasetSpec, build_dataset

    spec = DatasetSpec(n_train=16, n_test=8, seed=3, workers=0, output_dir=str(tmp_path))
    stale = spec.directory() / f".train-x.parquet.tmp-{dead_pid()}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"PAR1 half a parquet")
    files = build_dataset(spec)
    assert files.train.exists() and not stale.exists()
    assert not [p for p in os.listdir(spec.directory()) if ".tmp-" in p]
