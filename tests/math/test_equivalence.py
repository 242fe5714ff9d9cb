"""Numeric equivalence: relative agreement without an absolute floor, domains, cancellation."""
from __future__ import annotations

import pytest
import sympy as sp

from tsm.math.equivalence import (
    MAX_POINTS,
    MIN_POINTS,
    POINTS,
    compile_expression,
    equal,
    equivalent,
    evaluate,
    gold_values,
    verdict,
)

x = sp.Symbol("x")


def eq(a, b) -> bool:
    return equivalent(a, gold_values(b))


def test_points_span_signs_and_magnitudes():
    first = [float(p) for p in POINTS[:MAX_POINTS]]
    assert any(p > 0 for p in first) and any(p < 0 for p in first)
    assert max(abs(p) for p in first) > 50 and min(abs(p) for p in first) < 0.05
    assert max(p for p in first) > 2  # reaches past the [-1, 1] of Diff-TSM's checker


def test_equal_rewrites():
    assert eq(2 * sp.sin(x) * sp.cos(x), sp.sin(2 * x))
    assert eq(sp.expand((x + 1) ** 5), (x + 1) ** 5)
    assert eq(1 - sp.tanh(40 * x + 3) ** 2, 1 / sp.cosh(40 * x + 3) ** 2)  # saturates at large x
    assert eq(sp.sin(x) ** 2 + sp.cos(x) ** 2 - 1, sp.Integer(0))             # gold exactly 0
    assert eq((x + 10**20) ** 2 - 10**40 - 2 * 10**20 * x, x**2)             # 40 digits cancel
    assert eq(sp.exp(x).rewrite(sp.cosh), sp.exp(x))
    # The candidate overflows at large x where the gold stays finite: undecided there, not wrong.
    assert eq(sp.exp(110 * x) / (1 + sp.exp(110 * x)), 1 / (1 + sp.exp(-110 * x)))


def test_tiny_differences_are_wrong():
    tiny_gold = -20 * sp.exp(-20 * x - 39)       # |f'| < 1e-8 on [-1, 1]
    assert not eq(sp.Rational(1, 10**30) * x, tiny_gold)
    assert not eq(sp.Integer(0), tiny_gold)
    assert not eq(2 * x + sp.Rational(1, 10**9) * x, 2 * x)
    assert not eq(2 * x + sp.Rational(1, 10**40) * x, 2 * x)   # caught by the 110-digit check
    assert not eq(sp.Rational(1, 10**60), sp.Integer(0))


def test_terms_vanishing_on_short_numbers_are_caught():
    # Zero at every short decimal / float / dyadic point; the 40-digit points are none of those.
    for m in (10**12, 2**60, 10**40, 2**1000):
        assert not eq(2 * x + sp.sin(m * sp.pi * x), 2 * x), m


def test_terms_that_overflow_where_they_do_not_vanish_are_caught():
    # e^(-10^8 x) is 0 to every digit for x > 0 and overflows for x < 0: undecided points
    # cannot carry a verdict.
    assert not eq(2 * x + sp.exp(-(10**8) * x), 2 * x)


def test_piecewise_and_domain_tricks():
    assert not eq(2 * x + sp.Abs(x - 2) + x - 2, 2 * x)
    assert not eq(sp.sqrt(x**2), x)
    assert eq(sp.sqrt(x**2), sp.Abs(x))
    # Gold only real for x > 0: candidates are judged there only.
    assert eq(1 / (2 * sp.sqrt(sp.Abs(x))), 1 / (2 * sp.sqrt(x)))
    # Gold real for x < -15.5 only (log of -2x - 31 differentiated keeps that domain's sign).
    assert eq(2 / (2 * x + 31), -2 / (-2 * x - 31))
    # Candidate complex where the gold is real: wrong.
    assert not eq(sp.Pow(x**3, sp.Rational(1, 3), evaluate=False), x)  # principal root: complex for x < 0
    assert eq(sp.Pow(sp.sqrt(x), 2, evaluate=False), x)                # (i sqrt|x|)^2 = x: still real
    assert not eq(sp.log(x), sp.log(sp.Abs(x)))


def test_domain_of_asin_derivative():
    gold = gold_values(1 / sp.sqrt(1 - x**2))
    assert len(gold.points) >= MIN_POINTS and not gold.complex_mode
    assert all(abs(float(p)) < 1 for p, _ in gold.points)
    assert equivalent(sp.sqrt(1 - x**2) / (1 - x**2), gold)


def test_complex_only_gold_and_symbolic_fallback():
    gold = gold_values(sp.sqrt(-x**2 - 1))         # never real: complex values decide
    assert gold.complex_mode and equivalent(sp.I * sp.sqrt(x**2 + 1), gold)
    assert not equivalent(sp.sqrt(x**2 + 1), gold)
    assert eq(sp.Integer(3), sp.Integer(3)) and not eq(sp.Integer(4), sp.Integer(3))


def test_evaluation_guards():
    c = compile_expression(sp.exp(sp.exp(sp.exp(x))))
    assert evaluate(c, "100")[0] is None                      # overflow is "not finite"
    assert evaluate(compile_expression(1 / x), "0")[0] is None
    v, unstable = evaluate(compile_expression(1 - sp.tanh(x) ** 2), "1000")
    assert unstable                                           # 1 - 1 cancelled every digit
    v, unstable = evaluate(compile_expression(x + 1), "2")
    assert v == 3 and not unstable


def test_equal_is_the_one_identity_test_with_an_undecided_case():
    """`equal` (used by the steps derivations) is `verdict` on the same points: True, False, or
    None where nothing could decide; any single symbol is the variable; two are refused."""
    u = sp.Symbol("u")
    assert equal(sp.sin(u) ** 2 + sp.cos(u) ** 2, sp.Integer(1)) is True
    assert equal(sp.diff(sp.tan(u), u), 1 + sp.tan(u) ** 2) is True
    assert equal(sp.sin(x), sp.cos(x)) is False
    assert equal(sp.Integer(6), sp.Integer(2) * 3) is True and equal(sp.Integer(5), sp.Integer(6)) is False
    # overflows at every point: the reward says "not equivalent", the derivation check "undecided"
    huge = sp.exp(sp.exp(x**2 + 20))
    assert verdict(huge + 1, gold_values(huge)) is None and not equivalent(huge + 1, gold_values(huge))
    assert equal(huge + 1, huge) is None
    assert equal(sp.Derivative(sp.Function("g")(x), x), x) is None   # cannot compile: undecided
    with pytest.raises(ValueError, match="one variable"):
        equal(x + u, x * u)
