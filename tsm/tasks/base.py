"""What a verifiable task gives the rest of tsm: a :class:`Sampler` and a :class:`TaskPlugin`.

A task is one package ``tsm/tasks/<name>/`` (or any importable module) whose ``TASK`` attribute is a
:class:`TaskPlugin`. The data builder, the fresh-data streams, SFT, GRPO, expert iteration,
evaluation, ``tsm.predict`` and ``tsm.report`` know only this contract:

* **sampler** -- ``sampler(**knobs) -> Sampler``: draws a problem from an explicit
  :class:`random.Random` (or rejects the draw with :class:`Rejected`), poses it as chat messages,
  and names the ground truth. ``knobs`` are the data config's generator knobs (``simplicity``,
  ``max_coefficient``, ``max_power``, ``max_depth``, ``max_length``, ``variations``, ``simplify``)
  plus the task's own ``data.task_options``.
* **verify** -- ``verify(response, ground_truth, config) -> Score``: the answer check (the reward).
  It must never execute model text, never raise, and take about a millisecond; it runs in the
  reward's worker processes under a per-item time limit.
* **steps** -- optional: the ``sft_target=steps`` text of a dataset row.
* **pose** -- ``pose(text, variations, seed) -> Posed``: a user's f(x) as the problem and prompt
  the model was trained on (``python -m tsm.predict --task <name>``, the try-it page).
* **ood_data** -- optional: the name of the ``conf/data`` config of the task's out-of-distribution
  test set.

Every problem is a function f(x) posed in LaTeX, and every row stores the task-neutral fields
``function``/``function_sympy`` (the problem) and ``answer``/``answer_sympy`` (a reference answer)
in LaTeX and plain sympy form; ``reward_model.ground_truth`` is what ``verify`` checks against, and
``data_source`` is ``tsm/<task name>``.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
DATA_SOURCE_PREFIX = "tsm/"


class Rejected(Exception):
    """A draw the task refuses (too long, not finite, ...); ``reason`` is a short stable key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@runtime_checkable
class Problem(Protocol):
    """One accepted draw, in the task-neutral fields every row stores."""

    key: str  # dedup key (a digest of the problem's canonical sympy tree)
    function_type: str  # the generator family (tsm.math.sampling.FUNCTION_TYPES)
    function_latex: str
    answer_latex: str

    @property
    def function_sympy(self) -> str: ...

    @property
    def answer_sympy(self) -> str: ...


@runtime_checkable
class Sampler(Protocol):
    """Draw a problem, pose it as chat messages, give its ground truth."""

    def sample(self, rng: random.Random) -> Problem:
        """One problem drawn from ``rng``; raises :class:`Rejected` for a refused draw."""
        ...

    def pose(self, problem: Any, rng: random.Random) -> tuple[list[dict[str, str]], str]:
        """Chat messages that pose ``problem`` and the surface form of f they show."""
        ...

    def ground_truth(self, problem: Any) -> str:
        """What the task's ``verify`` checks a response against."""
        ...


# backwards-compatible name: a Task was the sampler
Task = Sampler


@dataclass(frozen=True)
class Posed:
    """A user's function posed as the task poses it (``tsm.predict``, serving)."""

    problem: Any  # the task's Problem
    messages: list[dict[str, str]]
    ground_truth: str


@dataclass(frozen=True)
class TaskPlugin:
    """Everything specific to one task (see the module doc)."""

    name: str
    sampler: Callable[..., Sampler]
    verify: Callable[..., Any]  # (response, ground_truth, config: RewardConfig | None) -> Score
    pose: Callable[..., Posed]  # (text or sympy f, variations=False, seed=0) -> Posed
    steps: Callable[[dict[str, Any]], str] | None = None
    ood_data: str | None = None
    description: str = ""  # one line: what is asked (predict's header, the README's task table)
    warm_up: tuple[str, str] = ("\\boxed{2x}", "2*x")  # (response, ground truth) the reward's workers score first

    @property
    def data_source(self) -> str:
        return DATA_SOURCE_PREFIX + self.name


TASKS = ("differentiation", "integration")  # the tasks shipped in tsm/tasks/
_LOADED: dict[str, TaskPlugin] = {}


def _import(module_name: str):
    """The module, or None when it (or a package on its path) does not exist."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise  # the module exists but imports something missing: a real error


def chat_prompt(function: Any, function_latex: str, rng: random.Random, *, variations: bool,
                surface: str, prompts: tuple[str, ...], fixed: str,
                inverse_styles: tuple[str, ...] = ()) -> tuple[list[dict[str, str]], str]:
    """The system prompt and a user turn around f: with ``variations`` a surface form of f
    (``tsm.math.render.surface_form`` in the ``surface`` style) in one of ``prompts``, else the
    plain LaTeX in ``fixed``; returns the messages and the form of f they show. With
    ``inverse_styles``, an f with inverse trig is first rendered in one of those notations
    (``tsm.math.render.INVERSE_STYLES``; no draw is made for other functions)."""
    from tsm.math import render

    if variations:
        if inverse_styles and render.has_inverse(function):
            function_latex = render.to_latex(function, rng.choice(inverse_styles))
        shown = render.surface_form(function, rng, function_latex, surface)
        template = rng.choice(prompts)
    else:
        shown, template = function_latex, fixed
    return ([{"role": "system", "content": SYSTEM_PROMPT},
             {"role": "user", "content": template.format(function=shown)}], shown)


def get_task(name: str) -> TaskPlugin:
    """The :class:`TaskPlugin` of ``name``: ``tsm/tasks/<name>/``, else the importable module
    ``name`` (``mypkg.mytask``, on the Python path), whose ``TASK`` is a plugin with ``TASK.name ==
    name`` (rows record ``tsm/<name>``, and that must lead back here). ``ValueError`` otherwise."""
    if isinstance(name, TaskPlugin):
        return name
    if name in _LOADED:
        return _LOADED[name]
    if not isinstance(name, str) or not name:
        raise ValueError(f"task must be a task name, one of {list(TASKS)}, got {name!r}")
    module_name = f"tsm.tasks.{name}"
    module = _import(module_name) if "." not in name else None
    if module is None:
        module_name = name
        module = _import(name)
    if module is None:
        raise ValueError(f"unknown task {name!r}: the tasks are {list(TASKS)} (or an importable "
                         "module whose TASK is a tsm.tasks.TaskPlugin)")
    plugin = getattr(module, "TASK", None)
    if not isinstance(plugin, TaskPlugin):
        raise ValueError(f"task {name!r}: module {module_name} has no TASK = TaskPlugin(...)")  # noqa: TRY004 - a config error
    if plugin.name != name:
        raise ValueError(f"task {name!r}: its TASK.name is {plugin.name!r}; they must agree (rows "
                         f"record data_source 'tsm/<name>' and are scored by that task)")
    _LOADED[name] = plugin
    return plugin


def task_of_row(row: dict[str, Any]) -> TaskPlugin:
    """The task a dataset row belongs to, from its ``data_source`` (``tsm/<name>``)."""
    source = row.get("data_source") or ""
    if not source.startswith(DATA_SOURCE_PREFIX):
        raise ValueError(f"row data_source {source!r} is not a tsm task (tsm/<name>)")
    return get_task(source[len(DATA_SOURCE_PREFIX):])


def rows_task(rows: list[dict[str, Any]]) -> TaskPlugin:
    """The one task of ``rows`` (``ValueError`` naming both when they mix tasks)."""
    names = {row.get("data_source") for row in rows}
    if len(names) > 1:
        raise ValueError(f"the rows mix tasks ({sorted(map(str, names))}); evaluate one task at a time")
    return task_of_row(rows[0])
