"""DifferentiationTask: exact derivatives, rejection filters, prompts, the Task protocol."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import sympy

from tsm.math import sampling as S
from tsm.tasks import SYSTEM_PROMPT, DifferentiationTask, Rejected, Task
from tsm.tasks.differentiation import (
    FIXED_PROMPT,
    USER_PROMPTS,
    canonical_key,
    derivative,
    is_valid_expression,
)

X = S.X


def drawn(expr, kind="composite-complex"):
    return S.SampledFunction(expr, kind, None)


def test_is_a_task():
    assert isinstance(DifferentiationTask(), Task)
    assert SYSTEM_PROMPT == "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.mark.parametrize("simplicity", [0.0, 1.0])
def test_derivative_is_sympy_diff(simplicity):
    rng = random.Random(int(simplicity * 10) + 1)
    for _ in range(250):
        f = S.sample_function(rng, simplicity=simplicity).expr
        if not S.is_finite(f):
            continue
        assert derivative(f) == sympy.diff(f, X), f
    for f in (X**X, sympy.sqrt(X**2 + 1), sympy.log(sympy.sin(X)) ** 2, 7 ** (2 * X), sympy.Integer(3)):
        assert derivative(f) == sympy.diff(f, X)


def test_rejections_by_reason():
    task = DifferentiationTask(max_length=30)
    cases = {
        "not_finite": sympy.zoo * X,
        "invalid_node": sympy.Heaviside(X) + X,
        "complex": X * sympy.log(-5),
        "too_long_function": sympy.sin(X) * sympy.cos(X) * sympy.tan(X) * sympy.exp(X) + X**5,
        "too_long_derivative": sympy.tan(sympy.tan(sympy.tan(X))),
    }
    for reason, expr in cases.items():
        with pytest.raises(Rejected) as info:
            task._check(drawn(expr))
        assert info.value.reason == reason, expr
    assert not is_valid_expression(sympy.Integral(X, X) + 1)
    assert not is_valid_expression(sympy.Derivative(sympy.Function("g")(X), X))
    assert not is_valid_expression(sympy.gamma(X))
    assert is_valid_expression(sympy.sin(X) ** 2 + sympy.sqrt(X) * sympy.exp(X))


def test_accepted_problem_fields():
    task = DifferentiationTask(simplicity=0.5)
    reasons = Counter()
    problems = []
    for i in range(120):
        try:
            problems.append(task.sample(random.Random(i)))
        except Rejected as exc:
            reasons[exc.reason] += 1
    assert len(problems) > 90 and set(reasons) <= {"too_long_derivative", "too_long_function",
                                                  "not_finite", "complex", "invalid_node"}
    for p in problems:
        assert len(p.function_latex) <= 100 and len(p.derivative_latex) <= 100
        assert p.derivative == sympy.diff(p.function, X)
        assert task.ground_truth(p) == str(p.derivative) == p.derivative_sympy
        assert sympy.sympify(p.function_sympy) == p.function  # trusted test-side round trip
        assert p.key == canonical_key(p.function)


def test_canonical_key_merges_same_tree_only():
    assert canonical_key(2 * X) == canonical_key(X * 2)
    assert canonical_key(X ** sympy.Rational(1, 2)) == canonical_key(sympy.sqrt(X))
    assert canonical_key(X + 1) != canonical_key(X + 2)
    assert len(canonical_key(X)) == 24


def test_prompts_with_and_without_variations():
    problem = DifferentiationTask().sample(random.Random(5))
    fixed = DifferentiationTask(variations=False)
    messages, shown = fixed.pose(problem, random.Random(1))
    assert shown == problem.function_latex
    assert messages == [{"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": FIXED_PROMPT.format(function=shown)}]
    varied = DifferentiationTask(variations=True)
    seen_templates, seen_shown = set(), set()
    for i in range(60):
        messages, shown = varied.pose(problem, random.Random(i))
        user = messages[1]["content"]
        seen_templates.update(t for t in USER_PROMPTS if user == t.format(function=shown))
        seen_shown.add(shown)
        assert varied.messages(problem, random.Random(i)) == messages
    assert len(seen_templates) >= 6 and len(seen_shown) > 5


def test_bad_simplify_mode():
    with pytest.raises(ValueError, match="simplify"):
        DifferentiationTask(simplify="none")
