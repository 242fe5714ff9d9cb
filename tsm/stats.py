"""The statistics every reported accuracy carries: a 95% interval, and a paired test between two
models scored on the same rows."""

from __future__ import annotations

import csv
import math
from collections.abc import Hashable, Mapping
from pathlib import Path


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``correct / n`` (sound near 0 and 1, unlike p ± 2se)."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} outside [0, n={n}]")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value for `wins` against `losses` (ties dropped): the paired
    test for two models on the same rows (wins = rows only the second solves)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_sign_test(first: Mapping[Hashable, bool], other: Mapping[Hashable, bool]) -> tuple[int, int, float]:
    """Two models' verdicts on the same rows (row key -> solved): (rows only ``other`` solves, rows
    only ``first`` solves, the sign-test p over them). ``ValueError`` when the rows differ."""
    if first.keys() != other.keys():
        raise ValueError("the two score different rows; compare evaluations of the same test split")
    only_other = sum(other[k] and not first[k] for k in first)
    only_first = sum(first[k] and not other[k] for k in first)
    return only_other, only_first, sign_test(only_other, only_first)


def describe(correct: int, n: int) -> str:
    """``95.12% [94.5, 95.7] (4756/5000)``: the form every accuracy is printed in."""
    lo, hi = wilson_interval(correct, n)
    return f"{100 * correct / max(n, 1):.2f}% [{100 * lo:.1f}, {100 * hi:.1f}] ({correct}/{n})"


def read_verdicts(path: str | Path) -> dict[str, dict[str, bool]]:
    """Every model column of a committed per-row verdicts CSV (header ``index,<model>,...``, one row
    per test row, 1 = solved), in file order, each keyed by the row index (a string)."""
    with open(path, newline="") as fh:
        table = list(csv.DictReader(fh))
    columns = [c for c in (table[0] if table else {}) if c != "index"]
    return {c: {r["index"]: r[c] == "1" for r in table} for c in columns}


def is_verdict_column(spec: str) -> bool:
    """Whether a command-line model names ``FILE.csv:COLUMN`` of a verdicts CSV (not a parquet)."""
    return spec.rpartition(":")[0].endswith(".csv")


def read_verdict_column(spec: str) -> dict[str, bool]:
    """One model's verdicts from ``FILE.csv:COLUMN`` (keyed by row index); a column the file lacks
    is a ``SystemExit`` naming the columns it has (the experiment scripts' one-line error)."""
    path, _, column = spec.rpartition(":")
    columns = read_verdicts(path)
    if column not in columns:
        raise SystemExit(f"{path} has no model column {column!r} (it has {', '.join(columns) or 'none'})")
    return columns[column]
