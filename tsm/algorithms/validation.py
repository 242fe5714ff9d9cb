"""Generation-based validation shared by the training stages: greedy ``val/accuracy@1``.

Rank 0 generates and scores the data module's fixed ``val_generate`` prompts; the value is
broadcast so every rank logs the same number.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.distributed as dist


def generation_accuracy(module: L.LightningModule, engine: Any, reward: Any, max_new_tokens: int) -> float | None:
    """Greedy Accuracy@1 of ``engine`` on ``trainer.datamodule.val_generate``; None when there is nothing to score."""
    trainer = module.trainer
    dm = trainer.datamodule
    if reward is None or dm is None or not getattr(dm, "val_generate", {}).get("prompt_ids"):
        return None
    from tsm.evaluation import generate_and_score
    from tsm.rollout.base import SamplingParams

    value = torch.zeros((), device=module.device)
    if trainer.is_global_zero:
        result = generate_and_score(
            engine, dm.val_generate["prompt_ids"], dm.val_generate["ground_truths"],
            SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0), reward,
        )
        value += result.metrics["accuracy@1"]
    if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
        dist.broadcast(value, src=0)
    return float(value)
