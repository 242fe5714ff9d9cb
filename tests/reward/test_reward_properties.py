"""Property tests: a random expression and its sympy rewrites are judged equal; perturbations
of it are judged unequal."""
from __future__ import annotations

import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tsm.math.equivalence import equivalent, gold_values
from tsm.math.parse import parse_expression
from tsm.reward import score

x = sp.Symbol("x")
UNARY = [sp.sin, sp.cos, sp.exp, sp.log, sp.sqrt, sp.tanh, sp.atan, lambda e: e**2,
         lambda e: 1 / e]
BINARY = [sp.Add, sp.Mul, lambda a, b: a - b, lambda a, b: a / b]


@st.composite
def expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()) and depth < 3:
        c = draw(st.integers(-9, 9).filter(lambda n: n != 0))
        return c * x + draw(st.integers(-5, 5))
    if draw(st.booleans()):
        return draw(st.sampled_from(UNARY))(draw(expressions(depth=depth - 1)))
    a, b = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    return draw(st.sampled_from(BINARY))(a, b)


def usable(e: sp.Expr) -> bool:
    return e.has(x) and not e.has(sp.zoo, sp.nan, sp.oo, sp.I) and len(str(e)) < 300


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(expressions())
def test_rewrites_are_equal(f):
    d = sp.diff(f, x)
    assume(usable(d))
    gold = gold_values(d)
    assume(gold.points)
    for r in (sp.expand(d), sp.together(d), d.rewrite(sp.exp), sp.powsimp(d)):
        if len(str(r)) > 600 or r.has(sp.I, sp.zoo, sp.nan):
            continue
        assert equivalent(parse_expression(str(r)), gold), (d, r)
    assert score("\\boxed{" + sp.latex(d) + "}", str(d)).correct


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(expressions(), st.sampled_from(["sign", "scale", "shift", "tiny", "power"]),
       st.integers(1, 7))
def test_perturbations_are_unequal(f, how, k):
    d = sp.diff(f, x)
    assume(usable(d) and d != 0)
    gold = gold_values(d)
    assume(len(gold.points) >= 4)
    wrong = {"sign": -d, "scale": d * sp.Rational(k + 1, k), "shift": d + k,
             "tiny": d + sp.Rational(1, 10**12) * x**k, "power": d + x**k}[how]
    assume(wrong.has(x) or how != "sign")
    assert not equivalent(parse_expression(str(wrong)), gold), (d, wrong)
