"""The sampler reproduces Diff-TSM's distribution: op weights, template choice, simplification."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import sympy

from tsm.math import sampling as S

X = S.X


class RecordingRandom(random.Random):
    """Records every population element ``choices`` returns (which op the sampler picked)."""

    def __init__(self, seed: int):
        super().__init__(seed)
        self.picked: Counter[str] = Counter()

    def choices(self, population, weights=None, *, cum_weights=None, k=1):
        out = super().choices(population, weights, cum_weights=cum_weights, k=k)
        self.picked.update(out)
        return out


def within(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count / n - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_weights_are_the_issues_tables():
    assert S.UNARY_WEIGHTS == {
        "combine": 0.15, "sin": 0.15, "cos": 0.15, "exp": 0.12, "tan": 0.08, "log": 0.08,
        "sqrt": 0.08, "sec": 0.04, "csc": 0.04, "cot": 0.04, "sinh": 0.04, "cosh": 0.04,
        "tanh": 0.04, "inverse": 0.04, "square": 0.04}
    assert S.BINARY_WEIGHTS == {"add": 0.30, "mul": 0.30, "sub": 0.30, "div": 0.09, "pow": 0.01}
    # Diff-TSM's unary weights sum to 1.13; random.choices normalises them, as its code does
    assert math.isclose(sum(S.UNARY_WEIGHTS.values()), 1.13)
    assert (S.STOP_PROB, S.UNARY_PROB, S.UNARY_CONSTANT_RANGE) == (0.2, 0.4, 5)


def test_tree_op_frequencies_match_weights():
    rng = RecordingRandom(7)
    for _ in range(1500):
        S.random_tree(rng)
    unary = {k: rng.picked[k] for k in S.UNARY_WEIGHTS}
    binary = {k: rng.picked[k] for k in S.BINARY_WEIGHTS}
    n_u, n_b = sum(unary.values()), sum(binary.values())
    assert n_u > 1500 and n_b > 2000
    total = sum(S.UNARY_WEIGHTS.values())
    for name, w in S.UNARY_WEIGHTS.items():
        assert within(unary[name], n_u, w / total), (name, unary[name] / n_u, w / total)
    # binary steps include the "combine" unary step's own binary op: same weights
    for name, w in S.BINARY_WEIGHTS.items():
        assert within(binary[name], n_b, w), (name, binary[name] / n_b, w)


def test_tree_shape_stop_unary_binary_shares():
    # depth-1 trees: stop at x w.p. 0.2, else a unary step (0.4) or a binary step (0.6) on x
    n, stops, unary = 6000, 0, 0
    rng = RecordingRandom(3)
    for _ in range(n):
        rng.picked.clear()
        S.random_tree(rng, max_depth=1)
        stops += rng.picked.total() == 0
        unary += any(k in S.UNARY_WEIGHTS for k in rng.picked)
    assert within(stops, n, 0.2)
    assert within(unary, n, 0.8 * 0.4)


def test_template_family_and_template_choice_uniform():
    rng = random.Random(11)
    n = 20000
    draws = [S.draw_template(rng) for _ in range(n)]
    families = Counter(S.TEMPLATES[i][0] for i, _ in draws)
    for family in S.TEMPLATE_TYPES:
        assert within(families[family], n, 0.2), families
    trig = Counter(i for i, _ in draws if S.TEMPLATES[i][0] == "trigonometric")
    assert len(trig) == 13 and within(min(trig.values()), families["trigonometric"], 1 / 13)
    for _, params in draws[:2000]:
        assert all(-40 <= params[k] <= 40 for k in "abcd")
        assert all(1 <= params[k] <= 5 for k in "nmo")
    assert {p["a"] for _, p in draws} == set(range(-40, 41))


def test_template_family_sizes():
    sizes = Counter(family for family, _, _ in S.TEMPLATES)
    assert sizes == {"polynomial": 2, "trigonometric": 13, "exponential": 5, "logarithmic": 4,
                     "composite": 5}


@pytest.mark.parametrize("index", range(len(S.TEMPLATES)))
def test_templates_build_what_sympify_reads(index):
    """Direct construction == ``sympify`` of Diff-TSM's template string (negative and 0 too)."""
    rng = random.Random(index)
    text = S.TEMPLATES[index][1]
    for trial in range(6):
        params = {k: rng.randint(-40, 40) for k in "abcd"}
        params.update({k: rng.randint(1, 5) for k in "nmo"})
        if trial == 0:
            params.update(b=-3, c=-7)
        if trial == 1:
            params.update(b=0, d=0)
        assert S.build_template(index, params) == sympy.sympify(text.format(**params)), params


def test_simplicity_is_template_probability():
    rng = random.Random(5)
    n = 1500
    kinds = Counter(S.sample_function(rng, simplicity=0.3).function_type for _ in range(n))
    assert within(n - kinds[S.TREE_TYPE], n, 0.3)
    assert set(kinds) <= set(S.FUNCTION_TYPES)
    assert {S.sample_function(rng, simplicity=1.0).function_type for _ in range(50)} <= set(S.TEMPLATE_TYPES)
    assert {S.sample_function(rng, simplicity=0.0).function_type for _ in range(50)} == {S.TREE_TYPE}


def test_seeded_and_never_touches_global_rng():
    random.seed(1234)
    state = random.getstate()
    a = [S.sample_function(random.Random(9), simplicity=0.5).expr for _ in range(3)]
    b = [S.sample_function(random.Random(9), simplicity=0.5).expr for _ in range(3)]
    assert a == b
    rng = random.Random(2)
    many = {S.sample_function(rng, simplicity=0.5).expr for _ in range(40)}
    assert len(many) > 10
    assert random.getstate() == state


def test_non_finite_steps_keep_the_left_operand():
    class Always(random.Random):
        def __init__(self, name):
            super().__init__(0)
            self.name = name

        def choices(self, population, weights=None, **kw):
            return [self.name]

    assert S._binary(Always("div"), X, sympy.Integer(0)) == X  # x/0 = zoo: kept x
    assert S._binary(Always("div"), X, X) == 1
    assert S._unary(Always("log"), sympy.Integer(0)) == 0  # log(0) = zoo: unchanged


def test_is_finite_agrees_with_diff_tsm_on_draws():
    rng = random.Random(21)
    for _ in range(150):
        expr = S.random_tree(rng)
        full = not (expr.has(sympy.nan, sympy.oo, sympy.zoo) or expr.is_infinite)
        assert S.is_finite(expr) == full
    assert not S.is_finite(sympy.zoo * X) and not S.is_finite(X + sympy.oo)


def _diff_tsm_simple_simplify(expr):
    """Diff-TSM's procedure, literally: three rounds, every pass, no shortcuts."""
    for _ in range(3):
        expr = sympy.logcombine(expr)
        expr = sympy.signsimp(expr)
        expr = sympy.collect(expr, X)
        expr = sympy.rcollect(expr, X)
        expr = sympy.trigsimp(expr)
        expr = sympy.exptrigsimp(expr)
        expr = sympy.powsimp(expr)
    return expr


def test_exact_mode_is_diff_tsm_simple_simplify():
    rng = random.Random(8)
    trees = [S.random_tree(rng) for _ in range(12)]
    trees += [sympy.log(X) * 3 + sympy.log(2) * 5, sympy.sin(X) ** 2 + sympy.cos(X) ** 2 + X,
              sympy.exp(X) + sympy.exp(-X), 27 ** (2 * X + 1) * 9]
    for raw in trees:
        assert S.simple_simplify(raw) == _diff_tsm_simple_simplify(raw), raw


def test_fast_templates_agree_with_exact_on_flagged_and_cheap_cases():
    # the cases _template_changes flags must come out as "exact" computes them
    base = next(i for i, t in enumerate(S.TEMPLATES) if t[1] == "{a}*{b}^({c}*x + {d})")
    params = {"a": 9, "b": -9, "c": 3, "d": 2, "n": 1, "m": 1, "o": 1}
    assert S.simplify_template(base, params) == _diff_tsm_simple_simplify(S.build_template(base, params))
    quad = next(i for i, t in enumerate(S.TEMPLATES) if t[1] == "{a}*E^({b}*x^2 + {c}*x + {d})")
    params = {"a": -4, "b": 33, "c": 25, "d": 0, "n": 1, "m": 1, "o": 1}
    assert S.simplify_template(quad, params) == sympy.exp(X * (33 * X + 25)) * -4
    log = next(i for i, t in enumerate(S.TEMPLATES) if t[1] == "{a}*log({b}*x + {c})")
    params = {"a": 2, "b": 0, "c": 3, "d": 0, "n": 1, "m": 1, "o": 1}
    assert S.simplify_template(log, params) == sympy.log(9)
    # a sample of the unflagged draws: fixed points of Diff-TSM's passes
    rng = random.Random(4)
    checked = 0
    while checked < 12:
        index, params = S.draw_template(rng)
        if S.TEMPLATES[index][0] in ("trigonometric", "composite") or S._template_changes(index, params):
            continue
        raw = S.build_template(index, params)
        assert S.simplify_template(index, params) == S.simple_simplify(raw, with_trig=True) == raw
        checked += 1


@pytest.mark.slow
def test_fast_mode_agreement_rates():
    """Per-expression agreement of "fast" with "exact" (measured: templates 99.7%, trees 96.8%)."""
    rng = random.Random(12)
    same = total = 0
    for _ in range(600):
        index, params = S.draw_template(rng)
        same += S.simplify_template(index, params, "fast") == S.simplify_template(index, params, "exact")
        total += 1
    assert same / total >= 0.99
    same = total = 0
    for _ in range(300):
        raw = S.random_tree(rng)
        same += S.simple_simplify(raw, with_trig=False) == S.simple_simplify(raw, with_trig=True)
        total += 1
    assert same / total >= 0.93


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="simplify mode"):
        S.sample_function(random.Random(0), mode="slow")
