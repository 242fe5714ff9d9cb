"""Checkpoints: Lightning ``.ckpt`` for exact resume, plus an HF folder at every save.

Layout of a stage folder::

    checkpoints/step{N}.ckpt   checkpoints/last.ckpt      (Lightning: weights, optimizer, loops)
    checkpoints/hf-step{N}/                               (save_pretrained: model + tokenizer + chat template)
    hf -> checkpoints/hf-step{last}                       (what the next stage, evaluate.py and vLLM load)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


class HFExport(Callback):
    """Writes ``<dirpath>/hf-step<N>`` whenever Lightning saves a checkpoint."""

    def __init__(self, dirpath: str | Path):
        self.dirpath = Path(dirpath)

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        folder = self.dirpath / f"hf-step{trainer.global_step}"
        if trainer.is_global_zero and not folder.exists():
            from tsm.models import save_hf

            save_hf(module.model, module.tokenizer, folder)


def checkpoint_callbacks(stage_dir: Path, every_n_steps: int) -> list[Callback]:
    ckpt_dir = stage_dir / "checkpoints"
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
        tmp = stage_dir / ".hf.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, hf)  # atomic: a reader never sees a missing or half-written link
    trainer.strategy.barrier("finalize_stage")
    return hf
