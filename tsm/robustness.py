"""Robustness (issue 22; Welleck et al., "Symbolic Brittleness", AAAI 2022): for test functions a
model solves, small changes that a student would still solve, and the share the model still solves.

Variants of a solved f (each a new function with its own sympy derivative as the gold):
- ``scale``: c·f, c in 2..9;
- ``plus_constant``: f + c, c in 1..9 (f' unchanged);
- ``inner_scale``: f(kx), k in 2..5;
- ``bigger_coefficient``: the integer of f with the largest magnitude (|n| >= 2) multiplied by 10;
- ``sum``: f + g, g the next solved function.
A variant identical to f (or invalid: no x, derivative 0) is skipped. ``consistency`` is the share
of variants whose greedy answer scores correct, per variant and over all. ``evaluate.py
robustness.n_functions=200`` runs it after the main evaluation (the first solved rows, seeded).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from tsm.math.sampling import VARIANT_KINDS, vary

__all__ = ["VARIANTS", "Variant", "consistency", "make_variants"]

X = sympy.Symbol("x")
VARIANTS = VARIANT_KINDS


@dataclass(frozen=True)
class Variant:
    kind: str
    source: sympy.Expr      # the solved function it was made from
    function: sympy.Expr    # the changed function the model is asked about
    detail: str             # what was changed, e.g. "c=7"


def make_variants(functions: Sequence[sympy.Expr], seed: int = 0,
                  kinds: Sequence[str] = VARIANTS) -> list[Variant]:
    """Every kind of variant for each function (seeded), skipping the ones that change nothing."""
    unknown = set(kinds) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown robustness variants {sorted(unknown)}; known: {list(VARIANTS)}")
    rng = random.Random(seed)
    out: list[Variant] = []
    for i, f in enumerate(functions):
        for kind in kinds:
            if kind == "sum" and len(functions) < 2:
                continue
            g = functions[(i + 1) % len(functions)] if kind == "sum" else None
            made = vary(kind, f, rng, g)
            if made is None:
                continue
            v, detail = made
            if v == f or X not in v.free_symbols or sympy.diff(v, X) == 0:
                continue
            out.append(Variant(kind, f, v, detail))
    return out


def consistency(variants: Sequence[Variant], correct: Sequence[bool]) -> dict[str, float]:
    """``robustness/<kind>`` (share solved) and ``robustness/count/<kind>``, and the overall share."""
    if len(variants) != len(correct):
        raise ValueError("one verdict per variant")
    m: dict[str, float] = {}
    for kind in VARIANTS:
        got = [c for v, c in zip(variants, correct) if v.kind == kind]
        if got:
            m[f"robustness/{kind}"] = sum(got) / len(got)
            m[f"robustness/count/{kind}"] = float(len(got))
    if variants:
        m["robustness/consistency"] = sum(correct) / len(correct)
        m["robustness/count"] = float(len(correct))
    return m
