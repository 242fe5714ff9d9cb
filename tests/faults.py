"""Fault injection for tests: a Lightning callback that kill -9s its own process at a chosen point.

Added to a run with ``+callbacks.kill={_target_: tests.faults.KillAt, step: N, when: ..., stage: ...}``
(``stage``: only in that stage's trainer, e.g. ``grpo``; default: any):

- ``when=step``: right after optimizer step ``N`` (and after any checkpoint saved at ``N``).
- ``when=write``: while the checkpoint of step ``N`` is being written: the real
  ``AtomicCheckpointIO`` runs, but its ``torch.save`` writes half the bytes to the temporary file,
  flushes them to disk and the process dies (SIGKILL: no ``finally``, no atexit, no flush).
"""
from __future__ import annotations

import io
import os
import signal

import lightning as L
from lightning.pytorch.callbacks import Callback


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    def __init__(self, step: int, when: str = "step", stage: str | None = None):
        if when not in ("step", "write"):
            raise ValueError(f"when must be 'step' or 'write', got {when!r}")
        self.step, self.when, self.stage = int(step), when, stage
        self.armed = True

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        from pathlib import Path

        self.armed = self.stage is None or Path(trainer.default_root_dir).name == self.stage
        if self.when != "write" or not self.armed:
            return
        import torch

        real_save, target = torch.save, self.step

        def half_save(obj, f, *args, **kwargs):
            if trainer.global_step == target and hasattr(f, "write"):
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                die()
            return real_save(obj, f, *args, **kwargs)

        torch.save = half_save

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if self.armed and self.when == "step" and trainer.global_step == self.step:
            die()
