"""Build a task's dataset: generate, dedup, split, write parquet + a JSON sidecar.

The task (``data.task``, a :class:`tsm.tasks.TaskPlugin`: differentiation by default) supplies the
sampler; everything below is task-neutral.

Reproducibility: candidate ``i`` is drawn from ``random.Random(example_seed(seed, i))`` alone,
candidates are consumed in index order and the build stops at the candidate that completes the
target, so the files are byte-identical for a given config and seed whatever ``workers`` or
``chunk_size`` are (the parquet holds no timestamps; timing lives only in the sidecar's
``timing`` field). Dedup keeps the first candidate of each :func:`canonical_key` (a digest of the
simplified sympy tree); of the first ``n_train + n_test`` unique functions, those at evenly
spaced positions form the test split and the rest the train split (:func:`split_evenly`), so
the splits are disjoint by that key and have the same mix of function types and lengths.

Time budget: candidates run through :class:`tsm.parallel.TimeoutPool` (``workers=0``: inline,
no limit), each with ``timeout_s``; a timed-out candidate counts as a rejection (``timeout``;
the sidecar counts them, and only a build without timeouts is guaranteed reproducible). The
sampler's size guards keep timeouts practically absent.

Capacity: the build fails early (after the first chunk) when the unique yield projects that
``n_train + n_test`` functions need more than ``max_attempts_factor * (n_train + n_test)``
candidates, and in any case when that budget runs out, naming the knobs to turn.

Output: ``<output_dir>/<task>-<hash>/{train,test}.parquet`` and ``meta.json``, where
``<hash>`` digests the generation config (not ``workers``, ``chunk_size``, ``timeout_s``,
``output_dir``). Each file is written to a temporary name and moved into place (an interrupted
build leaves no partial file); ``meta.json`` is written last, and a folder whose ``meta.json``
holds the same config is reused without generating.

Exclusion: ``exclude`` names test sets that this build must not contain, e.g. a fixed test split
while fresh training functions are drawn with another seed or mix. Each entry is either a data
config (a mapping of :class:`DatasetSpec` fields: that build's *test* split, built or reused
first) or the path of a parquet file in the verl schema. A candidate whose sympy form
(``extra_info.function_sympy``, ``str`` of the simplified tree) is in an excluded set is skipped
(counted as ``excluded``); equal trees print equally, so this is at least as strict as the dedup
key. The excluded sets' identities (their generation configs, or the files' sha256) are part of
the generation config, so a changed test set gives a new folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tsm.atomic import remove_stale_temps, write_atomic
from tsm.data.schema import to_table
from tsm.math import sampling
from tsm.math.render import SURFACE_STYLES
from tsm.tasks.base import Rejected, Sampler, get_task

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: task-neutral row fields (answer, answer_sympy); bump when the generation procedure changes what a config produces
_GENERATION_KEYS = ("simplicity", "n_train", "n_test", "max_coefficient", "max_power",
                    "max_length", "max_depth", "variations", "simplify", "seed")
_PILOT_MIN = 256  # candidates seen before the capacity projection may fail the build
_VERSIONED = ("tsm", "sympy", "pyarrow", "numpy", "mpmath")


class CapacityError(ValueError):
    """More unique functions asked for than the distribution gives within the attempt budget."""


def _plain(value: Any) -> Any:
    """A config value as plain Python (an OmegaConf node -> dict/list), for hashing and pickling."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


@dataclass
class DatasetSpec:
    """Knobs of a dataset build (the ``_target_`` of ``conf/data`` nodes)."""

    simplicity: float = 0.5  # probability of a template (else a random expression tree)
    n_train: int = 2048
    n_test: int = 256
    max_coefficient: int = 40  # template coefficients in [-max_coefficient, max_coefficient]
    max_power: int = 5  # template powers in [1, max_power]
    max_length: int = 100  # LaTeX characters allowed for f and for f'
    max_depth: int = 4  # random-tree depth
    variations: bool = True  # surface variations and several phrasings in prompts
    simplify: str = "fast"  # "fast" or "exact" (Diff-TSM's simple_simplify result)
    seed: int = 0
    workers: int = 0  # 0: inline in this process (no time limit)
    timeout_s: float = 10.0  # per candidate, with workers >= 1
    chunk_size: int = 256  # candidates per pool.map call (no effect on the output)
    max_attempts_factor: float = 20.0  # candidate budget, as a multiple of n_train + n_test
    output_dir: str = "data"
    exclude: tuple = ()  # test sets kept out of this build: data configs (mappings) or parquet paths
    surface: str = "diff_tsm"  # prompt variations: Diff-TSM's ("diff_tsm") or only forms people type ("clean")
    drop_constants: bool = False  # refuse functions without x (f(x) = 0 and other degenerate exercises)
    task: str = "differentiation"  # the task whose sampler draws the rows (tsm/tasks/<task>/)
    task_options: dict = dataclasses.field(default_factory=dict)  # the task sampler's own knobs

    def __post_init__(self) -> None:
        def fail(knob: str, why: str) -> None:
            raise ValueError(f"data.{knob}={getattr(self, knob)!r}: {why}")

        self.exclude = self._normalized_exclude(fail)
        try:
            plugin = get_task(self.task)
        except ValueError as exc:
            fail("task", str(exc))
        if not isinstance(self.task_options, Mapping):
            fail("task_options", "must be a mapping of the task sampler's knobs")
        self.task_options = {str(k): _plain(v) for k, v in dict(self.task_options).items()}
        try:  # the sampler checks its own knobs (unknown names, ranges) before any work
            plugin.sampler(**self.task_options)
        except (TypeError, ValueError) as exc:
            fail("task_options", str(exc))

        if isinstance(self.simplicity, bool) or not isinstance(self.simplicity, (int, float)) \
                or not 0.0 <= self.simplicity <= 1.0:
            fail("simplicity", "must be a probability in [0, 1] (share of template functions)")
        self.simplicity = float(self.simplicity)
        for knob, low in (("n_train", 1), ("n_test", 0), ("max_coefficient", 1), ("max_power", 1),
                          ("max_length", 1), ("max_depth", 0), ("workers", 0), ("chunk_size", 1)):
            value = getattr(self, knob)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(knob, "must be an integer")
            if value < low:
                fail(knob, f"must be >= {low}")
        if self.max_depth > 8:
            fail("max_depth", "must be <= 8 (random trees grow as 2^depth; Diff-TSM uses 4)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            fail("seed", "must be a non-negative integer")
        if not isinstance(self.variations, bool):
            fail("variations", "must be true or false")
        if self.simplify not in sampling.SIMPLIFY_MODES:
            fail("simplify", f"must be one of {list(sampling.SIMPLIFY_MODES)}")
        if self.surface not in SURFACE_STYLES:
            fail("surface", f"must be one of {list(SURFACE_STYLES)}")
        if not isinstance(self.drop_constants, bool):
            fail("drop_constants", "must be true or false")
        if not isinstance(self.timeout_s, (int, float)) or not self.timeout_s > 0:
            fail("timeout_s", "must be > 0 seconds")
        if not isinstance(self.max_attempts_factor, (int, float)) or not self.max_attempts_factor >= 1:
            fail("max_attempts_factor", "must be >= 1 (each example needs at least one draw)")
        if not self.output_dir:
            fail("output_dir", "must be a folder path")
        if self.simplicity == 0.0 and self.max_depth == 0 and self.n_train + self.n_test > 1:
            fail("max_depth", "with simplicity 0 and depth 0 the only function is x, so at most "
                 "one unique example exists; raise data.max_depth or data.simplicity")

    def _normalized_exclude(self, fail: Callable[[str, str], None]) -> tuple:
        """``exclude`` as a tuple of plain dicts (complete specs' fields) and path strings."""
        entries = self.exclude
        if entries is None:
            return ()
        if isinstance(entries, (str, os.PathLike, Mapping)):
            entries = [entries]  # one entry given bare
        out: list = []
        for entry in entries:
            if isinstance(entry, Mapping):
                values = {"output_dir": self.output_dir, **{str(k): v for k, v in entry.items()}}
                values.pop("_target_", None)
                try:
                    out.append(dataclasses.asdict(DatasetSpec(**values)))
                except (TypeError, ValueError) as exc:
                    fail("exclude", f"an entry is not a valid data config: {exc}")
            elif isinstance(entry, (str, os.PathLike)) and str(entry):
                out.append(str(entry))
            else:
                fail("exclude", "entries must be data configs (mappings) or parquet file paths")
        return tuple(out)

    def excluded_specs(self) -> list[DatasetSpec | Path]:
        """The ``exclude`` entries as specs (whose test split is excluded) and parquet paths."""
        return [DatasetSpec(**e) if isinstance(e, dict) else Path(e) for e in self.exclude]

    def generation_config(self) -> dict[str, Any]:
        """What determines the files (hashed into the folder name)."""
        config = {"format_version": FORMAT_VERSION, **{k: getattr(self, k) for k in _GENERATION_KEYS}}
        for knob, default in _NEWER_KNOBS.items():  # absent at their defaults: folders keep their names
            if getattr(self, knob) != default:
                config[knob] = getattr(self, knob)
        if self.task != "differentiation":  # absent for differentiation, whose folders predate tasks
            config["task"] = self.task
        if self.task_options:
            config["task_options"] = dict(sorted(self.task_options.items()))
        if self.exclude:  # absent when empty, so builds without exclusions keep their folders
            config["exclude"] = [_exclusion_identity(e) for e in self.excluded_specs()]
        return config

    def config_hash(self) -> str:
        text = json.dumps(self.generation_config(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def directory(self) -> Path:
        return Path(self.output_dir) / f"{self.task}-{self.config_hash()}"


@dataclass(frozen=True)
class DatasetFiles:
    """Where a build put its files, and whether they were reused from an earlier build."""

    directory: Path
    train: Path
    test: Path
    meta: Path
    reused: bool

    def read_meta(self) -> dict[str, Any]:
        return json.loads(self.meta.read_text())


def example_seed(seed: int, index: int) -> int:
    """The RNG seed of candidate ``index``: a digest, so nearby seeds give unrelated streams."""
    digest = hashlib.blake2b(f"tsm-data:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _exclusion_identity(entry: DatasetSpec | Path) -> dict[str, Any]:
    if isinstance(entry, DatasetSpec):
        return {"test_of": entry.generation_config()}
    if not entry.is_file():
        raise ValueError(f"data.exclude: {entry} is not a file (a parquet test set to keep out)")
    return {"file": entry.name, "sha256": _sha256(entry)}


def excluded_functions(spec: DatasetSpec, progress: bool = False) -> set[str]:
    """The sympy forms of every function in ``spec.exclude``'s test sets (building them if needed)."""
    functions: set[str] = set()
    for entry in spec.excluded_specs():
        path = build_dataset(entry, progress=progress).test if isinstance(entry, DatasetSpec) else entry
        try:
            infos = pq.read_table(path, columns=["extra_info"]).column("extra_info").to_pylist()
        except Exception as exc:  # pyarrow raises several types for damaged or foreign files
            raise ValueError(f"data.exclude: cannot read the extra_info column of {path}: {exc}") from exc
        for info in infos:
            if not (info or {}).get("function_sympy"):
                raise ValueError(f"data.exclude: {path} has rows without extra_info.function_sympy")
            functions.add(info["function_sympy"])
    return functions


_SAMPLER_KNOBS = ("simplicity", "max_coefficient", "max_power", "max_depth", "max_length",
                  "variations", "simplify")
# later knobs: in the config hash and passed to the sampler only when changed, so folders keep their
# names and a task sampler written before them keeps working until a config uses them
_NEWER_KNOBS = {"surface": "diff_tsm", "drop_constants": False}
_SAMPLERS: dict[tuple, Sampler] = {}


def generate_candidate(item: tuple[tuple, int]) -> tuple[str, Any]:
    """Pool function: candidate ``index`` -> ``("ok", fields)`` or ``("rejected", reason)``.

    ``item`` is ``(task_args, index)`` with ``task_args = (task, knobs, seed)`` (:func:`task_args`):
    the task's name, its sampler's keyword arguments as sorted pairs, and the seed; module-level so
    a worker subprocess can import it. ``fields`` are the task-neutral row fields.
    """
    task_args, index = item
    sampler = _SAMPLERS.get(task_args)
    if sampler is None:
        name, knobs, _ = task_args
        sampler = _SAMPLERS[task_args] = get_task(name).sampler(**dict(knobs))
    rng = random.Random(example_seed(task_args[-1], index))
    try:
        problem = sampler.sample(rng)
    except Rejected as exc:
        return "rejected", exc.reason
    messages, shown = sampler.pose(problem, rng)
    return "ok", {
        "task": task_args[0], "key": problem.key, "function_type": problem.function_type,
        "kind": getattr(problem, "kind", None),  # a finer family label, where the task has one
        "function": problem.function_latex, "answer": problem.answer_latex,
        "function_sympy": problem.function_sympy, "answer_sympy": problem.answer_sympy,
        "function_shown": shown, "messages": messages, "ground_truth": sampler.ground_truth(problem),
    }


def task_args(spec: DatasetSpec, simplicity: float | None = None, seed: int | None = None) -> tuple:
    """What :func:`generate_candidate` takes for ``spec`` (optionally another simplicity or seed:
    the fresh-data streams' schedule and their own seed). The seed rides along last so the pool
    function can derive per-candidate RNGs."""
    knobs = {k: getattr(spec, k) for k in _SAMPLER_KNOBS}
    knobs.update({k: getattr(spec, k) for k, default in _NEWER_KNOBS.items() if getattr(spec, k) != default})
    if simplicity is not None:
        knobs["simplicity"] = simplicity
    knobs.update({k: tuple(sorted(v.items())) if isinstance(v, Mapping) else v  # hashable (a cache key)
                  for k, v in spec.task_options.items()})
    return (spec.task, tuple(sorted(knobs.items())), spec.seed if seed is None else seed)


_task_args = task_args  # the name the experiment scripts import


def dataset_row(fields: dict[str, Any], split: str, index: int) -> dict[str, Any]:
    return {
        "data_source": get_task(fields.get("task", "differentiation")).data_source,
        "prompt": fields["messages"],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": fields["ground_truth"]},
        "extra_info": {"split": split, "index": index, "function": fields["function"],
                       "answer": fields["answer"], "function_sympy": fields["function_sympy"],
                       "answer_sympy": fields["answer_sympy"],
                       "function_type": fields["function_type"],
                       "function_shown": fields["function_shown"]},
    }


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    table = to_table(rows)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def _versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _files(directory: Path, reused: bool) -> DatasetFiles:
    return DatasetFiles(directory, directory / "train.parquet", directory / "test.parquet",
                        directory / "meta.json", reused)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reusable(files: DatasetFiles, config: dict[str, Any]) -> bool:
    """Same config, and both parquet files still hold the bytes the build wrote (a damaged or
    replaced file is rebuilt, not handed to training)."""
    if not (files.meta.exists() and files.train.exists() and files.test.exists()):
        return False
    try:
        meta = files.read_meta()
        digests = meta.get("sha256", {})
        return meta.get("config") == config and digests == {
            "train": _sha256(files.train), "test": _sha256(files.test)}
    except (OSError, ValueError):
        return False


class _Collector:
    """Consumes candidate results in index order until the target of unique functions."""

    def __init__(self, spec: DatasetSpec, excluded: AbstractSet[str] = frozenset(), target: int | None = None):
        self.spec = spec
        self.excluded_functions = excluded
        self.excluded = 0  # candidates skipped because an excluded test set holds them
        full = spec.n_train + spec.n_test
        self.target = full if target is None else min(target, full)  # a prefix: the first `target` unique
        self.budget = max(full, math.ceil(spec.max_attempts_factor * full))
        self.unique: list[dict[str, Any]] = []
        self.keys: set[str] = set()
        self.rejections: Counter[str] = Counter()
        self.duplicates = 0
        self.candidates = 0
        self.new_flags: list[bool] = []  # per candidate: did it add a unique function

    @property
    def done(self) -> bool:
        return len(self.unique) >= self.target

    def add(self, status: str, value: Any) -> None:
        self.candidates += 1
        new = False
        if status == "ok":
            if value["function_sympy"] in self.excluded_functions:
                self.excluded += 1
            elif value["key"] in self.keys:
                self.duplicates += 1
            else:
                self.keys.add(value["key"])
                self.unique.append(value)
                new = True
        else:
            self.rejections[value] += 1
        self.new_flags.append(new)

    def check_capacity(self) -> None:
        """Fail when the recent unique yield cannot reach the target within the budget."""
        if self.done or self.candidates < _PILOT_MIN:
            return
        window = self.new_flags[-max(_PILOT_MIN, len(self.new_flags) // 4):]
        rate = sum(window) / len(window)
        missing = self.target - len(self.unique)
        left = self.budget - self.candidates
        projected = math.inf if rate == 0 else missing / rate
        if projected > left:
            spec = self.spec
            raise CapacityError(
                f"data.n_train + data.n_test = {self.target} unique functions asked for, but "
                f"after {self.candidates} candidates only {len(self.unique)} are unique and the "
                f"recent yield is {rate:.3f} new per candidate, so about {projected:.0f} more "
                f"candidates would be needed and the budget (data.max_attempts_factor="
                f"{spec.max_attempts_factor} x {self.target}) leaves {left}. At "
                f"data.simplicity={spec.simplicity} the distribution repeats itself; lower "
                f"data.n_train/data.n_test, raise data.simplicity (templates rarely repeat) or "
                f"data.max_attempts_factor.")


def _generate(spec: DatasetSpec, progress: bool, target: int | None = None) -> tuple[_Collector, int]:
    from tqdm import tqdm

    from tsm.parallel import TimeoutPool

    collector = _Collector(spec, excluded_functions(spec, progress), target)
    args = task_args(spec)
    timeouts = 0
    with TimeoutPool("tsm.data.build:generate_candidate", spec.workers, spec.timeout_s) as pool, \
            tqdm(total=collector.target, disable=not progress, desc=f"{spec.task} data",
                 unit="fn") as bar:
        start = 0
        while not collector.done:
            if start >= collector.budget:
                collector.check_capacity()
                raise CapacityError(f"candidate budget of {collector.budget} spent with "
                                    f"{len(collector.unique)}/{collector.target} unique; raise "
                                    f"data.max_attempts_factor or lower data.n_train/data.n_test")
            stop = min(start + spec.chunk_size, collector.budget)
            # one item per message: the time limit is then exactly per candidate (a chunk that
            # overran would mark all its candidates timed out); IPC is ~0.2 ms of a ~4 ms item
            results = pool.map([(args, i) for i in range(start, stop)], chunk_size=1)
            before = len(collector.unique)
            for result in results:
                if collector.done:
                    break
                if result.ok:
                    collector.add(*result.value)
                elif result.timed_out:
                    timeouts += 1
                    collector.add("rejected", "timeout")
                else:  # the task turns sympy errors into rejections: this is a bug
                    raise RuntimeError(f"candidate generation failed: {result.error}")
            bar.update(len(collector.unique) - before)
            collector.check_capacity()
            start = stop
    return collector, timeouts


def split_evenly(items: list, n_test: int) -> tuple[list, list]:
    """(test, train): test items at evenly spaced positions ``floor(j * len / n_test)``.

    Dedup squeezes repeats out of later candidates more than early ones (short random trees
    repeat), so a split by position would give the splits different mixes; spacing the test
    items over the whole sequence gives both the same mix.
    """
    positions = {j * len(items) // n_test for j in range(n_test)} if n_test else set()
    test = [x for i, x in enumerate(items) if i in positions]
    train = [x for i, x in enumerate(items) if i not in positions]
    return test, train


def _histogram(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(r["function_type"] for r in rows)
    return {**{t: 0 for t in sampling.FUNCTION_TYPES}, **counts}  # Diff-TSM's types, then any other


def first_test_rows(spec: Any, n_rows: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """The first ``n_rows`` rows (all when None) of ``spec``'s test split, the same rows a full
    build holds, without building the whole dataset when only a few are asked for.

    A built dataset is read. Otherwise, as test row ``j`` sits at position
    ``floor(j * (n_train + n_test) / n_test)`` of the unique functions (:func:`split_evenly`) and
    that sequence does not depend on how far it is generated, only its first
    ``floor((n_rows - 1) * total / n_test) + 1`` functions are generated (nothing is written):
    ``evaluate.py n_rows=32`` on a 512-row test split of 20k functions draws ~1.3k, not 20k.
    """
    from tsm.io import read_rows

    if not isinstance(spec, DatasetSpec):
        return read_rows(str(spec.build(progress=progress).test))[:n_rows]
    files = _files(spec.directory(), reused=True)
    if n_rows is None or n_rows >= spec.n_test or _reusable(files, spec.generation_config()):
        return read_rows(str(build_dataset(spec, progress).test))[:n_rows]
    if n_rows < 1:
        return []
    total = spec.n_train + spec.n_test
    positions = [j * total // spec.n_test for j in range(n_rows)]
    collector, _ = _generate(spec, progress, target=positions[-1] + 1)
    if len(collector.unique) <= positions[-1]:
        raise CapacityError(f"only {len(collector.unique)} unique functions for {n_rows} test rows")
    return [dataset_row(collector.unique[p], "test", j) for j, p in enumerate(positions)]


def build_dataset(spec: DatasetSpec, progress: bool = False) -> DatasetFiles:
    """Build (or reuse) the dataset that ``spec`` describes; see the module doc.

    Any other spec with a ``build(progress=...)`` method (``tsm.tasks.differentiation.ood.OODSpec``: ``data=ood``)
    builds itself, so every consumer of ``cfg.data`` accepts it.
    """
    if not isinstance(spec, DatasetSpec):
        return spec.build(progress=progress)
    config = spec.generation_config()
    directory = spec.directory()
    files = _files(directory, reused=True)
    if _reusable(files, config):
        return files
    began = time.perf_counter()
    collector, timeouts = _generate(spec, progress)
    test_fields, train_fields = split_evenly(collector.unique[:collector.target], spec.n_test)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temps(directory):  # what a killed build left behind
        log.info("removed %s (left by a killed build)", stale)
    files = _files(directory, reused=False)
    _write_parquet([dataset_row(f, "train", i) for i, f in enumerate(train_fields)], files.train)
    _write_parquet([dataset_row(f, "test", i) for i, f in enumerate(test_fields)], files.test)

    def mean_len(rows: list[dict[str, Any]], field: str) -> float:
        return round(sum(len(r[field]) for r in rows) / len(rows), 3) if rows else 0.0

    meta = {
        "config": config,
        "config_hash": spec.config_hash(),
        "seed": spec.seed,
        "counts": {"train": len(train_fields), "test": len(test_fields),
                   "candidates": collector.candidates, "duplicates": collector.duplicates,
                   "excluded": collector.excluded, "rejected": sum(collector.rejections.values()), "timeouts": timeouts},
        "rejections": dict(sorted(collector.rejections.items())),
        "function_types": {"train": _histogram(train_fields), "test": _histogram(test_fields)},
        "mean_length": {split: {"function": mean_len(rows, "function"),
                                "answer": mean_len(rows, "answer")}
                        for split, rows in (("train", train_fields), ("test", test_fields))},
        "files": {"train": files.train.name, "test": files.test.name},
        "sha256": {"train": _sha256(files.train), "test": _sha256(files.test)},
        "versions": _versions(),
        "timing": {"seconds": round(time.perf_counter() - began, 3), "workers": spec.workers},
    }
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    write_atomic(files.meta, lambda tmp: tmp.write_text(text))
    return files


__all__ = ["CapacityError", "DatasetFiles", "DatasetSpec", "build_dataset", "dataset_row",
           "example_seed", "generate_candidate", "split_evenly", "task_args"]
