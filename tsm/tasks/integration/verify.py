"""Check an integration answer: is the boxed F an antiderivative of the integrand f?

``verify(response, integrand) -> Score`` mirrors the derivative reward (``tsm.reward.scoring``):
the same last-box extraction, safe parser, ``RewardConfig`` values and ``Score`` reasons. What
differs is the test and the answer conventions:

- **Test.** F is right iff d/dx F equals f under the reward's numeric equivalence
  (``tsm.math.equivalence.equivalent``, on f's real domain): any antiderivative counts, whatever
  its constant or form (``\\ln(2x)`` for 1/x, ``-\\cos^2 x / 2`` for ``\\sin x \\cos x``).
  d/dx runs on the parsed sympy tree (never on text). ``|u|`` differentiates to
  ``\\operatorname{sign}(u) u'`` and ``\\operatorname{sign}(u)`` to 0 (true off the finitely many
  points the check never samples), so ``\\ln|x|`` is an antiderivative of 1/x. The check is
  pointwise: a jump is not seen, so ``x^2/2 + \\operatorname{sgn}(x)`` passes for x (as
  ``\\ln|x| + \\operatorname{sgn}(x)`` rightly does for 1/x); a policy gains nothing by it.
- **Constant.** One additive constant term, first or last, is dropped before parsing:
  ``+ C``, ``+ c``, ``+ K``, ``+ C_1``, ``+ C_{1}``, ``+ \\text{const}``, ``+ constant``,
  ``\\mathrm{C}``. (A numeric constant such as ``+ 5`` needs no help: its derivative is 0.)
  A constant elsewhere (``x + C + 1``, ``2C``, ``e^{x + C}``) is a free symbol: telling a top-level
  term from one inside a group would need a parse, and the parser has no constant symbol.
- **Prefix.** The box may read ``F(x) = ...``, ``y = ...`` or ``\\int f(x)\\,dx = ...``; anything
  else left of an ``=`` is ``invalid``, as in the derivative reward.

Reasons are the reward's closed set (``tsm.reward.REASONS``). An answer that is an expression but
not an antiderivative's closed form is ``invalid`` (value 0), with ``Score.detail`` starting with
``unevaluated:`` (a leftover ``\\int``, ``Integral(...)``, ``\\frac{d}{dx}``, ``dx``) or
``free_symbol:`` (a symbol other than x once the constant is gone: ``x y``, ``2C``). A derivative
tree over ``MAX_DERIVATIVE_NODES`` nodes is ``too_long``.

Values: ``correct_score`` for correct, ``format_score`` for wrong, 0 otherwise.
``RewardConfig.shortness_weight`` is ignored: it is relative to the gold's length, and the
integrand is not an answer's length scale.

Verdicts are cached per (answer, integrand), and the integrand's values per integrand string (the
reward's own cache), because RL scores many responses against one problem.
"""
from __future__ import annotations

import functools
import re

import sympy

from tsm.math.equivalence import GoldValues, equivalent, gold_values
from tsm.math.parse import ParseError, X, parse_expression
from tsm.reward.scoring import (
    _KIND_TO_REASON,
    _PREFIX_CLEAN,
    RewardConfig,
    Score,
    _gold,
    boxed_answer,
)

__all__ = ["MAX_DERIVATIVE_NODES", "antiderivative_check", "derivative", "strip_constant",
           "verify"]

MAX_DERIVATIVE_NODES = 10_000  # tree nodes; the labelled suite's answers need < 40

# -- constant of integration -----------------------------------------------------------------
_CONST_NAME = r"(?:C|c|K|k|const(?:ant)?)(?:_\s*\{?\s*\d{1,3}\s*\}?|\d)?"
_CONST = (r"(?:\\(?:text|textrm|mathrm|operatorname|mathit|mathcal|mathbf|rm)\s*\{\s*"
          + _CONST_NAME + r"\s*\}|" + _CONST_NAME + ")")
_TRAILING_CONST = re.compile(r"\s*[+-]\s*" + _CONST + r"\s*\.?\s*$")
_LEADING_CONST = re.compile(r"^\s*\+?\s*" + _CONST + r"\s*(?=[+-])")

# -- answers that are not closed forms -------------------------------------------------------
_UNEVALUATED = re.compile(
    r"\\[io]+nt(?![A-Za-z])|∫|Integral|integrate|Derivative|\\partial|∂|\\frac\s*\{\s*d"
    r"|\bd\s*/\s*d\s*x|(?<![A-Za-z])d\s*x\b|\\[,;:!]\s*d|\\mathrm\s*\{\s*d\s*\}")

# -- what may stand left of an '=' -----------------------------------------------------------
_PREFIX_OK = re.compile(r"[FGHIYy](?:\(x\))?|(?:\\[io]+nt|∫|Integral\().*")


def strip_constant(answer: str) -> str:
    """``answer`` without one additive constant of integration (first or last term)."""
    m = _TRAILING_CONST.search(answer)
    if m:
        return answer[:m.start()].strip()
    m = _LEADING_CONST.match(answer)
    if m:
        rest = answer[m.end():].strip()
        return rest[1:].strip() if rest.startswith("+") else rest
    return answer


def _is_prefix(lhs: str) -> bool:
    for pat, rep in _PREFIX_CLEAN:
        lhs = pat.sub(rep, lhs)
    return _PREFIX_OK.fullmatch(lhs) is not None


# -- derivative ------------------------------------------------------------------------------
class _Abs(sympy.Function):
    """|u| with d|u|/du = sign(u): sympy's own Abs differentiates via re/im for a complex x."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.sign(self.args[0])


class _Sign(sympy.Function):
    """sign(u) with derivative 0 (a.e.; the check samples no point where u = 0)."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero


def _sizes(e: sympy.Expr) -> tuple[int, int]:
    """(nodes of e, a generous estimate of the nodes of d/dx e), in one pass without sympy.

    Product and chain rules copy operands: d(a b c) has every factor ~3 times and d f(u) has u
    up to ~3 times, so an 89-factor product's derivative is ~60x its size, and sympy spends
    ~0.3 s building it (assumption queries) before a size check afterwards could refuse it.
    """
    if not e.args:
        return 1, 1
    sub = [_sizes(a) for a in e.args]
    size = 1 + sum(s for s, _ in sub)
    if e.is_Add:
        return size, 1 + sum(d for _, d in sub)
    if e.is_Mul:
        return size, 1 + sum(d + size - s for s, d in sub if d > 1)
    return size, 2 + 3 * size + sum(d for _, d in sub)  # Pow, functions


def _too_big(e: sympy.Expr, cap: int) -> bool:
    for n, _ in enumerate(sympy.preorder_traversal(e)):
        if n > cap:
            return True
    return False


def derivative(answer: sympy.Expr) -> sympy.Expr:
    """d/dx of a parsed answer (|u|' = sign(u) u', sign' = 0); ``ParseError`` if too big."""
    if _sizes(answer)[1] > MAX_DERIVATIVE_NODES:
        raise ParseError("derivative too large", "too_long")
    e = answer
    if e.has(sympy.Abs, sympy.sign):
        e = e.replace(sympy.Abs, _Abs).replace(sympy.sign, _Sign)
    d = sympy.diff(e, X)
    if d.has(_Abs, _Sign):
        d = d.replace(_Abs, lambda u: sympy.Abs(u, evaluate=False)).replace(
            _Sign, lambda u: sympy.sign(u, evaluate=False))
    if _too_big(d, MAX_DERIVATIVE_NODES):
        raise ParseError("derivative too large", "too_long")
    return d


def antiderivative_check(answer_expr: sympy.Expr, integrand_expr: sympy.Expr | GoldValues) -> bool:
    """True iff d/dx ``answer_expr`` equals ``integrand_expr`` (reward equivalence, real domain).

    Both are trusted sympy trees in x (``tsm.math.parse.parse_expression``); the integrand may be
    given as its precomputed ``GoldValues``. A free symbol other than x makes the answer wrong
    (strip the constant of integration first). Raises ``ParseError`` (kind ``too_long``) when the
    derivative is over ``MAX_DERIVATIVE_NODES`` nodes.
    """
    if answer_expr.free_symbols - {X}:
        return False
    gold = integrand_expr if isinstance(integrand_expr, GoldValues) else gold_values(integrand_expr)
    try:
        return equivalent(derivative(answer_expr), gold)
    except ValueError as exc:  # the derivative has a node the evaluator cannot compile
        if isinstance(exc, ParseError):
            raise
        return False


# -- the verdict -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _verdict(answer: str, integrand: str, max_chars: int) -> tuple[str, str | None]:
    """(reason, detail) for a prefix-free answer; cached."""
    gold, _, err = _gold(integrand)
    if gold is None:
        return "bad_gold", err
    body = strip_constant(answer)
    if not body:
        return "empty", "only a constant of integration"
    try:
        expr = parse_expression(body, max_chars=max_chars)
        ok = antiderivative_check(expr, gold)
    except ParseError as exc:
        reason = _KIND_TO_REASON[exc.kind]
        if reason in ("invalid", "unparsable") and _UNEVALUATED.search(body):
            return "invalid", f"unevaluated: {exc}"
        if exc.kind == "symbol":
            return "invalid", f"free_symbol: {exc}"
        return reason, str(exc)
    return ("correct", None) if ok else ("wrong", None)


def verify(response: str, integrand: str, config: RewardConfig | None = None) -> Score:
    """Judge ``response``'s last boxed answer as an antiderivative of ``integrand``.

    ``integrand`` is f as a plain sympy (or LaTeX) string. Never raises on any response text; an
    integrand that does not parse gives ``bad_gold``.
    """
    cfg = config or RewardConfig()
    try:
        answer, rhs, refused = boxed_answer(response, cfg, _is_prefix, "an antiderivative prefix")
        if refused is not None:
            return refused
        reason, detail = _verdict(rhs, integrand, cfg.max_answer_chars)
        value = {"correct": cfg.correct_score, "wrong": cfg.format_score}.get(reason, 0.0)
        return Score(value, reason == "correct", reason, answer, detail)
    except Exception as exc:  # noqa: BLE001 - a reward must not crash training; logged via detail
        return Score(0.0, False, "error", None, f"{type(exc).__name__}: {exc}"[:300])
