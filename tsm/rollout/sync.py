"""`WeightSync`: the Lightning callback that keeps a rollout engine on the current policy.

After every training batch that took an optimizer step, the policy's parameters
(``pl_module.model.named_parameters()``, cast to the engine's dtype) are pushed into the engine
with ``engine.load_weights``; micro-batches (gradient accumulation, or the GRPO module's inner
loop) never trigger a push, because the check is "did ``trainer.global_step`` move since the last
push", and Lightning counts optimizer steps there in both automatic and manual optimization.
A GRPO batch with ``ppo_epochs`` = μ > 1 takes μ steps and is pushed once, after the last one:
nothing samples in between. The weights are also pushed when training starts, after Lightning
restored a ``.ckpt``, so a resumed run never samples from the weights the engine was built with.

Engines that sample from the live policy (``engine.shares_policy_weights``, the HF engine) are
skipped. The time a push takes is logged as ``rollout/sync_seconds``; ``n_syncs`` counts pushes.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch


class WeightSync(L.Callback):
    def __init__(self, engine: Any):
        self.engine = engine
        self.n_syncs = 0  # pushes so far (tests check "once per optimizer step")
        self.last_seconds: float | None = None
        self._synced_step: int | None = None  # trainer.global_step at the last push

    @property
    def active(self) -> bool:
        return not getattr(self.engine, "shares_policy_weights", False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after a .ckpt restore: the engine may hold the initial (pre-resume) weights.
        if self.active:
            self.push(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self.active and trainer.global_step != self._synced_step:
            self.push(trainer, pl_module)
            # self.log is refused in on_train_start, so only per-step pushes are logged
            pl_module.log("rollout/sync_seconds", self.last_seconds, on_step=True, on_epoch=False,
                          batch_size=1)

    def push(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Push ``pl_module.model``'s parameters into the engine now."""
        dtype = getattr(self.engine, "dtype", None)
        t0 = time.perf_counter()
        with torch.no_grad():
            self.engine.load_weights(
                (name, p.detach() if dtype is None else p.detach().to(dtype))
                for name, p in pl_module.model.named_parameters()
            )
        self.last_seconds = time.perf_counter() - t0
        self.n_syncs += 1
        self._synced_step = trainer.global_step
