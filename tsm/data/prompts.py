"""Prompt batches for the RL stage: each item is one optimizer step's prompts (this rank's share).

Each epoch shuffles the training rows with ``(seed, epoch)`` and cuts them into global batches of
``batch_size`` prompts (ragged tail dropped); rank r takes every world-th prompt of a batch. A run
resumed from a mid-epoch ``.ckpt`` starts at the step it stopped at, so it sees the prompts an
uninterrupted run would (sampling itself is seeded by the global step, see ``GRPOModule``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from tsm.data.datamodule import StepLoader
from tsm.data.sft import encode_prompt
from tsm.io import read_rows


def _as_is(item):
    return item


@dataclass  # not frozen: Lightning walks batches with apply_to_collection
class Prompt:
    token_ids: list[int]
    ground_truth: str


@dataclass
class PromptBatches(Dataset):
    prompts: list[Prompt]
    batch_size: int
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    start_step: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < self.world_size or self.batch_size % self.world_size:
            raise ValueError(f"prompts per step ({self.batch_size}) must be a multiple of devices ({self.world_size})")
        if len(self.prompts) < self.batch_size:
            raise ValueError(f"{len(self.prompts)} training prompts < prompts per step {self.batch_size}")
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.prompts)))
        rng.shuffle(order)
        n = len(order) // self.batch_size
        self._plan = [order[s * self.batch_size : (s + 1) * self.batch_size] for s in range(n)]
        if not 0 <= self.start_step < len(self._plan):
            raise ValueError(f"start_step {self.start_step} outside the epoch's {len(self._plan)} steps")

    def __len__(self) -> int:
        return len(self._plan) - self.start_step

    def __getitem__(self, step: int) -> list[Prompt]:
        return [self.prompts[i] for i in self._plan[self.start_step + step][self.rank :: self.world_size]]


class PromptDataModule(L.LightningDataModule):
    """Training prompts (chat-templated token ids + gold answers) and fixed validation prompts.

    ``val_generate``: the first ``n_val_generate`` test rows, for the greedy ``val/accuracy@1``.
    """

    def __init__(self, dataset: Any, batch_size: int = 8, n_val_generate: int = 32,
                 max_prompt_length: int = 512, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size (prompts per step) must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.n_val_generate = dataset, batch_size, n_val_generate
        self.max_prompt_length, self.num_workers, self.seed = max_prompt_length, num_workers, seed
        self.tokenizer = None
        self.files = None

    def set_tokenizer(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def prepare_data(self) -> None:
        from tsm.data.build import build_dataset

        build_dataset(self.dataset)

    def _prompts(self, rows: list[dict[str, Any]]) -> list[Prompt]:
        out = []
        for r in rows:
            ids = encode_prompt(self.tokenizer, r["prompt"])
            if len(ids) <= self.max_prompt_length:
                out.append(Prompt(ids, r["reward_model"]["ground_truth"]))
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            raise RuntimeError("PromptDataModule.set_tokenizer(tokenizer) must be called before setup")
        if self.files is not None:
            return
        from tsm.data.build import build_dataset

        self.files = build_dataset(self.dataset)
        self.train_prompts = self._prompts(read_rows(self.files.train))
        if not self.train_prompts:
            raise ValueError(f"no training prompt fits max_prompt_length={self.max_prompt_length}")
        val = self._prompts(read_rows(self.files.test)[: self.n_val_generate])
        self.val_generate = {"prompt_ids": [p.token_ids for p in val], "ground_truths": [p.ground_truth for p in val]}

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        epoch = trainer.current_epoch if trainer is not None else 0
        step = trainer.global_step if trainer is not None else 0
        # global_step counts optimizer steps; one prompt batch may take several (ppo_epochs)
        module = trainer.lightning_module if trainer is not None else None
        per_batch = getattr(module, "optimizer_steps_per_batch", 1)
        n = len(self.train_prompts) // self.batch_size
        start = min(max(0, step // per_batch - epoch * n), max(0, n - 1))
        ds = PromptBatches(self.train_prompts, self.batch_size, seed=self.seed, epoch=epoch, rank=rank,
                           world_size=world, start_step=start)
        # an item already is a step's list of prompts; the loader's length is the whole epoch
        return StepLoader(ds, start, self.num_workers, collate_fn=_as_is)
