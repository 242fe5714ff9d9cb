"""The ``sympy.integrate`` baseline for the integration task (issue 21).

``sympy_item((integrand, limit_s))`` integrates one plain-sympy integrand in x and judges the
result; ``run_baseline(integrands, limit_s, workers)`` does a list through a ``TimeoutPool`` so
that one integrand sympy cannot finish costs ``limit_s`` only.

An integrand is *solved* iff sympy's result

- has no ``Integral`` left (reason ``unevaluated`` otherwise),
- has no free symbol but x (``free_symbol``),
- uses no special function (``special``): any node whose class lives in
  ``sympy.functions.special`` (erf, erfi, Si, Ci, Ei, li, fresnel, gamma, polylog, hyper,
  meijerg, ...), or is ``Piecewise``, ``LambertW``, ``RootSum``/``RootOf`` (implicit roots),
- and passes ``antiderivative_check`` (``correct``; ``wrong`` otherwise).

A ``ParseError`` or any other exception (integrand does not parse, derivative too large, sympy
raises) is ``error``; an item over the limit is ``timeout`` (``seconds`` = the limit).

``seconds`` times ``sympy.integrate`` alone. The pool's limit, though, covers the whole item:
parsing, integration and the check (the check is small next to a slow integration). Each worker
runs ``warm_up`` first (imports, a trivial integral, one full item), so no item pays for start-up.
sympy's cache is cleared before every item, so an item's time does not depend on which items the
same worker integrated before it.
"""
from __future__ import annotations

import time

import sympy
from sympy.core.cache import clear_cache

from tsm.math.parse import X, parse_expression
from tsm.parallel import TimeoutPool
from tsm.tasks.integration.verify import antiderivative_check

__all__ = ["REASONS", "is_special", "run_baseline", "sympy_item", "warm_up"]

REASONS = ("correct", "wrong", "special", "unevaluated", "free_symbol", "error", "timeout")

# Not in sympy.functions.special, but not an explicit elementary closed form either.
_NOT_ELEMENTARY = (sympy.Piecewise, sympy.LambertW, sympy.RootSum, sympy.polys.rootoftools.RootOf)


def is_special(expr: sympy.Basic) -> bool:
    """True iff ``expr`` has a node that is a special (non-elementary) function or a Piecewise."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, _NOT_ELEMENTARY):
            return True
        if type(node).__module__.startswith("sympy.functions.special"):
            return True
    return False


def _judge(result: sympy.Expr, integrand: sympy.Expr) -> str:
    if result.has(sympy.Integral):
        return "unevaluated"
    if result.free_symbols - {X}:
        return "free_symbol"
    if is_special(result):
        return "special"
    return "correct" if antiderivative_check(result, integrand) else "wrong"


def sympy_item(item: tuple[str, float]) -> dict:
    """Integrate one integrand with sympy and judge it (pool function; never raises).

    ``item`` is (integrand as a plain sympy string, the limit in seconds: for the record only, the
    pool enforces it). Returns ``{"solved", "seconds", "reason", "answer"}``.
    """
    integrand, _limit_s = item
    clear_cache()
    seconds, answer = 0.0, ""
    try:
        f = parse_expression(integrand, dialect="sympy")
        start = time.perf_counter()
        result = sympy.integrate(f, X)
        seconds = time.perf_counter() - start
        answer = str(result)
        reason = _judge(result, f)
    except Exception:  # noqa: BLE001 - ParseError, too_long, or sympy itself failing: one item's error
        reason = "error"
    return {"solved": reason == "correct", "seconds": seconds, "reason": reason, "answer": answer}


def warm_up() -> None:
    """Pool initializer: import sympy and the checker, and integrate trivial things once."""
    sympy.integrate(X, X)
    sympy_item(("x*exp(x)", 1.0))


def run_baseline(integrands: list[str], limit_s: float, workers: int) -> list[dict]:
    """``sympy_item`` on every integrand, ``limit_s`` each, in input order.

    ``workers=0`` runs inline without a limit (tests). A timed-out item gives
    ``{"solved": False, "seconds": limit_s, "reason": "timeout", "answer": ""}``; a worker that
    died gives reason ``error``.
    """
    items = [(s, float(limit_s)) for s in integrands]
    with TimeoutPool("tsm.tasks.integration.baseline:sympy_item", workers=workers, timeout_s=limit_s,
                     init="tsm.tasks.integration.baseline:warm_up") as pool:
        results = pool.map(items)
    out = []
    for r in results:
        if r.ok:
            out.append(r.value)
        elif r.timed_out:
            out.append({"solved": False, "seconds": float(limit_s), "reason": "timeout", "answer": ""})
        else:
            out.append({"solved": False, "seconds": 0.0, "reason": "error", "answer": r.error or ""})
    return out
