"""Decide whether a candidate expression equals a gold expression as a real function of x.

Both sides are trusted sympy trees (already parsed; no text reaches this module). Each is
compiled once into an mpmath closure by walking the tree, then evaluated at fixed sample points.

Decision rule
-------------
- Sample points: ``N_POINTS`` fixed reals with 40 random significant digits, both signs,
  magnitudes 1e-3..1e3, ordered so that the first ``MAX_POINTS`` usable ones span that range on
  both sides of 0. Fixed points let the gold's values be computed once and cached; a policy never
  sees them, and 40 random digits defeat terms built to vanish on short decimals or floats
  (``\\sin(10^{12}\\pi x)``): a multiplier big enough to exploit them overflows (``MAX_ARG``).
- A point is *usable* when the gold evaluates there, at ``DPS`` = 50 digits, to a finite real
  number (imaginary part below 1e-30 of its size) without losing precision. Points where the
  gold is complex (sqrt or log of a negative), infinite, overflowing or ill-conditioned are
  skipped: an answer is judged on the gold's real domain only.
- At each usable point the candidate must agree: ``|c - g| <= 10^-(dps/2) * max(|c|, |g|)``.
  The test is relative, with no absolute floor, so a tiny wrong value (``10^{-30} x`` where the
  gold is small) is wrong. A complex or undefined candidate where the gold is real disagrees.
- Precision is tracked, not assumed: a sum that cancels more than ``dps/2 - 5`` digits, or an
  exp/trig/power argument so large that it costs as many, marks the evaluation *unstable*. A
  point that does not agree is re-evaluated up the ladder ``LEVELS`` (50, 110, 300 digits). It
  agrees if it meets the tolerance at a higher level, or if the residual shrank by 10^(0.8 *
  added digits) (a true identity cancelling catastrophically, or a gold that is exactly 0: a
  real difference does not shrink with precision). It disagrees as soon as both values are
  stable and still differ. If it is unstable at every level it is left undecided.
- The first usable point is always confirmed at 110 digits (tolerance 1e-55), so a perturbation
  between 1e-55 and 1e-25 relative (``+ 10^{-30} x``) is caught too.
- Verdict: equal iff no point disagrees and at least ``MIN_POINTS`` points, and 60% of the
  usable ones, agree (undecided points, where the candidate overflows or loses every digit,
  cannot carry the verdict).
- If the gold has fewer than ``MIN_POINTS`` usable real points, the same test runs on complex
  values (principal branches on both sides). Only when that too leaves too few points does a
  symbolic check decide: structural equality, then ``expand(c - g) == 0``.

Why this admits no false positives in practice: two different expressions built from the
elementary functions used here are analytic off a finite set of points, so they can agree to
25 significant digits (55 at one point) at several points spread over five decades and both
signs only if they are equal there, or differ by a term below 1e-55 of their size. Digits lost
to cancellation are detected, so rounding noise is never mistaken for agreement.
Piecewise tricks (``|x - 2|``) are caught because the points reach beyond the usual [-1, 1].
An answer within 1e-55 relative of the gold already contains the right derivative; no sampler of
ours emits such terms and a policy gains nothing by adding them.

Not thread-safe: mpmath's working precision is process-global. Score in processes
(``tsm.reward.RewardScorer``), not threads.
"""
from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import sympy

__all__ = ["Compiled", "GoldValues", "compile_expression", "equal", "equivalent", "evaluate",
           "gold_values", "verdict"]

DPS = 50
LEVELS = (50, 110, 300)   # precision ladder (digits) for points that do not agree at once
N_POINTS = 40
MAX_POINTS = 10
MIN_POINTS = 4
CONFIRM_POINTS = 1
MIN_AGREE_FRACTION = 0.6  # of the usable points must agree; the rest may only be undecided
SHRINK_FRACTION = 0.8     # a residual shrinking by 10**(0.8 * added digits) is rounding noise
MAX_ARG = mpmath.mpf(10) ** 30    # bigger trig arguments count as overflow (non-finite)
MAX_MAG = mpmath.mpf(10) ** 10000


def _tol_exp(dps: int) -> int:
    """Agreement needs a relative difference below 10**-(dps/2) at ``dps`` digits."""
    return dps // 2


def _sample_points() -> list[str]:
    rng = random.Random(20240611)
    # log10 bands visited in this order, each with both signs, so the first MAX_POINTS usable
    # points already span ~1e-2..1e3 on both sides of 0.
    bands = [(-0.5, 0.5), (0.5, 1.5), (-1.5, -0.5), (1.5, 3.0), (-3.0, -1.5)]
    pts: list[str] = []
    for i in range(N_POINTS):
        lo, hi = bands[(i // 2) % len(bands)]
        # 40 random significant digits, not a short decimal or float: x * M is never an
        # integer for a multiplier M below MAX_ARG, so sin(10^12 pi x)-style terms cannot
        # vanish at every point (bigger multipliers overflow and leave the point undecided).
        exp10 = math.floor(rng.uniform(lo, hi))
        digits = str(rng.randrange(10**39, 10**40))
        pts.append(("" if i % 2 == 0 else "-") + f"{digits[0]}.{digits[1:]}e{exp10}")
    return pts


@functools.lru_cache(maxsize=1024)
def _point(x: str, dps: int) -> mpmath.mpf:
    with mpmath.workdps(dps):
        return mpmath.mpf(x)


POINTS = _sample_points()


class _Overflow(ArithmeticError):
    pass


_MAX_BITS = 33_220  # log2(MAX_MAG)


def _mag(v) -> float:
    """log2 of |v| to within a bit, cheaply (mpf internals; -inf for 0)."""
    t = getattr(v, "_mpf_", None)
    if t is not None:
        return t[2] + t[3] if t[1] else -math.inf
    if isinstance(v, int):
        return v.bit_length() if v else -math.inf
    return max(_mag(v.real), _mag(v.imag))


def _guard(v):
    if _mag(v) > _MAX_BITS:
        raise _Overflow
    return v


MAX_EXP_ARG = 25_000  # e^25000 ~ 10^10857 > MAX_MAG: exponential growth past this is overflow


def _real_part(a):
    return a.real if isinstance(a, mpmath.mpc) else a


def _exp_like(fn: Callable) -> Callable:
    """exp, sinh, cosh, sech, csch: beyond MAX_EXP_ARG the value (or its reciprocal) overflows;
    refuse before mpmath spends seconds computing e^(10^1000)."""
    def call(a):
        if abs(_real_part(a)) > MAX_EXP_ARG:
            raise _Overflow
        return fn(a)
    return call


def _saturating(fn: Callable) -> Callable:
    """tanh, coth: ±1 to every digit beyond MAX_EXP_ARG (mpmath would work out e^(2a) first)."""
    def call(a):
        if abs(_real_part(a)) > MAX_EXP_ARG:
            if isinstance(a, mpmath.mpc):
                raise _Overflow
            return mpmath.mpf(1) if a > 0 else mpmath.mpf(-1)
        return fn(a)
    return call


# name -> (mpmath function, sensitive): for "sensitive" functions the value's relative error is
# about |argument| times the argument's, so a big argument costs digits (tracked as instability).
_MP = {
    sympy.sin: (mpmath.sin, True), sympy.cos: (mpmath.cos, True), sympy.tan: (mpmath.tan, True),
    sympy.sec: (mpmath.sec, True), sympy.csc: (mpmath.csc, True), sympy.cot: (mpmath.cot, True),
    sympy.sinh: (_exp_like(mpmath.sinh), True), sympy.cosh: (_exp_like(mpmath.cosh), True),
    sympy.tanh: (_saturating(mpmath.tanh), False), sympy.coth: (_saturating(mpmath.coth), False),
    sympy.sech: (_exp_like(mpmath.sech), True), sympy.csch: (_exp_like(mpmath.csch), True),
    sympy.asin: (mpmath.asin, False), sympy.acos: (mpmath.acos, False),
    sympy.atan: (mpmath.atan, False), sympy.acot: (mpmath.acot, False),
    sympy.asec: (mpmath.asec, False), sympy.acsc: (mpmath.acsc, False),
    sympy.asinh: (mpmath.asinh, False), sympy.acosh: (mpmath.acosh, False),
    sympy.atanh: (mpmath.atanh, False), sympy.acoth: (mpmath.acoth, False),
    sympy.asech: (mpmath.asech, False), sympy.acsch: (mpmath.acsch, False),
    sympy.exp: (_exp_like(mpmath.exp), True), sympy.log: (mpmath.log, False), sympy.Abs: (abs, False),
    sympy.sign: (mpmath.sign, False),
}
_PERIODIC = {sympy.sin, sympy.cos, sympy.tan, sympy.sec, sympy.csc, sympy.cot}


@dataclass(frozen=True)
class Compiled:
    """An expression compiled for one precision; see ``evaluate``."""

    fn: Callable
    dps: int
    state: list   # state[0] is set when an evaluation lost more digits than the check can spare


def _compile(e: sympy.Expr, st: list, loss: float, big: mpmath.mpf) -> Callable:
    """Closure for e. ``loss``: bits a sum may lose to cancellation before it is unstable;
    ``big``: argument size over which a sensitive function counts as ill-conditioned."""
    if e.is_Symbol:
        return lambda x: x
    if e.is_Integer:
        c = int(e)
        return lambda x: c
    if e.is_Rational:
        c = mpmath.mpf(e.p) / e.q
        return lambda x: c
    if e is sympy.pi:
        c = +mpmath.pi
        return lambda x: c
    if e is sympy.E:
        c = +mpmath.e
        return lambda x: c
    if e is sympy.I:
        c = mpmath.mpc(0, 1)
        return lambda x: c
    sub = [_compile(a, st, loss, big) for a in e.args]
    if e.is_Add:
        def add(x):
            vals = [f(x) for f in sub]
            s = mpmath.fsum(vals)
            if _mag(s) < max(map(_mag, vals)) - loss:
                st[0] = True
            return s
        return add
    if e.is_Mul:
        def mul(x):
            v = sub[0](x)
            for f in sub[1:]:
                v = v * f(x)
            return _guard(v)
        return mul
    if e.is_Pow:
        fb, fp = sub
        p = e.args[1]
        if p.is_Integer:
            n = int(p)
            return lambda x: _guard(fb(x) ** n)
        if p == sympy.S.Half:
            return lambda x: mpmath.sqrt(fb(x))

        def power(x):
            b, q = fb(x), fp(x)
            if b != 0:
                w = q * mpmath.log(b)
                if abs(_real_part(w)) > MAX_EXP_ARG:
                    raise _Overflow
                if abs(w) > big:
                    st[0] = True
            return _guard(mpmath.power(b, q))
        return power
    if e.func in _MP and len(sub) == 1:
        fn, sensitive = _MP[e.func]
        fa = sub[0]
        periodic = e.func in _PERIODIC

        def call(x):
            a = fa(x)
            if sensitive and abs(a) > big:
                if periodic and abs(a) > MAX_ARG:
                    raise _Overflow
                st[0] = True
            return _guard(fn(a))
        return call
    if e.is_Number:  # Float or other exact numbers sympy may create
        c = mpmath.mpmathify(sympy.N(e, mpmath.mp.dps))
        return lambda x: c
    raise ValueError(f"cannot compile {e.func.__name__}")


def compile_expression(e: sympy.Expr, dps: int = DPS) -> Compiled:
    """Compile a trusted sympy tree for evaluation at ``dps`` digits (constants rounded there)."""
    with mpmath.workdps(dps):
        spare = dps - _tol_exp(dps) - 5   # digits that may be lost before the check is unsafe
        loss = spare * math.log2(10)
        big = mpmath.mpf(10) ** (spare - 5)
        st = [False]
        return Compiled(_compile(e, st, loss, big), dps, st)


def evaluate(c: Compiled, x: str):
    """(value, unstable) at x; value None where undefined, infinite or overflowing."""
    c.state[0] = False
    with mpmath.workdps(c.dps):
        try:
            v = c.fn(_point(x, c.dps))
        except _Overflow:  # too big to judge here, not undefined: count it as unstable
            return None, True
        except (ZeroDivisionError, ValueError, OverflowError, TypeError):
            return None, c.state[0]
        if not mpmath.isfinite(v):
            return None, c.state[0]
        return v, c.state[0]


def _real(v):
    """The real value of v if v is real up to rounding, else None."""
    if isinstance(v, mpmath.mpc):
        if abs(v.imag) > abs(v) * mpmath.mpf(10) ** -30:
            return None
        return v.real
    return v


class GoldValues:
    """The gold, its values at the usable points (stable at ``DPS``), and compilations by dps."""

    def __init__(self, expr: sympy.Expr):
        self.expr = expr
        self._compiled: dict[int, Compiled] = {}
        self.points: tuple = ()
        self.complex_mode = False
        low = self.compiled(DPS)
        for complex_mode in (False, True):
            pts = []
            for x in POINTS:
                v, unstable = evaluate(low, x)
                if v is not None and not complex_mode:
                    v = _real(v)
                if v is not None and not unstable:
                    pts.append((x, v))
                    if len(pts) == MAX_POINTS:
                        break
            if len(pts) >= MIN_POINTS:
                self.points, self.complex_mode = tuple(pts), complex_mode
                return

    def compiled(self, dps: int) -> Compiled:
        if dps not in self._compiled:
            self._compiled[dps] = compile_expression(self.expr, dps)
        return self._compiled[dps]


def gold_values(gold: sympy.Expr) -> GoldValues:
    return GoldValues(gold)


@functools.cache
def _tolerance(dps: int) -> mpmath.mpf:
    with mpmath.workdps(dps):
        return mpmath.mpf(10) ** -_tol_exp(dps)


def _close(c, g, dps: int) -> bool:
    with mpmath.workdps(dps):
        return abs(c - g) <= max(abs(c), abs(g)) * _tolerance(dps)


def _point_verdict(cand: sympy.Expr, cache: dict, gold: GoldValues, x: str, start: int) -> str:
    """'agree', 'disagree' or 'undecided' at x, climbing LEVELS from index ``start``."""
    prev = None  # (residual, dps) at the previous level
    for dps in LEVELS[start:]:
        if dps not in cache:
            cache[dps] = compile_expression(cand, dps)
        c, cu = evaluate(cache[dps], x)
        g, gu = evaluate(gold.compiled(dps), x)
        if g is None:
            return "undecided"
        if c is None:
            if cu:
                continue
            return "disagree"
        if _close(c, g, dps):
            return "agree"
        with mpmath.workdps(dps):
            r = abs(c - g)
            if prev is not None and r <= prev[0] * mpmath.mpf(10) ** (
                    -SHRINK_FRACTION * (dps - prev[1])):
                return "agree"
        if not cu and not gu:
            return "disagree"
        prev = (r, dps)
    return "undecided"


def equivalent(candidate: sympy.Expr, gold: GoldValues) -> bool:
    """True when ``candidate`` equals the gold on the gold's real domain (see module docstring)."""
    return verdict(candidate, gold) is True


def verdict(candidate: sympy.Expr, gold: GoldValues) -> bool | None:
    """``equivalent``'s decision with its undecided case kept apart: True (equal), False (a point
    disagrees), None (too few points could decide, or the symbolic fallback found no identity)."""
    if not gold.points:
        return True if _symbolic_equal(candidate, gold.expr) else None
    cache = {DPS: compile_expression(candidate, DPS)}
    agreed = 0
    for k, (x, g) in enumerate(gold.points):
        c, _ = evaluate(cache[DPS], x)
        if c is not None and _close(c, g, DPS):
            if k >= CONFIRM_POINTS:
                agreed += 1
                continue
            point = _point_verdict(candidate, cache, gold, x, 1)  # confirm at more digits
        else:
            point = _point_verdict(candidate, cache, gold, x, 0)
        if point == "disagree":
            return False
        agreed += point == "agree"
    # Undecided points (overflow, precision lost at every level) may not carry the verdict:
    # a term that overflows on half the points and vanishes on the rest must not pass.
    if agreed >= max(MIN_POINTS, math.ceil(MIN_AGREE_FRACTION * len(gold.points))):
        return True
    return None


def equal(a: sympy.Expr, b: sympy.Expr) -> bool | None:
    """Whether two trusted trees in one variable (any one symbol, or none) are the same function:
    ``verdict(a, gold_values(b))``, with a tree this module cannot compile left undecided (None).
    The identity test of the `steps` derivations (tsm.tasks.differentiation.steps) and of the
    rewards is this one checker."""
    if a == b:
        return True
    if len(a.free_symbols | b.free_symbols) > 1:
        raise ValueError("equal() decides identities in one variable")
    try:
        return verdict(a, gold_values(b))
    except ValueError:  # a node outside the compiled set (an unevaluated Derivative, ...)
        return None


def _symbolic_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    if a == b:
        return True
    if sympy.count_ops(a) + sympy.count_ops(b) > 200:  # expand cost grows fast; refuse instead
        return False
    return sympy.expand(a - b) == 0
