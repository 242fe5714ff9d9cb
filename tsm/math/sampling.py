"""Random functions of ``x`` drawn from Diff-TSM's distribution (AvataarAILabs/tsm, ``tslm/data.py``).

Two families, mixed by ``simplicity`` (the probability of a template):

* **Templates** (``polynomial``, ``trigonometric``, ``exponential``, ``logarithmic``,
  ``composite``): a family is chosen uniformly, then one of its templates uniformly; integer
  coefficients are uniform in ``[-max_coefficient, max_coefficient]`` and powers in
  ``[1, max_power]``. Templates are built directly from sympy objects with the same operator
  precedence as Diff-TSM's template strings (``"{a}*{b}^({c}*x + {d})"`` with ``b = -3`` means
  ``a*(-(3**(c*x + d)))``, as Python's precedence reads it), so no string is ever parsed.
* **Random trees** (``composite-complex``): depth at most ``max_depth``; at each level stop with
  ``x`` at probability 0.2, else a unary step (40%) or a binary step (60%) with the weights of
  :data:`UNARY_WEIGHTS` / :data:`BINARY_WEIGHTS`. A unary step is skipped when its operand has
  no ``x``; a binary step keeps its left operand when neither side has ``x``; an operation whose
  result is not finite (``1/0``, ``log(0)``) keeps its left operand, as Diff-TSM does. The
  "combine with an integer" unary step draws the integer from ``[-5, 5]`` whatever
  ``max_coefficient`` is (Diff-TSM calls it with its default of 5).

After drawing, Diff-TSM runs ``simple_simplify``: three rounds of logcombine, signsimp,
collect(x), rcollect(x), trigsimp, exptrigsimp, powsimp (~66 ms per example, its bottleneck).
:func:`simple_simplify` and :func:`simplify_template` reproduce it in two modes:

* ``"exact"``: the same result, computed faster: a round whose output equals its input is a
  fixed point, so later rounds are skipped; logcombine / trigsimp / exptrigsimp are skipped on
  expressions without a log / trig-or-hyperbolic / exp-trig-hyperbolic node (each pass returns
  its input unchanged there, by their source); results are memoised per process.
* ``"fast"`` (default for datasets): on random trees the cheap passes exactly, without
  trigsimp and exptrigsimp, which cost ~90% of the time and change a few percent of trees
  (argument factoring, ``cos(x)*tan(x) -> sin(x)``, ...); on templates all passes run only
  for the draws that :func:`_template_changes` flags (the others are fixed points).
  ``experiments/data_fidelity`` shows the dataset distribution stays within tolerance of
  Diff-TSM's own samples; ``tests/math/test_sampling.py`` checks the per-expression agreement
  with ``"exact"`` (measured 99.7% of templates, 96.8% of trees; slow-marked test).

All randomness comes from an explicit :class:`random.Random`; the global RNG is never used.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import sympy
from sympy.functions.elementary.hyperbolic import HyperbolicFunction
from sympy.functions.elementary.trigonometric import TrigonometricFunction

X = sympy.Symbol("x")

TEMPLATE_TYPES = ("polynomial", "trigonometric", "exponential", "logarithmic", "composite")
TREE_TYPE = "composite-complex"
FUNCTION_TYPES = (*TEMPLATE_TYPES, TREE_TYPE)  # Diff-TSM's; course draws add "course"
SIMPLIFY_MODES = ("fast", "exact")

STOP_PROB = 0.2  # a tree level ends in ``x``
UNARY_PROB = 0.4  # otherwise unary (else binary)
UNARY_CONSTANT_RANGE = 5  # the integer of the "combine" unary step is uniform in [-5, 5]

#: unary step -> weight (Diff-TSM's table; "combine" = binary op with a random integer).
UNARY_WEIGHTS: dict[str, float] = {
    "combine": 0.15, "sin": 0.15, "cos": 0.15, "exp": 0.12, "tan": 0.08, "log": 0.08,
    "sqrt": 0.08, "sec": 0.04, "csc": 0.04, "cot": 0.04, "sinh": 0.04, "cosh": 0.04,
    "tanh": 0.04, "inverse": 0.04, "square": 0.04,
}
#: binary step -> weight.
BINARY_WEIGHTS: dict[str, float] = {"add": 0.30, "mul": 0.30, "sub": 0.30, "div": 0.09, "pow": 0.01}

_UNARY_FUNCS: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
    "sin": sympy.sin, "cos": sympy.cos, "exp": sympy.exp, "tan": sympy.tan, "log": sympy.log,
    "sqrt": sympy.sqrt, "sec": sympy.sec, "csc": sympy.csc, "cot": sympy.cot,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "inverse": lambda f: 1 / f, "square": lambda f: f**2,
}
_BINARY_FUNCS: dict[str, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    "add": lambda a, b: a + b, "mul": lambda a, b: a * b, "sub": lambda a, b: a - b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a**b,
}


@dataclass(frozen=True)
class SampledFunction:
    """A drawn function after simplification, with its family and template (or ``None``)."""

    expr: sympy.Expr
    function_type: str
    template: str | None


_NOT_FINITE = (sympy.nan, sympy.oo, sympy.zoo, -sympy.oo)


def is_finite(expr: sympy.Expr) -> bool:
    """No nan/oo/zoo node: Diff-TSM's ``is_finite`` without its ``expr.is_infinite`` query.

    For functions of a symbol without assumptions, ``is_infinite`` is True only where such a
    node exists (checked in the tests on sampled draws), and the assumption query costs more
    than building the node, so it is left out.
    """
    return not expr.has(*_NOT_FINITE)


# ----------------------------------------------------------------------------- random trees


#: unary steps beyond Diff-TSM's table (issue 22's coverage), off unless ``tree_weights`` names them:
#: inverse trig and hyperbolic functions, ``b^f`` and ``log_b f`` for a base b other than e, and
#: roots ``f^(1/n)`` of order 3..5 (the base or order is drawn when the step is taken).
EXTRA_BASES = (2, 3, 5, 10)
EXTRA_LOG_BASES = (2, 3, 10)
EXTRA_ROOTS = (3, 4, 5)


def _ignoring_rng(fn: Callable[[sympy.Expr], sympy.Expr]) -> Callable[[random.Random, sympy.Expr], sympy.Expr]:
    return lambda rng, f: fn(f)


_EXTRA_UNARY: dict[str, Callable[[random.Random, sympy.Expr], sympy.Expr]] = {
    **{name: _ignoring_rng(getattr(sympy, name))
       for name in ("asin", "acos", "atan", "acot", "asec", "acsc", "asinh", "acosh", "atanh")},
    "exp_base": lambda rng, f: sympy.Integer(rng.choice(EXTRA_BASES)) ** f,
    "log_base": lambda rng, f: sympy.log(f) / sympy.log(rng.choice(EXTRA_LOG_BASES)),
    "root": lambda rng, f: f ** sympy.Rational(1, rng.choice(EXTRA_ROOTS)),
}
EXTRA_UNARY = tuple(_EXTRA_UNARY)


@dataclass(frozen=True)
class TreeWeights:
    """The operator tables of a random tree: names and weights of unary and binary steps."""

    unary: tuple[str, ...] = tuple(UNARY_WEIGHTS)
    unary_weights: tuple[float, ...] = tuple(UNARY_WEIGHTS.values())
    binary: tuple[str, ...] = tuple(BINARY_WEIGHTS)
    binary_weights: tuple[float, ...] = tuple(BINARY_WEIGHTS.values())


DIFF_TSM_WEIGHTS = TreeWeights()


def tree_weights(overrides: dict[str, float] | None = None) -> TreeWeights:
    """Diff-TSM's tables with ``overrides`` (step name -> weight): a Diff-TSM step gets a new weight
    (``pow: 0.05`` for more variable exponents f^g), a step of :data:`EXTRA_UNARY` joins the unary
    table. Weights are relative (``random.choices``); 0 removes a step. ValueError on an unknown
    name or a negative weight."""
    if not overrides:
        return DIFF_TSM_WEIGHTS
    unary, binary = dict(UNARY_WEIGHTS), dict(BINARY_WEIGHTS)
    for name, weight in overrides.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"tree_weights.{name} must be a weight >= 0, got {weight!r}")
        if name in binary:
            binary[name] = float(weight)
        elif name in unary or name in _EXTRA_UNARY:
            unary[name] = float(weight)
        else:
            raise ValueError(f"tree_weights: unknown step {name!r}; steps are "
                             f"{sorted([*UNARY_WEIGHTS, *BINARY_WEIGHTS, *EXTRA_UNARY])}")
    if not any(unary.values()) or not any(binary.values()):
        raise ValueError("tree_weights: the unary and the binary table each need a positive weight")
    return TreeWeights(tuple(unary), tuple(unary.values()), tuple(binary), tuple(binary.values()))


def _binary(rng: random.Random, a: sympy.Expr, b: sympy.Expr,
            weights: TreeWeights = DIFF_TSM_WEIGHTS) -> sympy.Expr:
    op = rng.choices(weights.binary, weights=weights.binary_weights)[0]
    out = _BINARY_FUNCS[op](a, b)
    return out if is_finite(out) else a


def _unary(rng: random.Random, f: sympy.Expr, weights: TreeWeights = DIFF_TSM_WEIGHTS) -> sympy.Expr:
    op = rng.choices(weights.unary, weights=weights.unary_weights)[0]
    if op == "combine":
        k = sympy.Integer(rng.randint(-UNARY_CONSTANT_RANGE, UNARY_CONSTANT_RANGE))
        out = _binary(rng, f, k, weights)
    elif op in _EXTRA_UNARY:
        out = _EXTRA_UNARY[op](rng, f)
    else:
        out = _UNARY_FUNCS[op](f)
    return out if is_finite(out) else f


def random_tree(rng: random.Random, max_depth: int = 4, depth: int = 0,
                weights: TreeWeights = DIFF_TSM_WEIGHTS) -> sympy.Expr:
    """One random expression tree (before simplification), as Diff-TSM's ``compose_functions``
    (with ``weights``' operator tables; Diff-TSM's by default)."""
    if depth >= max_depth or rng.random() < STOP_PROB:
        return X
    if rng.random() < UNARY_PROB:
        f = random_tree(rng, max_depth, depth + 1, weights)
        return _unary(rng, f, weights) if f.has(X) else f
    f1 = random_tree(rng, max_depth, depth + 1, weights)
    f2 = random_tree(rng, max_depth, depth + 1, weights)
    return _binary(rng, f1, f2, weights) if (f1.has(X) or f2.has(X)) else f1


# ----------------------------------------------------------------------------- templates

_I = sympy.Integer
_E = sympy.exp
_sin, _cos, _log = sympy.sin, sympy.cos, sympy.log

# (family, template text as Diff-TSM writes it, builder(a, b, c, d, n, m, o) with sympy Integers)
TEMPLATES: tuple[tuple[str, str, Callable[..., sympy.Expr]], ...] = (
    ("polynomial", "{a}*x**{n} + {b}*x**{m}", lambda a, b, c, d, n, m, o: a * X**n + b * X**m),
    ("polynomial", "{a}*x**{n} + {b}*x**{m} + {c}*x**{o} + {d}",
     lambda a, b, c, d, n, m, o: a * X**n + b * X**m + c * X**o + d),
    ("trigonometric", "{a}*sin({b}*x + {c})", lambda a, b, c, d, n, m, o: a * _sin(b * X + c)),
    ("trigonometric", "{a}*cos({b}*x + {c})", lambda a, b, c, d, n, m, o: a * _cos(b * X + c)),
    ("trigonometric", "{a}*tan({b}*x + {c})", lambda a, b, c, d, n, m, o: a * sympy.tan(b * X + c)),
    ("trigonometric", "{a}*cot({b}*x + {c})", lambda a, b, c, d, n, m, o: a * sympy.cot(b * X + c)),
    ("trigonometric", "{a}*sec({b}*x + {c})", lambda a, b, c, d, n, m, o: a * sympy.sec(b * X + c)),
    ("trigonometric", "{a}*csc({b}*x + {c})", lambda a, b, c, d, n, m, o: a * sympy.csc(b * X + c)),
    ("trigonometric", "{a}*sin({b}*x)*cos({c}*x)",
     lambda a, b, c, d, n, m, o: a * _sin(b * X) * _cos(c * X)),
    ("trigonometric", "{d}*sin({a}*x)*sin({b}*x + {c})",
     lambda a, b, c, d, n, m, o: d * _sin(a * X) * _sin(b * X + c)),
    ("trigonometric", "{d}*cos({a}*x)*cos({b}*x + {c})",
     lambda a, b, c, d, n, m, o: d * _cos(a * X) * _cos(b * X + c)),
    ("trigonometric", "{d}*sin({a}*x)*cos({b}*x + {c})",
     lambda a, b, c, d, n, m, o: d * _sin(a * X) * _cos(b * X + c)),
    ("trigonometric", "{d}*cos({a}*x)*sin({b}*x + {c})",
     lambda a, b, c, d, n, m, o: d * _cos(a * X) * _sin(b * X + c)),
    ("trigonometric", "{a}*sin({b}*x^2 + {c}*x + {d})",
     lambda a, b, c, d, n, m, o: a * _sin(b * X**2 + c * X + d)),
    ("trigonometric", "{a}*cos({b}*x^2 + {c}*x + {d})",
     lambda a, b, c, d, n, m, o: a * _cos(b * X**2 + c * X + d)),
    ("exponential", "{a}*E^({b}*x + {c})", lambda a, b, c, d, n, m, o: a * _E(b * X + c)),
    # "-3^(...)" is -(3^(...)) in the template's (Python's) precedence
    ("exponential", "{a}*{b}^({c}*x + {d})",
     lambda a, b, c, d, n, m, o: a * (-(abs(b) ** (c * X + d)) if b < 0 else b ** (c * X + d))),
    ("exponential", "{a}*x*E^({b}*x + {d})", lambda a, b, c, d, n, m, o: a * X * _E(b * X + d)),
    ("exponential", "{a}*E^({b}*x) + {c}*E^({d}*x)",
     lambda a, b, c, d, n, m, o: a * _E(b * X) + c * _E(d * X)),
    ("exponential", "{a}*E^({b}*x^2 + {c}*x + {d})",
     lambda a, b, c, d, n, m, o: a * _E(b * X**2 + c * X + d)),
    ("logarithmic", "{a}*log({b}*x + {c})", lambda a, b, c, d, n, m, o: a * _log(b * X + c)),
    ("logarithmic", "{a}*x*log({b}*x + {d})", lambda a, b, c, d, n, m, o: a * X * _log(b * X + d)),
    ("logarithmic", "{a}*log({b}*x^2 + {c}*x + {d})",
     lambda a, b, c, d, n, m, o: a * _log(b * X**2 + c * X + d)),
    ("logarithmic", "{a}*log({b}*x)/{c}*x + {d}",
     lambda a, b, c, d, n, m, o: a * _log(b * X) / c * X + d),
    ("composite", "{a}*sin({b}*x)*E^({c}*x + {d})",
     lambda a, b, c, d, n, m, o: a * _sin(b * X) * _E(c * X + d)),
    ("composite", "{a}*E^({b}*x + {d})*x^{n}", lambda a, b, c, d, n, m, o: a * _E(b * X + d) * X**n),
    ("composite", "{a}*sin({b}*x)*cos({c}*x) + {d}*E^x",
     lambda a, b, c, d, n, m, o: a * _sin(b * X) * _cos(c * X) + d * _E(X)),
    ("composite", "{a}*log({b}*x + {d})*cos({c}*x)",
     lambda a, b, c, d, n, m, o: a * _log(b * X + d) * _cos(c * X)),
    ("composite", "{a}*sin({b}*x^2 + {d})*log({c}*x)",
     lambda a, b, c, d, n, m, o: a * _sin(b * X**2 + d) * _log(c * X)),
)
_BY_FAMILY: dict[str, list[int]] = {t: [i for i, row in enumerate(TEMPLATES) if row[0] == t]
                                    for t in TEMPLATE_TYPES}


def draw_template(rng: random.Random, max_coefficient: int = 40, max_power: int = 5
                  ) -> tuple[int, dict[str, int]]:
    """Pick a template index and its parameters (all seven drawn, as Diff-TSM does)."""
    family = rng.choice(TEMPLATE_TYPES)
    index = rng.choice(_BY_FAMILY[family])
    params = {k: rng.randint(-max_coefficient, max_coefficient) for k in "abcd"}
    params.update({k: rng.randint(1, max_power) for k in "nmo"})
    return index, params


def build_template(index: int, params: dict[str, int]) -> sympy.Expr:
    """The template's expression, as ``sympify(text.format(**params))`` evaluates it."""
    return TEMPLATES[index][2](*(_I(params[k]) for k in "abcdnmo"))


# ----------------------------------------------------------------------------- course templates

COURSE_TYPE = "course"
_R = sympy.Rational


def _k(rng: random.Random) -> sympy.Integer:
    """A textbook coefficient: a nonzero integer in [-9, 9]."""
    return _I(rng.choice([v for v in range(-9, 10) if v]))


def _p(rng: random.Random) -> sympy.Integer:
    return _I(rng.randint(1, 9))


def _n(rng: random.Random) -> sympy.Integer:
    return _I(rng.randint(2, 5))


def _inv(rng: random.Random) -> Callable[[sympy.Expr], sympy.Expr]:
    return rng.choice([sympy.asin, sympy.acos, sympy.atan, sympy.acot, sympy.asec, sympy.acsc])


def _trig(rng: random.Random) -> Callable[[sympy.Expr], sympy.Expr]:
    return rng.choice([sympy.sin, sympy.cos, sympy.tan])


def _hyp(rng: random.Random) -> Callable[[sympy.Expr], sympy.Expr]:
    return rng.choice([sympy.asinh, sympy.acosh, sympy.atanh])


def _choice(rng: random.Random, options):
    return rng.choice(list(options))


def _inner(rng: random.Random) -> sympy.Expr:
    """A small inner function: k x + c, k x^n, sqrt(x), e^x or x^n + c."""
    return rng.choice([
        lambda: _k(rng) * X + _k(rng), lambda: _k(rng) * X**_n(rng), lambda: sympy.sqrt(X),
        lambda: sympy.exp(X), lambda: X**_n(rng) + _p(rng), lambda: _p(rng) * X,
    ])()


#: (kind, builder(rng)): textbook exercises with the operators Diff-TSM's generator never emits.
#: The kinds are those of the hand-written OOD set (``data=ood``), whose functions a recipe
#: excludes by canonical form; coefficients are small (|k| <= 9), as in a course.
COURSE_TEMPLATES: tuple[tuple[str, Callable[[random.Random], sympy.Expr]], ...] = (
    ("inverse-trig", lambda r: _k(r) * _inv(r)(_inner(r))),
    ("inverse-trig", lambda r: X**_n(r) * _inv(r)(_k(r) * X)),
    ("inverse-trig", lambda r: _inv(r)(_inner(r)) ** _n(r)),
    ("inverse-trig", lambda r: _inv(r)(_k(r) / X + _k(r))),
    ("inverse-trig", lambda r: sympy.atan((X + _p(r)) / (X - _p(r)))),
    ("inverse-trig", lambda r: _hyp(r)(_inner(r))),
    ("power-tower", lambda r: X ** (_k(r) * X)),
    ("power-tower", lambda r: X ** _trig(r)(_p(r) * X)),
    ("power-tower", lambda r: _trig(r)(_p(r) * X) ** X),
    ("power-tower", lambda r: (X**_n(r) + _p(r)) ** (_p(r) * X)),
    ("power-tower", lambda r: X ** _choice(r, [sympy.log(X), sympy.exp(X), 1 / X, X**2, sympy.sqrt(X)])),
    ("power-tower", lambda r: sympy.log(_p(r) * X) ** X),
    ("nested-quotient", lambda r: 1 / (_p(r) + _k(r) / X)),
    ("nested-quotient", lambda r: X / (_p(r) + X / (_p(r) + X))),
    ("nested-quotient", lambda r: (X + _p(r) / X) / (X - _p(r) / X)),
    ("nested-quotient", lambda r: 1 / (X + 1 / (X + _p(r)))),
    ("nested-quotient", lambda r: _trig(r)(X) / (_p(r) + _trig(r)(X) / X)),
    ("product", lambda r: X**_n(r) * sympy.exp(_k(r) * X) * _trig(r)(_k(r) * X)),
    ("product", lambda r: X**_n(r) * sympy.log(X) * _trig(r)(_k(r) * X)),
    ("product", lambda r: sympy.exp(_k(r) * X) * _trig(r)(_k(r) * X) * _trig(r)(_k(r) * X)),
    ("product", lambda r: (X + _k(r)) * (X + _k(r)) * (X + _k(r))),
    ("product", lambda r: sympy.sqrt(X) * sympy.exp(_k(r) * X) * sympy.log(X)),
    ("product", lambda r: X**_n(r) * sympy.exp(X) * _inv(r)(X)),
    ("chain", lambda r: _trig(r)(_trig(r)(_trig(r)(_k(r) * X)))),
    ("chain", lambda r: sympy.exp(_trig(r)(_k(r) * X**_n(r)))),
    ("chain", lambda r: sympy.log(_p(r) + _trig(r)(sympy.exp(X)))),
    ("chain", lambda r: _trig(r)(sympy.sqrt(sympy.exp(X) + _p(r)))),
    ("chain", lambda r: _trig(r)(sympy.log(X**_n(r) + _p(r))) ** _n(r)),
    ("chain", lambda r: sympy.sqrt(_p(r) + _trig(r)(_k(r) * X) ** 2)),
    ("chain", lambda r: sympy.log(sympy.log(_p(r) * X))),
    ("log-quotient", lambda r: sympy.log((X + _k(r)) / (X + _k(r)))),
    ("log-quotient", lambda r: sympy.log(X**_n(r) / (X**2 + _p(r)))),
    ("log-quotient", lambda r: sympy.log((X**2 + _p(r)) / (X**2 + _p(r)))),
    ("log-quotient", lambda r: sympy.log(sympy.sqrt((_p(r) + X) / (_p(r) - X)))),
    ("log-quotient", lambda r: sympy.log((1 + _trig(r)(X)) / (1 - _trig(r)(X)))),
    ("radical", lambda r: (_k(r) * X**_n(r) + _k(r)) ** _R(1, _choice(r, [2, 3, 4, 5]))),
    ("radical", lambda r: sympy.sqrt(X + sympy.sqrt(_p(r) * X))),
    ("radical", lambda r: sympy.sqrt(_p(r) + sympy.sqrt(_p(r) + X))),
    ("radical", lambda r: X * sympy.sqrt(_p(r) - X**2)),
    ("radical", lambda r: sympy.sqrt((X + _k(r)) / (X + _k(r)))),
    ("radical", lambda r: 1 / (X**_n(r) + _p(r)) ** _R(1, _choice(r, [2, 3]))),
    ("log-base", lambda r: _k(r) * sympy.log(_inner(r)) / sympy.log(_choice(r, EXTRA_LOG_BASES))),
    ("log-base", lambda r: X**_n(r) * sympy.log(X) / sympy.log(_choice(r, EXTRA_LOG_BASES))),
    ("exp-base", lambda r: _I(_choice(r, EXTRA_BASES)) ** _inner(r)),
    ("exp-base", lambda r: _k(r) * _I(_choice(r, EXTRA_BASES)) ** _trig(r)(_p(r) * X)),
    ("exp-base", lambda r: X**_n(r) * _I(_choice(r, EXTRA_BASES)) ** (_k(r) * X)),
)
COURSE_KINDS = tuple(dict.fromkeys(kind for kind, _ in COURSE_TEMPLATES))
_COURSE_BY_KIND = {k: [i for i, (kind, _) in enumerate(COURSE_TEMPLATES) if kind == k] for k in COURSE_KINDS}


def weights_over_kinds(key: str, weights: dict | None, kinds: tuple[str, ...]) -> tuple[float, ...] | None:
    """``{kind: relative weight}`` over ``kinds`` (a kind left out weighs 1.0) as a tuple in the
    order of ``kinds``; ``None`` or an empty mapping is ``None`` (the uniform draw, unchanged).
    Unknown kinds, negative or non-numeric weights, and an all-zero mix are a ``ValueError`` that
    names ``key`` once."""
    if not weights:
        return None
    unknown = sorted(set(weights) - set(kinds))
    if unknown:
        raise ValueError(f"{key}: unknown kind(s) {unknown}; the kinds are {list(kinds)}")
    out = []
    for kind in kinds:
        w = weights.get(kind, 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ValueError(f"{key}: {kind} must weigh a number >= 0, got {w!r}")
        out.append(float(w))
    if sum(out) <= 0:
        raise ValueError(f"{key}: the weights sum to 0")
    return tuple(out)


def course_kind_weights(weights: dict | None) -> tuple[float, ...] | None:
    """``{kind: relative weight}`` over :data:`COURSE_KINDS` as the tuple :func:`course_function`
    takes (see :func:`weights_over_kinds`; ``None``: the draw of the shipped course stream and course test)."""
    return weights_over_kinds("course_kinds", weights, COURSE_KINDS)


# ---- composed course exercises: the same kinds built recursively to random depth ----
def _atom(rng: random.Random) -> sympy.Expr:
    """A building block of a composed exercise: x, x + c, k x + c, x^n, x^2 + c, e^x, e^{kx}, log x,
    a trig function of p x, sqrt(x) or sqrt(x^2 + c)."""
    return rng.choice([
        lambda: X, lambda: X + _p(rng), lambda: _k(rng) * X + _k(rng), lambda: X**_n(rng),
        lambda: X**2 + _p(rng), lambda: sympy.exp(X), lambda: sympy.exp(_k(rng) * X),
        lambda: sympy.log(X), lambda: _trig(rng)(_p(rng) * X), lambda: sympy.sqrt(X),
        lambda: sympy.sqrt(X**2 + _p(rng)),
    ])()


def _small(rng: random.Random) -> sympy.Expr:
    """A constant or a simple atom: what a continued fraction adds at each level."""
    return _p(rng) if rng.random() < 0.5 else rng.choice([X, X + _p(rng), X**2])


def _continued(rng: random.Random, depth: int) -> sympy.Expr:
    """``a + b / (a' + b' / (...))`` nested ``depth`` times."""
    inner = _atom(rng) if depth == 0 else _continued(rng, depth - 1)
    return _small(rng) + rng.choice([_I(1), X, _p(rng)]) / inner


def _nested_quotient(rng: random.Random) -> sympy.Expr:
    depth = rng.randint(1, 3)
    return rng.choice([
        lambda: 1 / _continued(rng, depth),
        lambda: _atom(rng) / _continued(rng, depth),
        lambda: (_small(rng) + _p(rng) / _atom(rng)) / (_small(rng) - _p(rng) / _atom(rng)),
    ])()


def _log_quotient(rng: random.Random) -> sympy.Expr:
    a, b = _atom(rng), _atom(rng) + _p(rng)
    return rng.choice([
        lambda: sympy.log(a ** rng.choice([1, 1, 2, 3]) / b ** rng.choice([1, 1, 2])),
        lambda: sympy.log(sympy.sqrt(a / b)),
        lambda: sympy.log(_atom(rng) * a / b),
    ])()


def _product(rng: random.Random) -> sympy.Expr:
    return _atom(rng) * _atom(rng) * _atom(rng)


_UNARY = (sympy.log, sympy.exp, sympy.sin, sympy.cos, sympy.tan, sympy.sqrt, sympy.atan)


#: f -> g with f(g(u)) = u: a chain never applies f right after g
_UNDOES = {sympy.log: sympy.exp, sympy.exp: sympy.log, sympy.atan: sympy.tan, sympy.tan: sympy.atan}


def _chain(rng: random.Random) -> sympy.Expr:
    expr = _atom(rng)
    last = expr.func  # the atom's own head (e^x, log x, a trig function) counts as the first link
    for _ in range(rng.randint(2, 3)):
        last = rng.choice([u for u in _UNARY if _UNDOES.get(u) is not last])
        expr = last(expr)
    return expr


def _radical(rng: random.Random) -> sympy.Expr:
    if rng.random() < 0.5:  # nested roots, depth 2 or 3
        expr = _atom(rng)
        for _ in range(rng.randint(2, 3)):
            expr = sympy.sqrt(_small(rng) + expr)
        return expr
    quadratic = X**2 + _k(rng) * X + _p(rng)
    return quadratic ** _R(1, rng.choice([2, 3])) * rng.choice([_I(1), _atom(rng)])


def _inverse_trig(rng: random.Random) -> sympy.Expr:
    return _inv(rng)(_atom(rng) / (_atom(rng) + _p(rng)))


#: kind -> a recursive builder (``course_composed``): the course kinds' constructions to random depth
#: with random building blocks, rather than one fixed shape per template.
COURSE_COMPOSERS: dict[str, Callable[[random.Random], sympy.Expr]] = {
    "nested-quotient": _nested_quotient, "log-quotient": _log_quotient, "product": _product,
    "chain": _chain, "radical": _radical, "inverse-trig": _inverse_trig,
}


def course_function(rng: random.Random, kind_weights: tuple[float, ...] | None = None,
                    composed: float = 0.0) -> SampledFunction:
    """A course exercise: a kind (uniformly, or by ``kind_weights`` from :func:`course_kind_weights`),
    then one of its templates, with fresh coefficients; with ``composed`` > 0, that share of the
    kinds that have a composer (:data:`COURSE_COMPOSERS`) is built by it instead (at 0 no extra draw
    is made, so the shipped course stream and course test are unchanged)."""
    kind = rng.choice(COURSE_KINDS) if kind_weights is None else rng.choices(COURSE_KINDS, kind_weights)[0]
    if composed > 0 and kind in COURSE_COMPOSERS and rng.random() < composed:
        return SampledFunction(COURSE_COMPOSERS[kind](rng), COURSE_TYPE, f"{kind}-composed")
    expr = COURSE_TEMPLATES[rng.choice(_COURSE_BY_KIND[kind])][1](rng)
    return SampledFunction(expr, COURSE_TYPE, kind)


# ----------------------------------------------------------------------------- simplification

_TRIG = (TrigonometricFunction, HyperbolicFunction)


def _node_types(expr: sympy.Expr) -> set[type]:
    return {type(node) for node in sympy.preorder_traversal(expr)}


def _has_type(types: set[type], kinds: tuple[type, ...] | type) -> bool:
    return any(issubclass(t, kinds) for t in types)


def _needs_log(types: set[type]) -> bool:
    return _has_type(types, sympy.log)


def _needs_trig(types: set[type]) -> bool:
    return _has_type(types, _TRIG)


def _needs_exptrig(types: set[type]) -> bool:
    return _has_type(types, (*_TRIG, sympy.exp)) or sympy.core.numbers.Exp1 in types


# (name, pass, guard: pass is the identity when guard(node types) is False, by the pass's source)
_PASSES: tuple[tuple[str, Callable[[sympy.Expr], sympy.Expr], Callable[[set[type]], bool] | None], ...] = (
    ("logcombine", sympy.logcombine, _needs_log),
    ("signsimp", sympy.signsimp, None),
    ("collect", lambda f: sympy.collect(f, X), None),
    ("rcollect", lambda f: sympy.rcollect(f, X), None),
    ("trigsimp", sympy.trigsimp, _needs_trig),
    ("exptrigsimp", sympy.exptrigsimp, _needs_exptrig),
    ("powsimp", sympy.powsimp, None),
)
_EXPENSIVE = frozenset({"trigsimp", "exptrigsimp"})
_MEMO: dict[tuple[str, bool, sympy.Expr], sympy.Expr] = {}
_MEMO_LIMIT = 20_000  # entries (~tens of MB); cleared when full, so long-lived workers stay small


def _round(expr: sympy.Expr, with_trig: bool) -> sympy.Expr:
    for name, simplify_pass, guard in _PASSES:
        if name in _EXPENSIVE and not with_trig:
            continue
        if guard is not None and not guard(_node_types(expr)):
            continue
        expr = simplify_pass(expr)
    return expr


def simple_simplify(expr: sympy.Expr, with_trig: bool = True) -> sympy.Expr:
    """Diff-TSM's three rounds of passes; stops at a fixed point (identical result).

    ``with_trig=False`` leaves out trigsimp and exptrigsimp (the "fast" mode's tree path).
    """
    key = ("simple_simplify", with_trig, expr)
    cached = _MEMO.get(key)
    if cached is not None:
        return cached
    out = expr
    for _ in range(3):
        nxt = _round(out, with_trig)
        if nxt == out:
            break
        out = nxt
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[key] = out
    return out


def _template_changes(index: int, params: dict[str, int]) -> bool:
    """Whether Diff-TSM's passes can change this template draw (else they are the identity).

    Found by running ``"exact"`` over many seeded draws of every template, with and without
    zero coefficients (``tests/math/test_sampling.py`` keeps checking it): ``a*b^(cx+d)`` gets
    its base reduced (``27^(..) -> 3^(3..)``, coefficient absorbed); a quadratic argument with
    ``d = 0`` gets factored (``sin(3x^2-23x) -> sin(x(3x-23))``); ``b = 0`` in a log template
    leaves ``a*log(c)``, which logcombine folds into ``log(c^a)``. Everything else is a fixed
    point. One known miss: ``a sin(bx)cos(cx) + d e^x`` becomes a sum of sines in ~4% of
    draws (trigsimp's greedy choice, ~200 ms to compute); "fast" keeps the product there.
    """
    text = TEMPLATES[index][1]
    if text == "{a}*{b}^({c}*x + {d})":
        return True
    if "x^2 + {c}*x + {d}" in text and params["d"] == 0:
        return True
    return "log({b}*x" in text and params["b"] == 0


def simplify_template(index: int, params: dict[str, int], mode: str = "fast") -> sympy.Expr:
    """The template draw after Diff-TSM's ``simple_simplify`` (``"fast"``: see the module doc)."""
    raw = build_template(index, params)
    if mode == "exact" or _template_changes(index, params):
        return simple_simplify(raw, with_trig=True)
    return raw


def sample_function(rng: random.Random, *, simplicity: float = 0.5, max_coefficient: int = 40,
                    max_power: int = 5, max_depth: int = 4, mode: str = "fast",
                    weights: TreeWeights = DIFF_TSM_WEIGHTS, course_share: float = 0.0,
                    course_kinds: tuple[float, ...] | None = None, course_composed: float = 0.0) -> SampledFunction:
    """Draw one function: a template with probability ``simplicity``, else a random tree (with
    ``weights``' operator tables). With ``course_share`` > 0, a course exercise
    (:func:`course_function`, its kinds weighted by ``course_kinds``) comes first with that
    probability (``course_composed``: the share built by :data:`COURSE_COMPOSERS`); at 0 no extra
    draw is made, so Diff-TSM's stream is unchanged."""
    if mode not in SIMPLIFY_MODES:
        raise ValueError(f"simplify mode must be one of {SIMPLIFY_MODES}, got {mode!r}")
    if course_share > 0 and rng.random() < course_share:
        return course_function(rng, course_kinds, course_composed)
    if rng.random() < simplicity:
        index, params = draw_template(rng, max_coefficient, max_power)
        expr = simplify_template(index, params, mode)
        return SampledFunction(expr, TEMPLATES[index][0], TEMPLATES[index][1])
    raw = random_tree(rng, max_depth, weights=weights)
    return SampledFunction(simple_simplify(raw, with_trig=(mode == "exact")), TREE_TYPE, None)


# ---- variants of a function (issue 22): the robustness suite's changes, and a training knob ----
VARIANT_KINDS = ("scale", "plus_constant", "inner_scale", "bigger_coefficient", "sum")
VARIANT_TYPE = "variant"


def variant_kind(rng: random.Random, weights: tuple[float, ...] | None = None) -> str:
    """The kind of a training variant: uniform over :data:`VARIANT_KINDS` (one ``rng.choice``, the
    draw of the stage-2/3 course recipes), or by ``weights`` from :func:`variant_kind_weights`."""
    if weights is None:
        return rng.choice(VARIANT_KINDS)
    return rng.choices(VARIANT_KINDS, weights=weights)[0]


def variant_kind_weights(weights: dict | None) -> tuple[float, ...] | None:
    """``{variant kind: relative weight}`` over :data:`VARIANT_KINDS` (see :func:`weights_over_kinds`)."""
    return weights_over_kinds("variant_kinds", weights, VARIANT_KINDS)


def vary(kind: str, f: sympy.Expr, rng: random.Random, g: sympy.Expr | None = None
         ) -> tuple[sympy.Expr, str] | None:
    """One small change a student would still differentiate (Welleck et al., "Symbolic
    Brittleness"): ``scale`` c·f (c in 2..9), ``plus_constant`` f + c (c in 1..9), ``inner_scale``
    f(kx) (k in 2..5), ``bigger_coefficient`` (f's integer of largest magnitude, |n| >= 2, times 10;
    ``None`` without one), ``sum`` f + g (``g`` required). Returns the new function and what changed;
    draws from ``rng`` only for the kinds that need a number (the robustness suite's seeded order)."""
    if kind == "scale":
        c = rng.randint(2, 9)
        return c * f, f"c={c}"
    if kind == "plus_constant":
        c = rng.randint(1, 9)
        return f + c, f"c={c}"
    if kind == "inner_scale":
        k = rng.randint(2, 5)
        return f.xreplace({X: k * X}), f"k={k}"
    if kind == "bigger_coefficient":
        ints = [n for n in f.atoms(sympy.Integer) if abs(int(n)) >= 2]
        if not ints:
            return None
        n = max(ints, key=lambda v: (abs(int(v)), int(v)))
        return f.xreplace({n: n * 10}), f"{n}->{n * 10}"
    if kind == "sum":
        if g is None:
            raise ValueError("the sum variant needs a second function g")
        return f + g, f"g={g}"
    raise ValueError(f"unknown variant {kind!r}; known: {list(VARIANT_KINDS)}")
