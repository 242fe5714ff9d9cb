"""LightningDataModules for the SFT stage (and the prompt sets other stages generate from).

Batches are *optimizer steps*: the train loader yields a list of micro-batches that together form
one global batch (this rank's share of it). The module then normalizes the loss by the number of
target tokens across the whole step, on all ranks, which gradient accumulation by Lightning's
``accumulate_grad_batches`` cannot do (it averages per micro-batch means).

Length bucketing: each epoch shuffles the rows, cuts them into pools of ``bucket_batches`` global
batches, sorts a pool by length and cuts it into global batches; the batches are then shuffled.
Padding waste stays low and every rank sees batches of similar cost. Everything is seeded, so a
resumed run (same seed, same epoch) sees the same batches.

Curriculum (``curriculum.by``, off by default): the first ``curriculum.steps`` global steps draw
their batches from the easiest examples instead (``tsm.data.curriculum``); later steps follow the
epoch plan above.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tsm.data.curriculum import Curriculum
from tsm.data.sft import IGNORE_INDEX, SFT_TARGETS, SFTExample, encode_prompt, iter_examples
from tsm.io import read_rows


def collate(examples: Sequence[SFTExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pads a micro-batch; padded positions get attention 0 and label IGNORE_INDEX."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    for b, e in enumerate(examples):
        n = len(e.input_ids)
        ids[b, :n] = torch.tensor(e.input_ids)
        labels[b, :n] = torch.tensor(e.labels)
        attn[b, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": attn}


class _EpochTail(Sampler[int]):
    """The indices of an epoch's remaining steps, with the whole epoch as its length (see StepLoader)."""

    def __init__(self, remaining: int, skipped: int):
        self.remaining, self.skipped = remaining, skipped

    def __iter__(self):
        return iter(range(self.remaining))

    def __len__(self) -> int:
        return self.remaining + self.skipped


class StepLoader(DataLoader):
    """The loader of one epoch of step batches, starting where a resumed run stopped.

    Lightning restores the position inside the epoch itself (its batch progress), so the loader
    must report the whole epoch's ``n`` steps while yielding only the ``n - p`` not yet taken: a
    loader of length ``n - p`` made Lightning end the resumed epoch after ``n - 2p`` steps, and the
    next epoch started early. The position comes from the trainer's global step, so there is no
    state to save; ``state_dict``/``load_state_dict`` mark the loader resumable for Lightning.
    """

    def __init__(self, dataset: Dataset, skipped: int, num_workers: int = 0, **kwargs: Any):
        super().__init__(dataset, batch_size=None, sampler=_EpochTail(len(dataset), skipped),
                         num_workers=num_workers, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore: ``train_dataloader`` already started at the trainer's global step."""


def epoch_order(n_items: int, seed: int, epoch: int) -> tuple[list[int], random.Random]:
    """The seeded shuffle of an epoch (``(seed, epoch)`` alone decide it) and the generator after it,
    for any further seeded choice of the same epoch; SFT step batches and RL prompt batches share it."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(n_items))
    rng.shuffle(order)
    return order, rng


def resume_position(trainer: Any, steps_per_epoch: int, optimizer_steps_per_batch: int = 1) -> tuple[int, int, int, int]:
    """(rank, world size, epoch, first step of the epoch still to take) for a step-batch loader.

    The trainer's global step counts optimizer steps (``optimizer_steps_per_batch`` per batch, e.g.
    GRPO's ppo_epochs); a run resumed mid-epoch starts at the batch it stopped at.
    """
    if trainer is None:
        return 0, 1, 0, 0
    epoch = trainer.current_epoch
    done = trainer.global_step // optimizer_steps_per_batch
    start = min(max(0, done - epoch * steps_per_epoch), max(0, steps_per_epoch - 1))
    return trainer.global_rank, trainer.world_size, epoch, start


@dataclass
class StepBatches(Dataset):
    """One item per optimizer step: this rank's micro-batches of one global batch."""

    examples: list[SFTExample]
    batch_size: int
    micro_batch_size: int
    pad_id: int
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    bucket_batches: int = 16
    start_step: int = 0  # resume mid-epoch: skip the steps already taken
    curriculum: Curriculum | None = None
    ranking: Sequence[int] | None = None  # example indices, easiest first (curriculum.rank)

    def __post_init__(self) -> None:
        if self.batch_size % (self.micro_batch_size * self.world_size):
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size}) x devices ({self.world_size})"
            )
        if len(self.examples) < self.batch_size:
            raise ValueError(f"{len(self.examples)} training examples < batch_size {self.batch_size}")
        if self.curriculum is not None and self.curriculum.active and (
            self.ranking is None or sorted(self.ranking) != list(range(len(self.examples)))
        ):
            raise ValueError("a curriculum needs a ranking: a permutation of the example indices")
        self._plan = self._make_plan()
        if not 0 <= self.start_step < len(self._plan):
            raise ValueError(f"start_step {self.start_step} outside the epoch's {len(self._plan)} steps")

    def _make_plan(self) -> list[list[int]]:
        order, rng = epoch_order(len(self.examples), self.seed, self.epoch)
        n_batches = len(order) // self.batch_size  # drop the ragged tail: every step is full
        order = order[: n_batches * self.batch_size]
        pool = self.batch_size * self.bucket_batches
        by_length = lambda i: len(self.examples[i].input_ids)
        batches: list[list[int]] = []
        for s in range(0, len(order), pool):
            chunk = sorted(order[s : s + pool], key=by_length)
            batches += [chunk[j : j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        cur = self.curriculum
        if cur is not None and cur.active:  # global step g = epoch * steps-per-epoch + s
            for s in range(len(batches)):
                g = self.epoch * len(batches) + s
                if g >= cur.steps:
                    break
                drawn = cur.batch(self.ranking, g, self.batch_size, self.seed)
                batches[s] = sorted(drawn, key=by_length)
        return batches

    def __len__(self) -> int:
        return len(self._plan) - self.start_step

    def __getitem__(self, step: int) -> list[dict[str, torch.Tensor]]:
        mine = self._plan[self.start_step + step][self.rank :: self.world_size]  # sorted batch: ranks get similar lengths
        mbs = self.micro_batch_size
        return [collate([self.examples[i] for i in mine[s : s + mbs]], self.pad_id) for s in range(0, len(mine), mbs)]


class SFTDataModule(L.LightningDataModule):
    """Builds the dataset on demand, tokenizes with the model's chat template, batches by length.

    Validation: the first ``n_val`` rows of the test split give ``val/loss``; the first
    ``n_val_generate`` of those are the fixed prompts for the generation-based ``val/accuracy@1``.
    """

    def __init__(
        self,
        dataset: Any,  # tsm.data.build.DatasetSpec
        sft_target: str = "answer",
        batch_size: int = 32,
        micro_batch_size: int = 8,
        max_length: int = 512,
        n_val: int = 64,
        n_val_generate: int = 32,
        responses_path: str | None = None,
        num_workers: int = 0,
        seed: int = 0,
        curriculum: dict[str, Any] | Curriculum | None = None,
    ):
        super().__init__()
        if sft_target not in SFT_TARGETS:
            raise ValueError(f"sft_target must be one of {SFT_TARGETS}, got {sft_target!r}")
        if sft_target == "responses" and not responses_path:
            raise ValueError("sft_target=responses needs data_module.responses_path=<responses parquet>")
        if n_val_generate > n_val:
            raise ValueError(f"n_val_generate ({n_val_generate}) must be <= n_val ({n_val})")
        self.dataset = dataset
        self.sft_target, self.responses_path = sft_target, responses_path
        self.batch_size, self.micro_batch_size = batch_size, micro_batch_size
        self.max_length, self.n_val, self.n_val_generate = max_length, n_val, n_val_generate
        self.num_workers, self.seed = num_workers, seed
        if curriculum is None or isinstance(curriculum, Curriculum):
            self.curriculum = curriculum or Curriculum()
        else:
            self.curriculum = Curriculum(**dict(curriculum))
        self.ranking: list[int] | None = None
        self.tokenizer = None
        self.files = None

    def set_tokenizer(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def prepare_data(self) -> None:  # rank 0 only: build (or reuse) the parquet files
        from tsm.data.build import build_dataset

        build_dataset(self.dataset)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            raise RuntimeError("SFTDataModule.set_tokenizer(tokenizer) must be called before setup")
        if self.files is not None:
            return
        from tsm.data.build import build_dataset

        self.files = build_dataset(self.dataset)  # other ranks: reuses what rank 0 built
        train_rows = read_rows(self.responses_path or self.files.train)
        test_rows = read_rows(self.files.test)
        pairs = list(iter_examples(self.tokenizer, train_rows, self.sft_target, self.max_length))
        self.train_examples = [ex for _, ex in pairs]
        if self.curriculum.active:
            types = [(train_rows[i].get("extra_info") or {}).get("function_type") for i, _ in pairs]
            lengths = [ex.n_target_tokens for ex in self.train_examples]
            self.ranking = self.curriculum.rank(lengths, types, self.seed)
        self.val_rows = test_rows[: self.n_val]
        # the val loss uses answer/steps targets (responses mode has none for test rows)
        val_mode = "answer" if self.sft_target == "responses" else self.sft_target
        self.val_examples = [ex for _, ex in iter_examples(self.tokenizer, self.val_rows, val_mode, self.max_length)]
        gen_rows = self.val_rows[: self.n_val_generate]
        self.val_generate = {
            "prompt_ids": [encode_prompt(self.tokenizer, r["prompt"]) for r in gen_rows],
            "ground_truths": [r["reward_model"]["ground_truth"] for r in gen_rows],
        }
        if not train_rows:
            raise ValueError("the train split is empty (data=ood is test-only); train on a generated "
                             "dataset or use sft_target=responses with a responses parquet")
        if not self.train_examples:
            raise ValueError(f"no training example fits max_length={self.max_length}")

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        """Called every epoch (``reload_dataloaders_every_n_epochs=1``) with the epoch's own order.

        After a resume from a mid-epoch checkpoint, the steps of the epoch already taken are skipped,
        so a resumed run sees exactly the batches an uninterrupted one would.
        """
        rank, world, epoch, start = resume_position(self.trainer, len(self.train_examples) // self.batch_size)
        ds = StepBatches(
            self.train_examples, self.batch_size, self.micro_batch_size, self.pad_id,
            seed=self.seed, epoch=epoch, rank=rank, world_size=world, start_step=start,
            curriculum=self.curriculum, ranking=self.ranking,
        )
        return StepLoader(ds, start, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        mine = self.val_examples[rank::world]
        return DataLoader(
            mine, batch_size=self.micro_batch_size, shuffle=False,
            collate_fn=lambda exs: collate(exs, self.pad_id), num_workers=self.num_workers,
        )
