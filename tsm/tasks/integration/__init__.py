"""Symbolic integration: given f(x), answer an antiderivative F inside ``\\boxed{}`` (issue 21).

The package holds everything specific to the task (``tsm.tasks.base.TaskPlugin``):

* ``sampler.py`` -- :class:`IntegrationTask`: backward pairs (draw F, pose f = F') and forward
  pairs (sympy integrates a drawn f within a time limit), mixed by ``data.task_options.forward_share``;
  the prompts; the ground truth is the integrand ``str(f)``;
* ``verify.py`` -- the check: the boxed answer (with or without ``+ C``) is right when its
  derivative equals f under the reward's equivalence test;
* ``baseline.py`` -- ``sympy.integrate`` on the same rows, under a time limit;
* :func:`pose` -- a user's f(x) posed as the dataset poses one (``python -m tsm.predict --task
  integration``); the reference F is sympy's antiderivative when it finds one quickly.

No ``sft_target=steps`` derivations and no hand-written OOD set yet.
"""

from __future__ import annotations

import random
from typing import Any

from tsm.tasks.base import Posed, TaskPlugin
from tsm.tasks.integration.sampler import (
    FIXED_PROMPT,
    USER_PROMPTS,
    IntegrationProblem,
    IntegrationTask,
    integrate_within,
)
from tsm.tasks.integration.verify import antiderivative_check, verify


def pose(f: Any, variations: bool = False, seed: int = 0, function_type: str = "user") -> Posed:
    """A user's integrand (text or sympy) posed as the dataset poses one. The stored reference F
    is sympy's antiderivative within 2 s, or empty when sympy finds none (the check needs none)."""
    import sympy

    from tsm.math import render
    from tsm.math.parse import parse_expression
    from tsm.tasks.base import Rejected
    from tsm.tasks.differentiation.sampler import canonical_key

    expr = parse_expression(f) if isinstance(f, str) else f
    try:
        big_f = integrate_within(expr, 2.0)
        if big_f.has(sympy.Integral):
            big_f = sympy.S.NaN
    except Rejected:
        big_f = sympy.S.NaN
    answer_latex = "" if big_f is sympy.S.NaN else render.to_latex(big_f)
    problem = IntegrationProblem(expr, big_f, render.to_latex(expr), answer_latex, function_type,
                                 canonical_key(expr), "user")
    messages, _ = IntegrationTask(variations=variations).pose(problem, random.Random(seed))
    return Posed(problem, messages, problem.function_sympy)


TASK = TaskPlugin(
    name="integration", sampler=IntegrationTask, verify=verify, pose=pose, steps=None,
    ood_data=None, description="an antiderivative of f(x)", warm_up=("\\boxed{x^2/2}", "x"))

__all__ = ["FIXED_PROMPT", "TASK", "USER_PROMPTS", "IntegrationProblem", "IntegrationTask",
           "antiderivative_check", "pose", "verify"]
