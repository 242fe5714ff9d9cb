"""Supervised finetuning (the first half of Diff-TSM's recipe) as a LightningModule.

Features and the flags that turn them on (torchtune-style):

- Completion-only cross-entropy: prompt tokens carry no loss (labels -100, ``tsm.data.sft``).
- Loss normalized by the number of target tokens of the whole optimizer step, summed over
  micro-batches and DDP ranks: every target token weighs the same whatever the accumulation or
  device count (``data_module.batch_size`` / ``micro_batch_size``; ``trainer.devices``).
- AdamW with linear warmup and cosine decay: ``sft.optimizer.lr``, ``sft.warmup_steps``,
  ``sft.min_lr_ratio``; gradient clipping by global norm: ``sft.grad_clip`` (0 = off).
- bf16 autocast on GPU: ``trainer.precision=bf16-mixed``.
- Gradient checkpointing: ``model.gradient_checkpointing=true``.
- Validation loss each validation run, and every ``sft.val_generate_every`` steps a
  generation-based ``val/accuracy@1`` on a fixed subset (greedy), scored by the reward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from tsm.algorithms.schedules import optimizer_with_schedule
from tsm.algorithms.steps import global_sum, micro_batch, optimizer_step
from tsm.data.sft import IGNORE_INDEX


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token cross-entropy over target tokens, and their count.

    The output projection runs only at positions that predict a target token: with prompts
    longer than answers (the usual case here) that skips most of the vocabulary matmul, which
    for a 49k-token vocabulary is a fifth of a 135M model's compute.
    """
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    if decoder is None or head is None:  # an architecture without the usual split: full logits
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits[:, :-1]
        logits, targets = logits[keep], labels[keep]
    else:
        # use_cache=False: otherwise transformers builds a KV cache nobody reads (2 concats per layer)
        hidden = decoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).last_hidden_state
        logits, targets = head(hidden[:, :-1][keep]), labels[keep]
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, keep.sum()


class SFTModule(L.LightningModule):
    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        max_steps: int,
        warmup_steps: int = 10,
        min_lr_ratio: float = 0.1,
        grad_clip: float = 1.0,
        val_generate_every: int = 0,
        val_max_new_tokens: int = 64,
        reward: Any = None,
    ):
        super().__init__()
        if max_steps < 1:
            raise ValueError(f"sft.max_steps must be >= 1, got {max_steps}")
        self.automatic_optimization = False  # exact token-normalized accumulation, see module doc
        self.model, self.tokenizer, self.reward = model, tokenizer, reward
        self.optimizer_factory = optimizer
        self.max_steps, self.warmup_steps, self.min_lr_ratio = max_steps, warmup_steps, min_lr_ratio
        self.grad_clip = grad_clip
        self.val_generate_every, self.val_max_new_tokens = val_generate_every, val_max_new_tokens
        self._val_sums: list[torch.Tensor] = []
        self._last_generate_step = -1

    def on_fit_start(self) -> None:
        self.model.train()  # from_pretrained returns eval mode; dropout etc. must be on for training

    # -- optimization -------------------------------------------------------------------------
    def configure_optimizers(self):
        return optimizer_with_schedule(self.model, self.optimizer_factory, self.warmup_steps, self.max_steps,
                                       self.min_lr_ratio)

    def training_step(self, step_batch: list[dict[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        t0 = time.perf_counter()
        opt = self.optimizers()
        sched = self.lr_schedulers()
        local_tokens = sum((mb["labels"][:, 1:] != IGNORE_INDEX).sum() for mb in step_batch)
        global_tokens = global_sum(self, torch.as_tensor(local_tokens, device=self.device)).clamp(min=1)
        # DDP averages gradients over ranks; scaling by world_size / global tokens turns that
        # average into the sum over all target tokens divided by their global count.
        scale = self.trainer.world_size / global_tokens.float()
        loss_sum = torch.zeros((), device=self.device)
        for i, mb in enumerate(step_batch):
            with micro_batch(self, last=i == len(step_batch) - 1):
                loss, _ = token_loss_sum(self.model, mb)
                self.manual_backward(loss * scale)
            loss_sum += loss.detach()
        optimizer_step(self, opt, sched, self.grad_clip)
        mean_loss = global_sum(self, loss_sum) / global_tokens
        n_tok = sum(int(mb["attention_mask"].sum()) for mb in step_batch) * self.trainer.world_size
        self.log_dict(
            {
                "train/loss": mean_loss,
                "train/lr": sched.get_last_lr()[0],
                "train/target_tokens": global_tokens.float(),
                "train/tokens_per_s": n_tok / max(time.perf_counter() - t0, 1e-9),
            },
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            batch_size=1,
            rank_zero_only=True,
        )
        return mean_loss

    # -- validation ---------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, n = token_loss_sum(self.model, batch)
        self._val_sums.append(torch.stack([loss.detach().float(), n.float()]))

    def on_validation_epoch_end(self) -> None:
        if self._val_sums:
            total = global_sum(self, torch.stack(self._val_sums).sum(0))
            self.log("val/loss", total[0] / total[1].clamp(min=1), batch_size=1, rank_zero_only=True)
            self._val_sums.clear()
        step = self.global_step
        due = self.val_generate_every > 0 and (
            step % self.val_generate_every == 0 or step >= self.max_steps
        )
        if due and step != self._last_generate_step and not self.trainer.sanity_checking:
            self._last_generate_step = step
            acc = self.generation_accuracy()
            if acc is not None:
                self.log("val/accuracy@1", acc, batch_size=1, rank_zero_only=True)

    def generation_accuracy(self) -> float | None:
        """Greedy Accuracy@1 on the data module's fixed validation prompts (rank 0 computes it)."""
        from tsm.algorithms.validation import generation_accuracy
        from tsm.rollout.hf import HFEngine, autocast_dtype_for

        engine = HFEngine(self.model, self.tokenizer, autocast_dtype=autocast_dtype_for(self.trainer.precision))
        return generation_accuracy(self, engine, self.reward, self.val_max_new_tokens)
