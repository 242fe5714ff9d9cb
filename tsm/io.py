"""Helpers every layer uses, at the bottom of the house (it imports only ``tsm.atomic`` from tsm):
reading and writing a dataset/responses parquet, and printing/saving a run's config. Atomic writes
and stale-temporary clean-up live beside it in ``tsm.atomic``."""

from __future__ import annotations

import functools
import io
import logging
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf

__all__ = ["config_summary", "print_config_tree", "read_rows", "write_rows"]

log = logging.getLogger("tsm")


def read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a dataset/responses parquet as dicts; a corrupt file fails with its path in the message."""
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise ValueError(f"cannot read parquet {path}: {exc}") from exc


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as a parquet at ``path`` (its folder made), written atomically (``tsm.atomic``)."""
    import pyarrow as pa

    from tsm.atomic import write_atomic

    table = pa.Table.from_pylist(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))



def print_config_tree(cfg: DictConfig, save_dir: Path | None = None, show: bool | None = None) -> str:
    """The resolved config as a rich tree, saved as text and YAML beside the run; printed whole only
    with ``show`` (default: ``console.print_config``), else summarized in one log line."""
    import rich.syntax
    import rich.tree
    from rich.console import Console

    tree = rich.tree.Tree("CONFIG", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(str(key))
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    if show is None:
        show = bool(OmegaConf.select(cfg, "console.print_config", default=False))
    console = Console(record=True, width=110, **({} if show else {"file": io.StringIO()}))
    console.print(tree)
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        (save_dir / "config_tree.txt").write_text(console.export_text())
        (save_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if not show:
        log.info("Config: %s (whole tree: %s; console.print_config=true prints it)", config_summary(cfg),
                 (save_dir / "config_tree.txt") if save_dir is not None else "not saved")
    return console.export_text()


def config_summary(cfg: DictConfig) -> str:
    """One line: task, stages with their steps and lr, model, data, init/resume points."""
    sel = functools.partial(OmegaConf.select, cfg, default=None)
    parts = [f"task {sel('task_name')}"]
    for stage in sel("stages") or []:
        batch, frac = sel(f"{stage}.data_module.batch_size"), sel(f"{stage}.module.select_fraction")
        if isinstance(batch, int) and isinstance(frac, float) and frac < 1.0:
            batch = f"{batch} (trains on the hardest {max(1, round(frac * batch))})"
        parts.append(f"{stage} {sel(f'{stage}.max_steps')} steps x {batch}, "
                     f"lr {sel(f'{stage}.module.optimizer.lr')}")
    model = sel("model.name") or sel("model.path") or sel("checkpoint")
    if model:
        parts.append(f"model {model}")
    data = sel("data")
    if isinstance(data, DictConfig):
        target = str(data.get("_target_", ""))
        parts.append("data ood" if target.endswith("OODSpec") else
                     f"data simplicity {data.get('simplicity')}, seed {data.get('seed')}, "
                     f"{data.get('n_train')} train / {data.get('n_test')} test")
    for key in ("init_from", "ckpt_path"):
        if sel(key):
            parts.append(f"{key} {sel(key)}")
    return "; ".join(parts)
