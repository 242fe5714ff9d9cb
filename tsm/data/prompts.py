"""Prompt batches for the RL stage: each item is one rollout step's prompts (this rank's share).

An item is a :class:`StepPrompts`: the step's prompts, plus ``draw(n)``, more prompts for the same
step in a fixed order (the refill of dynamic sampling, ``tsm.algorithms.dynamic_sampling``).

Two sources: :class:`PromptDataModule` (a built train split) and :class:`FreshPromptDataModule`
(fresh functions every step, like the SFT stream; the registered test splits excluded).

For the built split, each epoch shuffles the training rows with ``(seed, epoch)`` and cuts them into global batches of
``batch_size`` prompts (ragged tail dropped); rank r takes every world-th prompt of a batch. A run
resumed from a mid-epoch ``.ckpt`` starts at the step it stopped at, so it sees the prompts an
uninterrupted run would (sampling itself is seeded by the global step, see ``GRPOModule``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, IterableDataset

from tsm.data.datamodule import StepLoader, epoch_order, resume_position
from tsm.data.sft import encode_prompt
from tsm.io import read_rows


def _as_is(item):
    return item


@dataclass  # not frozen: Lightning walks batches with apply_to_collection
class Prompt:
    token_ids: list[int]
    ground_truth: str
    row: dict[str, Any] | None = None  # the dataset row it came from (fresh draws: a row in the builder's layout)


class StepPrompts:
    """One rollout step's prompts (this rank's share) and ``draw(n)``: n more for the same step.

    A plain class, not a dataclass or list: Lightning passes it to ``training_step`` untouched.
    ``draw`` is deterministic in (seed, step, rank) and never repeats a prompt within the step.
    """

    __slots__ = ("draw", "prompts", "step")

    def __init__(self, step: int, prompts: list[Prompt], draw: Callable[[int], list[Prompt]] | None = None):
        self.step, self.prompts, self.draw = step, list(prompts), draw

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    def __getitem__(self, i: int) -> Prompt:
        return self.prompts[i]


class _RandomDraw:
    """Refill from a built split: random train prompts not yet used in this step."""

    def __init__(self, prompts: list[Prompt], used: list[int], seed: int):
        self.prompts, self.used, self.seed = prompts, set(used), seed
        self.order: list[int] | None = None  # shuffled on the first draw only (most steps never refill)

    def __call__(self, n: int) -> list[Prompt]:
        if self.order is None:
            self.order = [i for i in range(len(self.prompts)) if i not in self.used]
            random.Random(self.seed).shuffle(self.order)
        take, self.order = self.order[:n], self.order[n:]
        return [self.prompts[i] for i in take]


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
        order, _ = epoch_order(len(self.prompts), self.seed, self.epoch)
        n = len(order) // self.batch_size
        self._plan = [order[s * self.batch_size : (s + 1) * self.batch_size] for s in range(n)]
        if not 0 <= self.start_step < len(self._plan):
            raise ValueError(f"start_step {self.start_step} outside the epoch's {len(self._plan)} steps")

    def __len__(self) -> int:
        return len(self._plan) - self.start_step

    def __getitem__(self, step: int) -> StepPrompts:
        s = self.start_step + step
        mine = self._plan[s][self.rank :: self.world_size]
        global_step = self.epoch * len(self._plan) + s
        seed = (self.seed * 1_000_003 + global_step) * 1009 + self.rank
        return StepPrompts(global_step, [self.prompts[i] for i in mine], _RandomDraw(self.prompts, mine, seed))


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
        # global_step counts optimizer steps; one prompt batch may take several (ppo_epochs)
        module = trainer.lightning_module if trainer is not None else None
        per_batch = getattr(module, "optimizer_steps_per_batch", 1)
        rank, world, epoch, start = resume_position(trainer, len(self.train_prompts) // self.batch_size, per_batch)
        ds = PromptBatches(self.train_prompts, self.batch_size, seed=self.seed, epoch=epoch, rank=rank,
                           world_size=world, start_step=start)
        # an item already is a step's list of prompts; the loader's length is the whole epoch
        return StepLoader(ds, start, self.num_workers, collate_fn=_as_is)


class _FreshDraw:
    """Fresh functions for one (step, rank): candidates ``base + j`` of the stream's seed, in order,
    skipping rejected ones, excluded test functions, repeats within the step and over-long prompts."""

    def __init__(self, source: FreshPromptDataModule, step: int, rank: int, world: int):
        from tsm.data.stream import SPACE, usable_candidates

        self.source, self.step, self.seen = source, step, set()
        self._candidates = usable_candidates(source.task_args(step), (step * world + rank) * SPACE,
                                             source.excluded(), self.seen, what=f"step {step}, rank {rank}")

    def __call__(self, n: int) -> list[Prompt]:
        from tsm.data.build import dataset_row

        out: list[Prompt] = []
        while len(out) < n:
            j, value, digest = next(self._candidates)
            ids = encode_prompt(self.source.tokenizer, value["messages"])
            if len(ids) > self.source.max_prompt_length:
                continue
            self.seen.add(digest)
            out.append(Prompt(ids, value["ground_truth"], dataset_row(value, f"fresh-{self.step}", j)))
        return out


class _FreshSteps(IterableDataset):
    def __init__(self, source: FreshPromptDataModule, start_step: int, per_rank: int, rank: int, world: int):
        self.source, self.start_step, self.per_rank, self.rank, self.world = source, start_step, per_rank, rank, world

    def __iter__(self) -> Iterator[StepPrompts]:
        step = self.start_step
        while True:
            draw = _FreshDraw(self.source, step, self.rank, self.world)
            yield StepPrompts(step, draw(self.per_rank), draw)
            step += 1


class FreshPromptDataModule(PromptDataModule):
    """RL prompts from fresh functions every step (``grpo.data_module._target_`` = this class).

    Step ``s`` on rank ``r`` of ``W`` draws candidates ``(s * W + r) * SPACE + j`` of the stream
    ``stream.seed`` (the generator of ``tsm.data.stream``, with ``dataset``'s knobs and
    ``stream.simplicity``/``schedule``), so what a step sees depends only on (config, seed, step,
    rank): a resumed run sees what an uninterrupted one would. Every function of ``dataset``'s test
    split and of ``stream.exclude``'s sets is skipped (the builder's sympy-form rule); functions do
    not repeat within a step, and across steps only by chance. Validation prompts are ``dataset``'s
    test rows, as in :class:`PromptDataModule`.
    """

    def __init__(self, dataset: Any, stream: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        from tsm.data.stream import stream_config

        self.stream_cfg = stream_config(stream, self.dataset)
        self._excluded: frozenset[str] | None = None

    def excluded(self) -> frozenset[str]:
        if self._excluded is None:
            from tsm.data.stream import stream_excluded

            self._excluded = stream_excluded(self.dataset, self.stream_cfg)
        return self._excluded

    def task_args(self, step: int) -> tuple:
        from tsm.data.stream import stream_task_args

        return stream_task_args(self.dataset, self.stream_cfg, step)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.excluded()

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        step = trainer.global_step if trainer is not None else 0
        module = trainer.lightning_module if trainer is not None else None
        per_batch = getattr(module, "optimizer_steps_per_batch", 1)
        if self.batch_size % world:
            raise ValueError(f"prompts per step ({self.batch_size}) must be a multiple of devices ({world})")
        ds = _FreshSteps(self, step // per_batch, self.batch_size // world, rank, world)
        return DataLoader(ds, batch_size=None, num_workers=0, collate_fn=_as_is)
