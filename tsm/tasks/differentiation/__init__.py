"""Symbolic differentiation (Diff-TSM's task): given f(x), answer d/dx f(x) inside ``\\boxed{}``.

The package holds everything specific to the task (``tsm.tasks.base.TaskPlugin``):

* ``sampler.py`` -- :class:`DifferentiationTask`: functions from :mod:`tsm.math.sampling`, their
  derivatives, the prompts and surface variations; the ground truth is ``str(f')``;
* the check is the derivative reward, :func:`tsm.reward.scoring.score` (numeric equivalence with
  the gold f' on its real domain, derivative prefixes such as ``f'(x) =`` allowed);
* ``steps.py`` -- the ``sft_target=steps`` derivations;
* ``ood.py`` + ``ood_functions.yaml`` -- the hand-written textbook test set (``data=ood``);
* :func:`pose` -- a user's f(x) as the dataset poses one (``python -m tsm.predict``).
"""

from __future__ import annotations

from typing import Any

from tsm.tasks.base import Posed, TaskPlugin
from tsm.tasks.differentiation.sampler import (
    FIXED_PROMPT,
    MAX_NODES,
    USER_PROMPTS,
    DifferentiationProblem,
    DifferentiationTask,
    canonical_key,
    derivative,
    is_valid_expression,
    scan,
)


def verify(response: str, ground_truth: str, config: Any = None):
    """The derivative reward: ``response``'s last boxed answer against the gold f'."""
    from dataclasses import asdict

    from tsm.reward.scoring import score

    return score(response, ground_truth, **(asdict(config) if config is not None else {}))


def steps_target(row: dict[str, Any]) -> str:
    """The ``sft_target=steps`` text of a row: a short rule-based derivation ending in the gold."""
    from tsm.math.parse import parse_expression
    from tsm.tasks.differentiation.steps import derivation_steps

    info = row["extra_info"]
    f = parse_expression(info["function_sympy"], dialect="sympy")
    return derivation_steps(f, derivative_latex=info["answer"])


def pose(f: Any, variations: bool = False, seed: int = 0, function_type: str = "user") -> Posed:
    """A user's f(x) (text or sympy) posed as the dataset poses one; f' by sympy."""
    from tsm.tasks.differentiation.ood import pose_function

    problem, messages = pose_function(_read(f), variations, seed, function_type)
    return Posed(problem, messages, problem.derivative_sympy)


def _read(f: Any):
    if isinstance(f, str):
        from tsm.math.parse import parse_expression

        return parse_expression(f)
    return f


TASK = TaskPlugin(
    name="differentiation", sampler=DifferentiationTask, verify=verify, pose=pose, steps=steps_target,
    ood_data="ood", description="d/dx f(x)", warm_up=("\\boxed{2x}", "2*x"))

__all__ = ["FIXED_PROMPT", "MAX_NODES", "TASK", "USER_PROMPTS", "DifferentiationProblem",
           "DifferentiationTask", "canonical_key", "derivative", "is_valid_expression", "pose",
           "scan", "steps_target", "verify"]
