"""Checkpoints: Lightning ``.ckpt`` for exact resume, plus an HF folder at every save.

Layout of a stage folder::

    checkpoints/step{N}.ckpt   checkpoints/last.ckpt      (Lightning: weights, optimizer, loops)
    checkpoints/hf-step{N}/                               (save_pretrained: model + tokenizer + chat template)
    hf -> checkpoints/hf-step{last}                       (what the next stage, evaluate.py and vLLM load)

Every checkpoint and HF folder is written under a temporary name and renamed into place
(``tsm.atomic``), so a run killed while saving leaves the previous checkpoint usable and no
partial one; the next run that writes there removes the leftovers. ``latest_checkpoint`` turns a
run folder (what ``ckpt_path=<run folder>`` gives) into the newest complete checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from tsm.atomic import remove_stale_temps, write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, but written to a temporary beside the target, fsynced and
    renamed: a kill during the write never leaves a truncated ``.ckpt`` under its real name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())

        write_atomic(path, write)


class HFExport(Callback):
    """Writes ``<dirpath>/hf-step<N>`` whenever Lightning saves a checkpoint."""

    def __init__(self, dirpath: str | Path):
        self.dirpath = Path(dirpath)

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        folder = self.dirpath / f"hf-step{trainer.global_step}"
        if trainer.is_global_zero and not folder.exists():
            from tsm.models import save_hf

            save_hf(module.model, module.tokenizer, folder)  # staged and renamed into place


def checkpoint_callbacks(stage_dir: Path, every_n_steps: int) -> list[Callback]:
    ckpt_dir = stage_dir / "checkpoints"
    remove_stale_temps(ckpt_dir)
    callbacks: list[Callback] = [HFExport(ckpt_dir)]
    if every_n_steps > 0:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir, filename="step{step}", auto_insert_metric_name=False,
                every_n_train_steps=every_n_steps, save_top_k=-1, save_on_train_epoch_end=False,
            )
        )
    return callbacks


def finalize_stage(trainer: L.Trainer, stage_dir: Path) -> Path:
    """Saves ``last.ckpt`` (and so its HF folder) and points ``<stage_dir>/hf`` at it; all ranks call this."""
    ckpt_dir = stage_dir / "checkpoints"
    trainer.save_checkpoint(ckpt_dir / "last.ckpt")
    hf = stage_dir / "hf"
    if trainer.is_global_zero:
        target = Path("checkpoints") / f"hf-step{trainer.global_step}"
        # atomic: a reader never sees a missing or half-written link
        write_atomic(hf, lambda tmp: os.symlink(target, tmp))
    trainer.strategy.barrier("finalize_stage")
    return hf


def _step_of(path: Path) -> int:
    return int(path.stem[4:]) if path.stem.startswith("step") and path.stem[4:].isdigit() else -1


def latest_checkpoint(folder: str | Path, stages: list[str] | tuple[str, ...]) -> Path:
    """The newest complete checkpoint under a run folder (or a stage folder, or its checkpoints/):
    the latest stage that has one; there ``last.ckpt`` (the stage finished) else the highest
    ``step{N}.ckpt``. Raises FileNotFoundError naming the folder when there is none."""
    folder = Path(folder)
    candidates = [folder / s / "checkpoints" for s in reversed(list(stages))]
    candidates += [folder / "checkpoints", folder]
    for ckpt_dir in candidates:
        if not ckpt_dir.is_dir():
            continue
        if (ckpt_dir / "last.ckpt").is_file():
            return ckpt_dir / "last.ckpt"
        steps = sorted(ckpt_dir.glob("step*.ckpt"), key=_step_of)
        if steps and _step_of(steps[-1]) >= 0:
            return steps[-1]
    raise FileNotFoundError(f"no checkpoint (last.ckpt or step<N>.ckpt) under {folder}")
