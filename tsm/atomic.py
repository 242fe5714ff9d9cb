"""Writes that a kill -9 cannot leave half done, and the clean-up of what a killed writer left.

Every file tsm publishes (dataset parquet files and sidecars, evaluation outputs, Lightning
checkpoints, HF export folders) is first written beside its final path under a temporary name
``.<name>.tmp-<pid>`` and then renamed into place (``os.replace``: atomic on one filesystem). A
reader sees the old file or the whole new one, never a partial one. A writer killed before its
rename leaves only the temporary; ``remove_stale_temps`` (called by the next build or run that
writes into the folder) deletes those whose process is gone.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["remove_stale_temps", "temp_path", "write_atomic"]

_TEMP = re.compile(r"^\..+\.tmp-(\d+)(\.[^/]*)?$")


def temp_path(path: Path) -> Path:
    """The temporary name a writer in this process uses for ``path`` (same folder, so same filesystem)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` beside ``path``, then rename: readers never see a partial file or folder."""
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Deletes ``.<name>.tmp-<pid>`` files and folders in ``folder`` whose writer is no longer running."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and not _alive(int(m.group(1))):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed
