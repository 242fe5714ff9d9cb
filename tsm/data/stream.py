"""Fresh functions every step: an SFT training stream that never repeats a function.

Instead of passes over a built train split, each optimizer step draws new functions from the
generator (:func:`tsm.data.build.generate_candidate`):

* **Determinism.** Step ``s`` looks at candidates ``s * SPACE + j`` (``j = 0, 1, ...``) of the
  stream's seed, in order, and keeps the first valid ones whose function is in no excluded test
  set and was not already kept by an earlier step; so what a step trains on is a function of
  (config, seed, step) alone, whatever the number of DataLoader workers, and a resumed run sees the
  batches an uninterrupted one would. Workers generate steps round-robin (worker ``w`` of ``W``
  takes steps ``start + w, start + w + W, ...``; the DataLoader hands them back in step order),
  each keeping ``ceil(batch_size * oversample)`` candidates; the main process then drops the ones
  an earlier step already used (the cross-step dedup: a set of 64-bit digests of the canonical
  key, saved in the checkpoint through the data module's ``state_dict``) and, in the rare case
  that too few are left, continues the step's own candidate sequence inline.
* **Exclusion.** Every function of the registered test splits (``data``'s own test split and
  each entry of ``stream.exclude``: data configs or parquet paths, as ``data.exclude``) is
  skipped, by the same sympy-form rule as the dataset builder.
* **Ranks.** Every rank computes the whole global batch (the dedup needs every key) and trains
  on its slice ``[rank::world_size]`` of the batch sorted by length, so ranks see disjoint rows
  of similar cost.
* **Mixture.** ``simplicity`` (share of templates) may follow a schedule: ``schedule`` is a list
  of ``[step, simplicity]`` points, linearly interpolated, constant outside (rounded to 0.01).
  ``task_options`` overrides the data config's sampler knobs for the training stream only (e.g. a
  ``variant_share``): the test split, validation rows and exclusions stay the data config's, so a
  run's before/after figure is on the same rows as every other run's on that data config.

The stream has no epochs (the DataLoader has no length); training stops at ``max_steps``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import os
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tsm.data.build import DatasetSpec, excluded_functions, generate_candidate, task_args
from tsm.data.datamodule import SFTDataModule, collate
from tsm.data.sft import SFTExample, encode_example

SPACE = 1 << 24  # candidate indices reserved per step


STREAM_TARGETS = ("answer", "steps")


def key_digest(key: str) -> int:
    """A 63-bit integer digest of a function's canonical key (what the cross-step dedup stores)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1


@dataclass
class StreamConfig:
    """Knobs of the fresh-function stream (``sft.data_module.stream``)."""

    seed: int = 1000  # the stream's own seed (a build with the same seed draws the same candidates)
    simplicity: float | None = None  # null: data.simplicity
    schedule: list = field(default_factory=list)  # [[step, simplicity], ...], linear in between
    workers: int = 1  # DataLoader worker processes generating steps (0: inline)
    prefetch_steps: int = 4  # steps each worker keeps ready
    oversample: float = 1.25  # candidates kept per step, as a multiple of batch_size (cross-step dedup)
    exclude: list = field(default_factory=list)  # registered test sets: data configs or parquet paths
    task_options: dict = field(default_factory=dict)  # sampler knobs over data.task_options, training only

    def __post_init__(self) -> None:
        def fail(knob: str, why: str) -> None:
            raise ValueError(f"stream.{knob}={getattr(self, knob)!r}: {why}")

        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            fail("seed", "must be a non-negative integer")
        if self.simplicity is not None and not 0.0 <= float(self.simplicity) <= 1.0:
            fail("simplicity", "must be a probability in [0, 1] or null")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            fail("workers", "must be an integer >= 0")
        if not isinstance(self.prefetch_steps, int) or self.prefetch_steps < 1:
            fail("prefetch_steps", "must be an integer >= 1")
        if not float(self.oversample) >= 1.0:
            fail("oversample", "must be >= 1")
        points = [tuple(p) for p in (self.schedule or [])]
        for p in points:
            if len(p) != 2 or int(p[0]) < 0 or not 0.0 <= float(p[1]) <= 1.0:
                fail("schedule", "entries must be [step >= 0, simplicity in [0, 1]]")
        if [p[0] for p in points] != sorted(p[0] for p in points):
            fail("schedule", "steps must increase")
        self.schedule = [(int(a), float(b)) for a, b in points]
        self.exclude = list(self.exclude or [])
        if not isinstance(self.task_options or {}, Mapping):
            fail("task_options", "must be a mapping of the task sampler's knobs")
        self.task_options = dict(self.task_options or {})

    def training_spec(self, spec: DatasetSpec) -> DatasetSpec:
        """``spec`` with ``task_options`` laid over its own (validated by the task's sampler: a bad
        knob is one ``ValueError`` line before any generation)."""
        if not self.task_options:
            return spec
        return dataclasses.replace(spec, task_options={**spec.task_options, **self.task_options})

    def simplicity_at(self, step: int, default: float) -> float:
        base = default if self.simplicity is None else float(self.simplicity)
        pts = self.schedule
        if not pts:
            return base
        if step <= pts[0][0]:
            value = pts[0][1]
        elif step >= pts[-1][0]:
            value = pts[-1][1]
        else:
            for (s0, v0), (s1, v1) in itertools.pairwise(pts):
                if s0 <= step <= s1:
                    value = v0 + (v1 - v0) * (step - s0) / max(1, s1 - s0)
                    break
        return round(value, 2)


@dataclass(frozen=True)
class Candidate:
    digest: int
    example: SFTExample
    function_type: str
    function_sympy: str  # the function (plain sympy form), what the exclusion rule compares
    kind: str | None = None  # a finer family label (a course or variant kind), where the task has one

    @property
    def label(self) -> str:
        """``function_type``, or ``function_type/kind`` (e.g. ``variant/sum``): what selection logs count."""
        return f"{self.function_type}/{self.kind}" if self.kind else self.function_type


def stream_config(stream: Mapping[str, Any] | StreamConfig | None, dataset: Any) -> StreamConfig:
    """A data module's ``stream`` (a Hydra mapping or a :class:`StreamConfig`), with its
    ``task_options`` checked against the dataset's sampler now: a bad knob is one line before any
    generation (both the SFT stream and the RL prompt stream build theirs here)."""
    cfg = stream if isinstance(stream, StreamConfig) else StreamConfig(**dict(stream or {}))
    if isinstance(dataset, DatasetSpec):
        cfg.training_spec(dataset)
    return cfg


def _as_exclude_entry(entry: Any) -> Any:
    if isinstance(entry, DatasetSpec):
        return dataclasses.asdict(entry)
    if isinstance(entry, Mapping):
        return {str(k): v for k, v in entry.items()}
    return str(entry)


def stream_task_args(spec: DatasetSpec, cfg: StreamConfig, step: int) -> tuple:
    """The generator's arguments for ``step`` of a stream: ``spec``'s knobs, the stream's seed and
    its simplicity at that step (what ``generate_candidate`` takes; SFT and RL streams share it)."""
    return task_args(cfg.training_spec(spec), simplicity=cfg.simplicity_at(step, spec.simplicity), seed=cfg.seed)


def stream_excluded(spec: DatasetSpec, cfg: StreamConfig) -> frozenset[str]:
    """Sympy forms of every function of ``spec``'s test split, of ``spec.exclude`` and of
    ``cfg.exclude``: what a stream over ``spec`` must never draw."""
    full = dataclasses.replace(spec, exclude=[
        _as_exclude_entry(spec), *spec.exclude, *(_as_exclude_entry(e) for e in cfg.exclude)])
    return frozenset(excluded_functions(full))


def usable_candidates(args: tuple, base: int, excluded: AbstractSet[str], seen: AbstractSet[int],
                      start: int = 0, what: str = "stream") -> Iterator[tuple[int, dict[str, Any], int]]:
    """``(j, fields, digest)`` for candidates ``base + j``, ``j = start, start + 1, ...`` that were
    generated, are in no ``excluded`` set and whose digest is not in ``seen`` (read at each candidate,
    so what the caller accepts and adds is skipped from then on); the SFT stream and the RL prompt
    draws share this rule. Raises when the ``SPACE`` candidates reserved for ``what`` are spent."""
    for j in range(start, SPACE):
        status, value = generate_candidate((args, base + j))
        if status != "ok" or value["function_sympy"] in excluded:
            continue
        digest = key_digest(value["key"])
        if digest not in seen:
            yield j, value, digest
    raise RuntimeError(f"{what}: its {SPACE} candidates gave too few usable functions")


class StepGenerator:
    """The pure part: step ``s`` -> its candidates, in candidate-index order."""

    def __init__(self, spec: DatasetSpec, cfg: StreamConfig, tokenizer, max_length: int,
                 excluded: frozenset[str], keep: int, target: str = "answer"):
        self.spec, self.cfg, self.tokenizer = spec, cfg, tokenizer
        self.max_length, self.excluded, self.keep = max_length, excluded, keep
        self.target = target

    def target_text(self, value: dict[str, Any]) -> str:
        """The assistant text of a candidate: the boxed answer, or (``steps``) the task's short
        derivation ending in it, built from the candidate's fields as from a dataset row."""
        from tsm.data.sft import answer_only

        if self.target == "answer":
            return answer_only(value["answer"])
        from tsm.tasks import get_task

        row = {"data_source": f"tsm/{value['task']}", "extra_info": value}
        return get_task(value["task"]).steps(row)

    def task_args(self, step: int) -> tuple:
        return stream_task_args(self.spec, self.cfg, step)

    def candidates(self, step: int, start: int = 0, skip: set[int] | frozenset[int] = frozenset(),
                   n: int | None = None) -> tuple[list[Candidate], int]:
        """Up to ``n`` (default ``keep``) usable candidates of ``step`` from index ``start`` on,
        none in ``skip`` nor repeated; returns them and the next unread index."""
        want = self.keep if n is None else n
        out: list[Candidate] = []
        seen = set(skip)
        j = start
        for j, value, digest in usable_candidates(self.task_args(step), step * SPACE, self.excluded, seen, start,
                                                  f"step {step}"):
            example = encode_example(self.tokenizer, value["messages"], self.target_text(value))
            if len(example.input_ids) > self.max_length:
                continue
            seen.add(digest)
            out.append(Candidate(digest, example, value["function_type"], value["function_sympy"], value.get("kind")))
            if len(out) == want:
                break
        return out, (j + 1 if out else start)


ROW_TYPES = "function_type"  # a stream micro-batch's key: each row's family label (a list of str)


def typed_collate(cands: list[Candidate], pad_id: int) -> dict[str, Any]:
    """:func:`collate` of the candidates' examples, plus each row's family label
    (:attr:`Candidate.label`) under ``ROW_TYPES``: what selective backprop counts by type; the loss
    never reads it."""
    mb: dict[str, Any] = collate([c.example for c in cands], pad_id)
    mb[ROW_TYPES] = [c.label for c in cands]
    return mb


class _StepCandidates(IterableDataset):
    """Runs in DataLoader workers: yields (step, candidates, next index) round-robin by step."""

    def __init__(self, generator: StepGenerator, start_step: int):
        self.generator, self.start_step = generator, start_step

    def __iter__(self) -> Iterator[tuple[int, list[Candidate], int]]:
        info = get_worker_info()
        w, n = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.start_step + w
        while True:
            cands, nxt = self.generator.candidates(step)
            yield step, cands, nxt
            step += n


class FreshStream(IterableDataset):
    """Main process: the cross-step dedup, the rank's slice, micro-batch collation.

    ``seen`` (digests of every function used so far) and ``used`` (step -> its digests, for the
    checkpoint) belong to the data module, so a checkpoint saves exactly the steps trained on.
    """

    def __init__(self, generator: StepGenerator, batch_size: int, micro_batch_size: int, pad_id: int,
                 start_step: int, seen: set[int], used: dict[int, list[int]], workers: int,
                 prefetch_steps: int, rank: int = 0, world_size: int = 1):
        if batch_size % (micro_batch_size * world_size):
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of micro_batch_size "
                             f"({micro_batch_size}) x devices ({world_size})")
        self.generator, self.batch_size, self.micro_batch_size = generator, batch_size, micro_batch_size
        self.pad_id, self.start_step, self.seen, self.used = pad_id, start_step, seen, used
        self.workers, self.prefetch_steps = workers, prefetch_steps
        self.rank, self.world_size = rank, world_size

    def steps(self) -> Iterator[tuple[int, list[Candidate]]]:
        """(step, the global batch's candidates) in step order, after the cross-step dedup."""
        inner = _StepCandidates(self.generator, self.start_step)
        kwargs: dict[str, Any] = {}
        if self.workers > 0:
            kwargs = {"prefetch_factor": self.prefetch_steps, "persistent_workers": False}
        loader = DataLoader(inner, batch_size=None, num_workers=self.workers,
                            collate_fn=lambda x: x, **kwargs)
        for step, cands, nxt in loader:
            fresh = [c for c in cands if c.digest not in self.seen]
            if len(fresh) < self.batch_size:  # rare: continue the step's own candidate sequence
                more, _ = self.generator.candidates(
                    step, start=nxt, skip=self.seen | {c.digest for c in fresh},
                    n=self.batch_size - len(fresh))
                fresh += more
            batch = fresh[: self.batch_size]
            digests = [c.digest for c in batch]
            self.seen.update(digests)
            self.used[step] = digests
            yield step, batch

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        mbs = self.micro_batch_size
        for _, batch in self.steps():
            ordered = sorted(batch, key=lambda c: len(c.example.input_ids))
            mine = ordered[self.rank :: self.world_size]
            yield [typed_collate(mine[i : i + mbs], self.pad_id) for i in range(0, len(mine), mbs)]


class StreamingSFTDataModule(SFTDataModule):
    """``SFTDataModule`` whose training batches come from :class:`FreshStream`.

    ``dataset`` (``data``) gives the generation knobs (max_length, max_depth, variations, ...), the
    validation rows (its test split) and, with ``stream.exclude``, the test sets kept out.
    ``sft_target`` ``answer`` or ``steps`` (the task's derivations, built per fresh function).
    """

    def __init__(self, dataset: Any, stream: Mapping[str, Any] | StreamConfig | None = None, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        if self.sft_target not in STREAM_TARGETS:
            raise ValueError(f"the fresh-function stream trains sft_target {' or '.join(STREAM_TARGETS)}, "
                             f"not {self.sft_target!r} (a stream has no sampled responses)")
        if self.sft_target == "steps" and isinstance(self.dataset, DatasetSpec):
            from tsm.tasks import get_task

            if get_task(self.dataset.task).steps is None:
                raise ValueError(f"sft_target=steps: task {self.dataset.task!r} has no step-by-step targets "
                                 "(use sft_target=answer)")
        if self.curriculum.active:
            raise ValueError("curriculum and the fresh-function stream do not combine; use stream.schedule")
        self.stream_cfg = stream_config(stream, self.dataset)
        self.seen: set[int] = set()
        self.used: dict[int, list[int]] = {}
        self._excluded: frozenset[str] | None = None
        self.last_stream: FreshStream | None = None

    def excluded(self) -> frozenset[str]:
        """Sympy forms of every function of ``data``'s test split and of ``stream.exclude``'s sets."""
        if self._excluded is None:
            self._excluded = stream_excluded(self.dataset, self.stream_cfg)
        return self._excluded

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        self.excluded()

    def generator(self) -> StepGenerator:
        keep = math.ceil(self.batch_size * float(self.stream_cfg.oversample))
        return StepGenerator(self.dataset, self.stream_cfg, self.tokenizer, self.max_length, self.excluded(), keep,
                             self.sft_target)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        step = self.trainer.global_step if self.trainer is not None else 0
        # what steps >= `step` added (a prefetched step that was never trained on) is forgotten
        for s in [s for s in self.used if s >= step]:
            self.seen.difference_update(self.used.pop(s))
        self.last_stream = FreshStream(
            self.generator(), self.batch_size, self.micro_batch_size, self.pad_id, step, self.seen,
            self.used, self.stream_cfg.workers, self.stream_cfg.prefetch_steps, rank, world)
        return DataLoader(self.last_stream, batch_size=None, num_workers=0)

    def state_dict(self) -> dict[str, Any]:
        """The digests of the steps already trained on (the trainer's global step counts them)."""
        done = self.trainer.global_step if self.trainer is not None else len(self.used)
        steps = sorted(s for s in self.used if s < done)
        return {"stream_steps": torch.tensor(steps, dtype=torch.int64),
                "stream_counts": torch.tensor([len(self.used[s]) for s in steps], dtype=torch.int64),
                "stream_digests": torch.tensor([d for s in steps for d in self.used[s]], dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        steps = [int(s) for s in state.get("stream_steps", [])]
        counts = [int(c) for c in state.get("stream_counts", [])]
        flat = [int(d) for d in state.get("stream_digests", [])]
        if len(steps) != len(counts) or sum(counts) != len(flat):
            raise ValueError("the checkpoint's stream state is inconsistent (steps, counts, digests)")
        self.used, at = {}, 0
        for s, c in zip(steps, counts):
            self.used[s], at = flat[at : at + c], at + c
        self.seen = {d for ds in self.used.values() for d in ds}


__all__ = [
    "SPACE",
    "Candidate",
    "FreshStream",
    "StepGenerator",
    "StreamConfig",
    "StreamingSFTDataModule",
    "key_digest",
    "stream_excluded",
    "stream_task_args",
    "usable_candidates",
]
