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
- Selective backprop (Jiang et al. 2019, "Accelerating Deep Learning by Focusing on the Biggest
  Losers"): ``sft.module.select_fraction`` < 1 scores every drawn sequence by its target NLL in a no-grad
  forward pass and trains the step on that fraction with the highest NLL (per rank);
  ``data_module.batch_size`` then counts the candidates. Off (1.0) by default. On the
  fresh-function stream (its micro-batches name each row's ``function_type``) every step also logs
  ``train/candidates/<type>`` and ``train/selected/<type>``, the rows of each generator family drawn
  and trained on (summed over ranks): which kinds of function the selection sends to the gradient
  (``selection_by_type`` sums them over a run's metrics CSV).
- Validation loss each validation run, and every ``sft.val_generate_every`` steps a
  generation-based ``val/accuracy@1`` on a fixed subset (greedy), scored by the reward.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tsm.algorithms.schedules import optimizer_with_schedule
from tsm.algorithms.steps import global_counts, global_sum, micro_batch, optimizer_step
from tsm.data.sft import IGNORE_INDEX


def target_logits(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict a target token, those targets, and the position mask.

    The output projection runs only at those positions: with prompts longer than answers (the
    usual case here) that skips most of the vocabulary matmul, which for a 49k-token vocabulary is a
    fifth of a 135M model's compute.
    """
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    if decoder is None or head is None:  # an architecture without the usual split: full logits
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits[:, :-1]
        return logits[keep], labels[keep], keep
    # use_cache=False: otherwise transformers builds a KV cache nobody reads (2 concats per layer)
    hidden = decoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    return head(hidden[:, :-1][keep]), labels[keep], keep


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token cross-entropy over target tokens, and their count."""
    logits, targets, keep = target_logits(model, batch)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, keep.sum()


@torch.no_grad()
def sequence_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's summed target-token NLL (-log p of its whole target under teacher forcing)."""
    logits, targets, keep = target_logits(model, batch)
    nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    rows = torch.arange(keep.shape[0], device=keep.device).unsqueeze(1).expand_as(keep)[keep]
    return torch.zeros(keep.shape[0], device=nll.device).index_add_(0, rows, nll)


def _row(mb: dict[str, Any], key: str, r: int, width: int) -> Any:
    """Row ``r`` of ``mb[key]`` cut or right-padded to ``width`` (labels pad with IGNORE_INDEX,
    ids and attention with 0: an attention-0 position after the row changes none of its losses);
    a per-row list (the stream's ``function_type``) gives its item."""
    if not isinstance(mb[key], torch.Tensor):
        return mb[key][r]
    row = mb[key][r, :width]
    fill = IGNORE_INDEX if key == "labels" else 0
    return torch.nn.functional.pad(row, (0, width - row.shape[0]), value=fill)


def select_hardest(
    step_batch: list[dict[str, torch.Tensor]], scores: torch.Tensor, k: int
) -> list[dict[str, torch.Tensor]]:
    """The ``k`` rows with the highest ``scores`` (one per row, micro-batches in order), re-batched
    into micro-batches of the original size and trimmed to their own longest row.

    Rows keep their right padding (attention 0, label IGNORE_INDEX), so trimming columns that are
    padding in every selected row changes no token's loss.
    """
    rows = [(mb, r) for mb in step_batch for r in range(mb["input_ids"].shape[0])]
    if scores.shape[0] != len(rows):
        raise ValueError(f"{scores.shape[0]} scores for {len(rows)} rows")
    if not 1 <= k <= len(rows):
        raise ValueError(f"select {k} of {len(rows)} rows")
    chosen = sorted(torch.topk(scores, k).indices.tolist())  # keep the stream's order
    mbs = step_batch[0]["input_ids"].shape[0]
    out = []
    for start in range(0, k, mbs):
        picks = [rows[i] for i in chosen[start : start + mbs]]
        width = max(int(mb["attention_mask"][r].sum()) for mb, r in picks)
        out.append({key: _stack([_row(mb, key, r, width) for mb, r in picks]) for key in picks[0][0]})
    return out


def _stack(rows: list[Any]) -> Any:
    return torch.stack(rows) if isinstance(rows[0], torch.Tensor) else rows


def type_counts(step_batch: list[dict[str, Any]], key: str = "function_type") -> Counter:
    """Rows per ``function_type`` of a step's micro-batches (empty when they carry no types)."""
    return Counter(t for mb in step_batch for t in mb.get(key, ()))


def selection_by_type(metrics_csv: str | Path) -> dict[str, tuple[int, int]]:
    """``{type: (candidates, selected)}`` summed over every step of a run's metrics CSV (the
    ``train/candidates/<type>`` and ``train/selected/<type>`` columns selective backprop logs)."""
    import pandas as pd

    frame = pd.read_csv(metrics_csv)
    out = {}
    for col in frame.columns:
        if col.startswith("train/candidates/"):
            kind = col.removeprefix("train/candidates/")
            chosen = frame.get(f"train/selected/{kind}")
            out[kind] = (int(frame[col].fillna(0).sum()), int(chosen.fillna(0).sum()) if chosen is not None else 0)
    return dict(sorted(out.items()))


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
        select_fraction: float = 1.0,
    ):
        super().__init__()
        if max_steps < 1:
            raise ValueError(f"sft.max_steps must be >= 1, got {max_steps}")
        self.automatic_optimization = False  # exact token-normalized accumulation, see module doc
        self.model, self.tokenizer, self.reward = model, tokenizer, reward
        self.optimizer_factory = optimizer
        self.max_steps, self.warmup_steps, self.min_lr_ratio = max_steps, warmup_steps, min_lr_ratio
        self.grad_clip = grad_clip
        if not 0.0 < select_fraction <= 1.0:
            raise ValueError(f"sft.select_fraction must be in (0, 1], got {select_fraction}")
        self.select_fraction = select_fraction
        self._type_labels: set[str] = set()  # function families logged by selective backprop so far
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
        extra: dict[str, Any] = {}
        if self.select_fraction < 1.0:
            step_batch, extra = self._select(step_batch)
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
                **extra,
            },
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            batch_size=1,
            rank_zero_only=True,
        )
        return mean_loss

    def _select(self, step_batch: list[dict[str, torch.Tensor]]) -> tuple[list[dict[str, torch.Tensor]], dict]:
        """Selective backprop: keep the ``select_fraction`` of this rank's rows with the highest NLL."""
        was_training = self.model.training
        self.model.eval()  # score without dropout
        try:
            scores = torch.cat([sequence_nll(self.model, mb) for mb in step_batch])
        finally:
            self.model.train(was_training)
        n_tokens = sum((mb["labels"][:, 1:] != IGNORE_INDEX).sum() for mb in step_batch)
        k = max(1, round(self.select_fraction * scores.shape[0]))
        selected = select_hardest(step_batch, scores, k)
        # the candidates' mean token loss (over all ranks, as train/loss) is the unbiased training
        # loss; the selected rows' is not
        total = global_sum(self, torch.stack([scores.sum(), torch.as_tensor(n_tokens, device=scores.device).float()]))
        out = {"train/candidate_loss": total[0] / total[1].clamp(min=1),
               "train/selected_rows": global_sum(self, float(k))}
        drawn, chosen = global_counts(self, type_counts(step_batch)), global_counts(self, type_counts(selected))
        # every family seen so far, 0 where this step has none: Lightning would log a family's last
        # value again in a step that does not log it
        self._type_labels.update(drawn)
        out.update({f"train/candidates/{t}": float(drawn.get(t, 0)) for t in sorted(self._type_labels)})
        out.update({f"train/selected/{t}": float(chosen.get(t, 0)) for t in sorted(self._type_labels)})
        return selected, out

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
