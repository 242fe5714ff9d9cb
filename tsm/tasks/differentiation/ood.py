"""The out-of-distribution test set (``data=ood``): hand-written textbook functions, built into
the same parquet layout as the generated data.

Source: ``tsm/tasks/differentiation/ood_functions.yaml`` (or ``data.source``, a YAML of the same shape:
``{function_type: [f, ...]}``), where each f is plain sympy text written by hand. A row is made
the way :mod:`tsm.data.build` makes one, from computed fields only:

* f is read with :func:`tsm.math.parse.parse_expression` (the reward's parser; never
  ``sympify``), so every source function is also something the reward can read;
* f' is ``sympy.diff(f, x)`` (no derivative is hand-written); the ground truth is ``str(f')``;
* LaTeX is :func:`tsm.math.render.to_latex` with inverse trig written ``\\arcsin``/``\\arccos``/
  ``\\arctan`` (textbook notation; sympy's default ``\\operatorname{asin}`` does not survive the
  prompts' surface variations). A function whose LaTeX still has ``\\operatorname`` is refused;
* the prompt is :meth:`DifferentiationTask.pose` (Diff-TSM's system prompt, a user phrasing and
  a surface form of f when ``variations``, else the fixed phrasing around the plain LaTeX), with
  row ``i`` drawing from ``random.Random(example_seed(seed, i))`` as generated candidates do.

A function is refused (``ValueError``, naming it) when it does not parse, has no ``x``, fails
the task's checks (non-finite, invalid node, imaginary unit) or repeats another one
(:func:`canonical_key`). No length limit applies: long derivatives are part of the point.

Output: ``<output_dir>/ood-<hash>/{train,test}.parquet`` and ``meta.json`` (the keys that
``python -m tsm.data`` summarizes), ``<hash>`` digesting the source file's bytes, ``variations``
and ``seed``; reused like a generated build. The test split holds every function in file order;
the train split is empty (the set is for evaluation: ``evaluate.py data=ood`` and ``train.py``'s
before/after test accuracy; SFT on it has no training rows unless ``sft_target=responses``).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy

from tsm.atomic import write_atomic
from tsm.data import build
from tsm.data.build import DatasetFiles, example_seed
from tsm.math import render
from tsm.math.parse import ParseError, parse_expression
from tsm.tasks.differentiation.sampler import (
    OOD_SOURCE,
    DifferentiationProblem,
    DifferentiationTask,
    canonical_key,
    load_functions,
    scan,
)

FORMAT_VERSION = 2  # 2: task-neutral row fields; bump when the build procedure changes what a source produces
DEFAULT_SOURCE = OOD_SOURCE
_X = sympy.Symbol("x")


@dataclass
class OODSpec:
    """Knobs of the OOD test set (the ``_target_`` of ``conf/data/ood.yaml``)."""

    source: str | None = None  # a YAML {function_type: [plain f, ...]}; None: the shipped set
    variations: bool = True  # prompt phrasings and surface forms as data.variations
    seed: int = 0  # picks the phrasings and surface forms
    output_dir: str = "data"
    task: str = "differentiation"  # the set's task (fixed: the rows are derivative problems)

    def __post_init__(self) -> None:
        if self.task != "differentiation":
            raise ValueError(f"data.task={self.task!r}: the OOD set is a differentiation set")
        if not isinstance(self.variations, bool):
            raise ValueError(f"data.variations={self.variations!r}: must be true or false")  # noqa: TRY004 - config errors are ValueErrors, as in DatasetSpec
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"data.seed={self.seed!r}: must be a non-negative integer")
        if not self.output_dir:
            raise ValueError("data.output_dir: must be a folder path")
        if not self.source_path().is_file():
            raise ValueError(f"data.source={self.source!r}: no such file")

    def source_path(self) -> Path:
        return Path(self.source).expanduser() if self.source else DEFAULT_SOURCE

    def generation_config(self) -> dict[str, Any]:
        """What determines the files (hashed into the folder name, stored in meta.json)."""
        digest = hashlib.sha256(self.source_path().read_bytes()).hexdigest()
        return {"kind": "ood", "format_version": FORMAT_VERSION, "source_sha256": digest,
                "variations": self.variations, "seed": self.seed}

    def config_hash(self) -> str:
        text = json.dumps(self.generation_config(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def directory(self) -> Path:
        return Path(self.output_dir) / f"ood-{self.config_hash()}"

    def build(self, progress: bool = False) -> DatasetFiles:
        """Build (or reuse) the files; what ``build_dataset`` does for a generated spec."""
        return build_ood(self)


def to_latex(expr: sympy.Expr) -> str:
    """:func:`render.to_latex`, which writes inverse trig as ``\\arcsin``/``\\arccos``/``\\arctan``."""
    return render.to_latex(expr)


def pose_function(f: sympy.Expr, variations: bool = False, seed: int = 0, function_type: str = "user"
                  ) -> tuple[DifferentiationProblem, list[dict[str, str]]]:
    """Any f(x) as the task's problem record (f' by sympy) and the chat messages that ask for f'
    (the dataset's fixed phrasing, or with ``variations`` one of its phrasings, seeded)."""
    d = sympy.diff(f, sympy.Symbol("x"))
    problem = DifferentiationProblem(f, d, to_latex(f), to_latex(d), function_type, canonical_key(f))
    messages, _ = DifferentiationTask(variations=variations).pose(problem, random.Random(seed))
    return problem, messages


def make_problem(text: str, function_type: str) -> DifferentiationProblem:
    """One hand-written function as the task's problem record; ``ValueError`` when refused."""
    try:
        f = parse_expression(text, dialect="plain")
    except ParseError as exc:
        raise ValueError(f"OOD function {text!r} does not parse: {exc}") from exc
    if not f.has(_X):
        raise ValueError(f"OOD function {text!r} has no x")
    d = sympy.diff(f, _X)
    for name, expr in (("f", f), ("f'", d)):
        finite, valid, imaginary, _ = scan(expr)
        if not (finite and valid) or imaginary:
            raise ValueError(f"OOD function {text!r}: {name} = {expr} is not a finite real expression")
    f_latex, d_latex = to_latex(f), to_latex(d)
    if r"\operatorname" in f_latex + d_latex:
        raise ValueError(f"OOD function {text!r} renders as {f_latex!r}: \\operatorname names "
                         "do not survive the prompts' surface variations")
    return DifferentiationProblem(f, d, f_latex, d_latex, function_type, canonical_key(f))


def ood_rows(spec: OODSpec) -> list[dict[str, Any]]:
    """The test rows, in the dataset row contract (:mod:`tsm.data.schema`)."""
    task = DifferentiationTask(variations=spec.variations)
    rows, seen = [], {}
    for i, (kind, text) in enumerate(load_functions(spec.source_path())):
        problem = make_problem(text, kind)
        if problem.key in seen:
            raise ValueError(f"OOD function {text!r} repeats {seen[problem.key]!r}")
        seen[problem.key] = text
        messages, shown = task.pose(problem, random.Random(example_seed(spec.seed, i)))
        fields = {"task": "differentiation", "function_type": kind, "function": problem.function_latex,
                  "answer": problem.derivative_latex, "function_sympy": problem.function_sympy,
                  "answer_sympy": problem.derivative_sympy, "function_shown": shown,
                  "messages": messages, "ground_truth": task.ground_truth(problem)}
        rows.append(build.dataset_row(fields, "test", i))
    return rows


def build_ood(spec: OODSpec) -> DatasetFiles:
    """Write (or reuse) ``train.parquet`` (empty), ``test.parquet`` and ``meta.json``."""
    config = spec.generation_config()
    files = build._files(spec.directory(), reused=True)
    if build._reusable(files, config):
        return files
    rows = ood_rows(spec)
    files.directory.mkdir(parents=True, exist_ok=True)
    files = build._files(files.directory, reused=False)
    build._write_parquet([], files.train)
    build._write_parquet(rows, files.test)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["extra_info"]["function_type"]] = kinds.get(r["extra_info"]["function_type"], 0) + 1

    def mean_len(field: str) -> float:
        return round(sum(len(r["extra_info"][field]) for r in rows) / len(rows), 3)

    meta = {
        "config": config, "config_hash": spec.config_hash(), "seed": spec.seed,
        "source": str(spec.source_path()),
        "counts": {"train": 0, "test": len(rows), "candidates": len(rows), "duplicates": 0,
                   "rejected": 0, "timeouts": 0},
        "rejections": {},
        "function_types": {"train": {k: 0 for k in kinds}, "test": kinds},
        "mean_length": {"train": {"function": 0.0, "answer": 0.0},
                        "test": {"function": mean_len("function"), "answer": mean_len("answer")}},
        "files": {"train": files.train.name, "test": files.test.name},
        "sha256": {"train": build._sha256(files.train), "test": build._sha256(files.test)},
        "versions": build._versions(),
    }
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    write_atomic(files.meta, lambda tmp: tmp.write_text(text))
    return files


__all__ = ["DEFAULT_SOURCE", "OODSpec", "build_ood", "load_functions", "make_problem", "ood_rows",
           "to_latex"]
