"""The differentiation sampler: draw f(x), pose "find the derivative", name ``str(f')``.

A draw (``DifferentiationTask.sample``) is a function from :mod:`tsm.math.sampling`, its sympy
derivative, and both as LaTeX (Diff-TSM's form) and plain sympy strings. Draws are rejected,
with a stable reason key, when:

* ``not_finite`` -- f or f' has a nan/oo/zoo node (Diff-TSM's ``is_finite``, see :func:`scan`);
* ``invalid_node`` -- f or f' has a relation, boolean, unevaluated Derivative/Integral/Sum/
  Limit/Subs, Min/Max, Piecewise, or a special/combinatorial function (Diff-TSM's
  ``is_valid_expression`` list, checked by class and module);
* ``complex`` -- f has the imaginary unit (``a*log(c)`` with ``c < 0`` gives ``log(-c) + i*pi``);
  Diff-TSM kept these rare draws, but the reward's parser admits no symbol but x, e and pi, so
  they could never be answered right (a deliberate deviation);
* ``too_long_function`` / ``too_long_derivative`` -- LaTeX longer than ``max_length``;
* ``too_large`` -- more than ``MAX_NODES`` tree nodes (a deterministic size guard before
  printing and differentiating; such a draw would fail the length filter anyway);
* ``ood`` -- with ``exclude_ood``: f is a function of the shipped OOD set (by canonical form);
* ``no_variant`` -- with ``variant_share``: the drawn change leaves f as it was (no integer to
  enlarge, or c·f == f);
* ``constant`` -- with ``drop_constants``: f has no x (``f(x) = 0``, a degenerate exercise);
  off by default, as Diff-TSM kept them;
* ``error`` -- sympy raised.

Coverage knobs (issue 22; ``data.task_options``, all off by default): ``tree_weights`` reweights
the random trees' steps or adds the operators Diff-TSM never emits (inverse trig/hyperbolic,
``b^f``, ``log_b f``, roots; :func:`tsm.math.sampling.tree_weights`), ``course_share`` draws that
share of functions from the course templates (:data:`tsm.math.sampling.COURSE_TEMPLATES`:
function type ``course``; ``course_kinds`` weights their kinds, uniform by default;
``course_composed`` builds that share of six kinds recursively to random depth instead,
:data:`tsm.math.sampling.COURSE_COMPOSERS`, kind ``<kind>-composed``),
``exclude_ood`` refuses the OOD set's functions, ``inverse_notation``
writes inverse trig in prompts as ``\\arcsin``, ``\\sin^{-1}`` or ``\\operatorname{asin}`` (drawn per
prompt), and ``variant_share`` changes that share of draws as the robustness suite does
(:func:`tsm.math.sampling.vary`: c·f, f + c, f(kx), a coefficient ×10, f + g; function type
``variant``; ``variant_kinds`` weights the five kinds, uniform by default), so a model sees the
changes it is tested on, on training functions.

Prompts: Diff-TSM's system prompt and one of :data:`USER_PROMPTS` around a surface variation of f
(:func:`tsm.math.render.surface_form`, Diff-TSM's variations or, with ``surface="clean"``, only
forms people type); with ``variations=False`` always :data:`FIXED_PROMPT`
around the plain LaTeX of f. The ground truth is ``str(f')`` (plain sympy form).
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import sympy
import yaml

from tsm.math import render, sampling
from tsm.math.parse import parse_expression
from tsm.tasks.base import Rejected, chat_prompt

MAX_NODES = 400  # expression-tree nodes in f; far more than fits in 100 LaTeX characters

USER_PROMPTS: tuple[str, ...] = (
    "What is the derivative of the following function w.r.t. x: {function}",
    "Find the derivative of {function}",
    "Differentiate {function} with respect to x.",
    "Compute the derivative of f(x) = {function}.",
    "What is d/dx of {function}?",
    "Find f'(x) for f(x) = {function}",
    "Calculate the derivative with respect to x of the function {function}",
    "Given f(x) = {function}, what is f'(x)?",
    "Differentiate the following function: {function}",
    "Take the derivative of {function} with respect to x.",
)
FIXED_PROMPT = "Find the derivative of the following function with respect to x: {function}"

_FORBIDDEN = (
    sympy.core.relational.Relational, sympy.logic.boolalg.BooleanFunction,
    sympy.Derivative, sympy.Integral, sympy.Sum, sympy.Product, sympy.Limit, sympy.Subs,
    sympy.Lambda, sympy.Min, sympy.Max, sympy.Piecewise, sympy.conjugate, sympy.arg,
    sympy.polar_lift, sympy.periodic_argument,
    sympy.principal_branch, sympy.Set,
)
_FORBIDDEN_MODULES = (
    "sympy.functions.special", "sympy.functions.combinatorial",
    "sympy.functions.elementary.integers", "sympy.functions.elementary.piecewise",
)
_NOT_FINITE = (sympy.nan, sympy.oo, sympy.zoo, -sympy.oo)
_X = sampling.X


def scan(expr: sympy.Expr) -> tuple[bool, bool, bool, int]:
    """One walk over ``expr``: (finite, valid, has the imaginary unit, node count).

    ``finite``: no nan/oo/-oo/zoo node. Diff-TSM also asks sympy's ``is_infinite``; for
    functions of a symbol without assumptions that query only ever says True where such a node
    exists, and it costs a third of the per-example time, so it is not asked (the tests check
    the two agree on sampled draws). ``valid``: no node of a forbidden class or module (Diff-TSM's
    ``is_valid_expression`` list).
    """
    finite, valid, imaginary, nodes = True, True, False, 0
    for node in sympy.preorder_traversal(expr):
        nodes += 1
        if node.is_Atom:
            if node in _NOT_FINITE:
                finite = False
            elif node is sympy.I:
                imaginary = True
        elif isinstance(node, _FORBIDDEN) or (type(node).__module__ or "").startswith(_FORBIDDEN_MODULES):
            valid = False
    return finite, valid, imaginary, nodes


def is_valid_expression(expr: sympy.Expr) -> bool:
    """No relation, unevaluated operator or special function anywhere in ``expr``."""
    return scan(expr)[1]


def derivative(expr: sympy.Expr) -> sympy.Expr:
    """``sympy.diff(expr, x)``, the same expression, ~3x faster.

    ``sympy.diff`` wraps every node in ``Derivative.__new__`` and asks ``is_zero`` of every
    intermediate result, which costs more than the differentiation itself. This walk applies the
    same node rules as sympy (``Add``: sum of derivatives; ``Mul``: the Leibniz sum of
    ``Mul._eval_derivative_n_times``; ``Pow``: ``self*(exp'*log(base) + base'*exp/base)``;
    one-argument functions: ``fdiff(1)*arg'``, skipping a zero ``arg'``) and builds the result
    with the same constructors, so auto-evaluation gives the identical tree; anything else goes
    to ``sympy.diff``. The tests compare it with ``sympy.diff`` on thousands of draws.
    """
    if expr is _X:
        return sympy.S.One
    if not expr.has(_X):
        return sympy.S.Zero
    if expr.is_Add:
        return sympy.Add(*[derivative(a) for a in expr.args])
    if expr.is_Mul:
        args = expr.args
        return sympy.Add(*[sympy.Mul(*[derivative(a) if j == i else a for j, a in enumerate(args)])
                           for i in range(len(args))])
    if expr.is_Pow:
        base, exponent = expr.args
        return expr * (derivative(exponent) * sympy.log(base) + derivative(base) * exponent / base)
    if isinstance(expr, sympy.Function) and len(expr.args) == 1:
        inner = derivative(expr.args[0])
        if inner is sympy.S.Zero or (inner.is_number and inner.is_zero):
            return sympy.S.Zero
        return sympy.Add(expr.fdiff(1) * inner)
    return sympy.diff(expr, _X)


def canonical_key(expr: sympy.Expr) -> str:
    """Dedup key of a function: a digest of ``srepr`` of its simplified sympy tree.

    The tree is the canonical form (sympy orders arguments of sums and products canonically and
    the sampler has already simplified it), so two draws that print differently but build the
    same tree (``2x`` vs ``x*2``, ``x**(1/2)`` vs ``sqrt(x)``) share a key, and the key is stable
    across processes (no ``hash()``). Equal functions with different trees (``sin(2x)`` vs
    ``2 sin(x) cos(x)``) keep distinct keys, as they are distinct exercises.
    """
    return hashlib.blake2b(sympy.srepr(expr).encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class DifferentiationProblem:
    """One accepted draw: f and f' as sympy, LaTeX and plain strings."""

    function: sympy.Expr
    derivative: sympy.Expr
    function_latex: str
    derivative_latex: str
    function_type: str
    key: str
    kind: str | None = None  # the course or variant kind of a course/variant draw (what selection logs count)

    @property
    def function_sympy(self) -> str:
        return str(self.function)

    @property
    def derivative_sympy(self) -> str:
        return str(self.derivative)

    # the task-neutral names (tsm.tasks.base.Problem): the answer is f'
    @property
    def answer_latex(self) -> str:
        return self.derivative_latex

    @property
    def answer_sympy(self) -> str:
        return self.derivative_sympy


OOD_SOURCE = Path(__file__).with_name("ood_functions.yaml")  # the shipped OOD set (tsm.tasks.differentiation.ood)


def load_functions(path: str | Path) -> list[tuple[str, str]]:
    """``(function_type, plain f)`` pairs of a hand-written function list (the OOD set's YAML:
    function_type -> list of functions), in file order."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a mapping function_type -> list of functions")
    out = []
    for kind, items in data.items():
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise ValueError(f"{path}: {kind!r} must map to a list of strings")
        out += [(str(kind), s) for s in items]
    return out


@functools.cache
def _ood_keys() -> frozenset[str]:
    """Canonical keys of the shipped OOD set's functions (``exclude_ood``: a course stream never
    draws one of them). Here, not in :mod:`.ood`, which builds on this module."""
    return frozenset(canonical_key(parse_expression(text, dialect="plain"))
                     for _, text in load_functions(OOD_SOURCE))


class DifferentiationTask:
    """Sample functions, pose "find the derivative", and give ``str(f')`` as ground truth."""

    name = "differentiation"
    data_source = "tsm/differentiation"

    def __init__(self, simplicity: float = 0.5, max_coefficient: int = 40, max_power: int = 5,
                 max_depth: int = 4, max_length: int = 100, variations: bool = True,
                 simplify: str = "fast", surface: str = "diff_tsm", drop_constants: bool = False,
                 tree_weights: dict | None = None, course_share: float = 0.0,
                 inverse_notation: bool = False, exclude_ood: bool = False, variant_share: float = 0.0,
                 course_kinds: dict | None = None, variant_kinds: dict | None = None,
                 course_composed: float = 0.0):
        for name, p in (("course_share", course_share), ("variant_share", variant_share),
                        ("course_composed", course_composed)):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        try:  # a mapping, or the sorted (name, weight) pairs the builder's task arguments carry
            weights = dict(tree_weights or {})
        except (TypeError, ValueError):
            raise ValueError(f"tree_weights must map step names to weights, got {tree_weights!r}") from None
        # coverage knobs (issue 22), all off by default: Diff-TSM's distribution and notation
        self.weights = sampling.tree_weights(weights)
        self.course_share = float(course_share)
        self.course_composed = float(course_composed)
        try:  # course_kind_weights names the key in its own messages
            kinds = dict(course_kinds or {})
        except (TypeError, ValueError):
            raise ValueError(f"course_kinds must map course kinds to weights, got {course_kinds!r}") from None
        self.course_kinds = sampling.course_kind_weights(kinds)
        try:
            vkinds = dict(variant_kinds or {})
        except (TypeError, ValueError):
            raise ValueError(f"variant_kinds must map variant kinds to weights, got {variant_kinds!r}") from None
        self.variant_kinds = sampling.variant_kind_weights(vkinds)
        self.variant_share = float(variant_share)
        self.inverse_styles = render.INVERSE_STYLES if inverse_notation else ()
        self.ood_keys = _ood_keys() if exclude_ood else frozenset()
        if simplify not in sampling.SIMPLIFY_MODES:
            raise ValueError(f"simplify must be one of {sampling.SIMPLIFY_MODES}, got {simplify!r}")
        if surface not in render.SURFACE_STYLES:
            raise ValueError(f"surface must be one of {render.SURFACE_STYLES}, got {surface!r}")
        self.surface, self.drop_constants = surface, bool(drop_constants)
        self.simplicity = simplicity
        self.max_coefficient = max_coefficient
        self.max_power = max_power
        self.max_depth = max_depth
        self.max_length = max_length
        self.variations = variations
        self.simplify = simplify

    def _draw(self, rng: random.Random) -> sampling.SampledFunction:
        return sampling.sample_function(
            rng, simplicity=self.simplicity, max_coefficient=self.max_coefficient,
            max_power=self.max_power, max_depth=self.max_depth, mode=self.simplify,
            weights=self.weights, course_share=self.course_share, course_kinds=self.course_kinds,
            course_composed=self.course_composed)

    def _vary(self, drawn: sampling.SampledFunction, rng: random.Random) -> sampling.SampledFunction:
        """``variant_share``: the drawn f changed as the robustness suite changes a solved function
        (c·f, f + c, f(kx), a coefficient ×10, or f + g with g a second draw; the kind uniform, or
        weighted by ``variant_kinds``)."""
        kind = sampling.variant_kind(rng, self.variant_kinds)
        g = self._draw(rng).expr if kind == "sum" else None
        made = sampling.vary(kind, drawn.expr, rng, g)
        if made is None or made[0] == drawn.expr:
            raise Rejected("no_variant", f"{kind}: {drawn.expr}")
        return sampling.SampledFunction(made[0], sampling.VARIANT_TYPE, kind)

    def sample(self, rng: random.Random) -> DifferentiationProblem:
        try:
            drawn = self._draw(rng)
            if self.variant_share > 0 and rng.random() < self.variant_share:  # no extra draw at 0
                drawn = self._vary(drawn, rng)
            return self._check(drawn)
        except Rejected:
            raise
        except Exception as exc:  # sympy can raise on odd trees; Diff-TSM drops those too
            raise Rejected("error", f"{type(exc).__name__}: {exc}") from exc

    def _check(self, drawn: sampling.SampledFunction) -> DifferentiationProblem:
        f = drawn.expr
        if self.drop_constants and not f.has(_X):
            raise Rejected("constant", str(f))
        finite, valid, imaginary, nodes = scan(f)
        if not finite:
            raise Rejected("not_finite", str(f))
        if not valid:
            raise Rejected("invalid_node", str(f))
        if imaginary:
            raise Rejected("complex", str(f))
        if nodes > MAX_NODES:
            raise Rejected("too_large", str(f))
        key = canonical_key(f)
        if key in self.ood_keys:
            raise Rejected("ood", str(f))
        f_latex = render.to_latex(f)
        if len(f_latex) > self.max_length:
            raise Rejected("too_long_function", f_latex)
        d = derivative(f)
        finite, valid, _, _ = scan(d)
        if not finite:
            raise Rejected("not_finite", str(d))
        if not valid:
            raise Rejected("invalid_node", str(d))
        d_latex = render.to_latex(d)
        if len(d_latex) > self.max_length:
            raise Rejected("too_long_derivative", d_latex)
        kind = drawn.template if drawn.function_type in (sampling.COURSE_TYPE, sampling.VARIANT_TYPE) else None
        return DifferentiationProblem(f, d, f_latex, d_latex, drawn.function_type, key, kind)

    def pose(self, problem: DifferentiationProblem, rng: random.Random
             ) -> tuple[list[dict[str, str]], str]:
        """The chat messages and the surface form of f they show."""
        return chat_prompt(problem.function, problem.function_latex, rng, variations=self.variations,
                           surface=self.surface, prompts=USER_PROMPTS, fixed=FIXED_PROMPT,
                           inverse_styles=self.inverse_styles)

    def messages(self, problem: DifferentiationProblem, rng: random.Random) -> list[dict[str, str]]:
        return self.pose(problem, rng)[0]

    def ground_truth(self, problem: DifferentiationProblem) -> str:
        return problem.derivative_sympy
