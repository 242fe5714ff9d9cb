"""The optimizer-step mechanics SFT and GRPO share (manual optimization in Lightning).

Both modules accumulate gradients over micro-batches and take one optimizer step per batch; with
DDP, every micro-batch but the last skips the gradient all-reduce, and the losses are weighted so
that DDP's average over ranks becomes the global normalization (the modules pass their scale).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
import torch.distributed as dist


def global_sum(module: L.LightningModule, value: torch.Tensor | float) -> torch.Tensor:
    """``value`` summed over all ranks (itself on one process); always a tensor on the module's device."""
    t = value.clone() if isinstance(value, torch.Tensor) else torch.tensor(float(value), device=module.device)
    if _distributed(module):
        dist.all_reduce(t)
    return t


def _distributed(module: L.LightningModule) -> bool:
    """Whether ``module`` trains in a process group of more than one rank."""
    trainer = module._trainer
    return dist.is_available() and dist.is_initialized() and trainer is not None and trainer.world_size > 1


def global_counts(module: L.LightningModule, counts: Counter) -> Counter:
    """``counts`` (label -> count) summed over all ranks, whose labels may differ (itself on one process)."""
    if not _distributed(module):
        return Counter(counts)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, dict(counts))
    return sum((Counter(c) for c in gathered), Counter())


@contextlib.contextmanager
def micro_batch(module: L.LightningModule, last: bool) -> Iterator[None]:
    """Around one micro-batch's forward/backward: no DDP gradient sync except on the last one."""
    block = getattr(module.trainer.strategy, "block_backward_sync", None)  # DDP only
    with block() if block is not None and not last else contextlib.nullcontext():
        yield


def optimizer_step(module: L.LightningModule, optimizer, scheduler, grad_clip: float) -> None:
    """Global-norm clipping (``grad_clip`` > 0), the step, zeroed gradients, the schedule's step."""
    if grad_clip > 0:
        module.clip_gradients(optimizer, gradient_clip_val=grad_clip, gradient_clip_algorithm="norm")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


__all__ = ["global_sum", "micro_batch", "optimizer_step"]
