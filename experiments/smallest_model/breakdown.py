"""Where the right answers are: Accuracy@1 per function type and per gold length, side by side.

    python experiments/smallest_model/breakdown.py A/responses.parquet [B/responses.parquet ...] \
        [FILE.csv:COLUMN ...] [--names A B ...] [--buckets 20 40 60 80]

Reads evaluate.py's responses.parquet files (the same test rows, scored; nothing is generated
here), or a model's column of a committed per-row verdicts CSV (`FILE.csv:COLUMN`, rows matched by
index; the functions and golds come from the first parquet given) and prints a markdown table: overall, each function type, then the random expression trees
(`composite-complex`) by the length of their gold derivative in characters, and all rows by the
largest number the gold derivative has to compute (an integer of the answer that the function does
not show: 184 in 184 x^{3} for 46 x^{4} + 29), which separates arithmetic misses from structural
ones. With two or more files
it also prints, for each later file against the first, the rows only one of the two solves and the
two-sided sign-test p-value over them (exact binomial), so "+3 points" comes with its evidence.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tsm.stats import is_verdict_column, paired_sign_test, read_verdict_column, sign_test  # noqa: F401 - sign_test: part of the script's namespace (tests)

RANDOM_TREES = "composite-complex"
NUMBER_EDGES = (10, 100, 1000)  # groups of the largest computed number: none, 1-9, 10-99, ...
_INTEGER = re.compile(r"\d+")


def computed_number(function: str, answer: str) -> int:
    """The largest integer of `answer` that `function` does not show (0 when there is none)."""
    shown = set(_INTEGER.findall(function))
    return max((int(n) for n in _INTEGER.findall(answer) if n not in shown), default=0)


def load(path: str) -> list[dict[str, Any]]:
    """Rows of one responses.parquet, each with `key`, `type`, `gold_len` and `right` (score 1.0)."""
    rows = []
    for row in pq.read_table(path, columns=["extra_info", "scores"]).to_pylist():
        info = row["extra_info"]
        answer = info.get("answer", info.get("derivative", ""))  # "derivative" before data format 3
        rows.append({
            "key": (info.get("index"), info["function"]),
            "type": info.get("function_type") or "?",
            "gold_len": len(answer),
            "number": computed_number(info["function"], answer),
            "right": bool(row["scores"]) and float(row["scores"][0]) >= 1.0,
        })
    return rows


def load_column(spec: str, like: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``FILE.csv:COLUMN`` of a verdicts CSV as rows: `like`'s rows (the same test rows, matched by
    index) with that model's verdicts."""
    right = read_verdict_column(spec)
    if set(right) != {str(r["key"][0]) for r in like}:
        raise ValueError(f"{spec} and the parquets hold different rows")
    return [{**r, "right": right[str(r["key"][0])]} for r in like]


def groups(rows: Sequence[dict[str, Any]], buckets: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Row groups in print order: all, each type (sorted), random trees by gold length bucket, all
    rows by the largest computed number."""
    out: dict[str, list[dict[str, Any]]] = {"all": list(rows)}
    for kind in sorted({r["type"] for r in rows}):
        out[kind] = [r for r in rows if r["type"] == kind]
    edges = [0, *sorted(buckets), math.inf]
    trees = out.get(RANDOM_TREES, [])
    for lo, hi in itertools.pairwise(edges):
        label = f"{RANDOM_TREES}, gold {lo + 1}–{hi} chars" if hi != math.inf else f"{RANDOM_TREES}, gold > {lo} chars"
        members = [r for r in trees if lo < r["gold_len"] <= hi]
        if members:
            out[label] = members
    numbers = [0, 1, *NUMBER_EDGES, math.inf]
    for lo, hi in itertools.pairwise(numbers):
        label = ("gold computes no number" if hi == 1 else f"largest computed number {lo}–{hi - 1}"
                 if hi != math.inf else f"largest computed number ≥ {lo}")
        members = [r for r in rows if lo <= r["number"] < hi]
        if members:
            out[label] = members
    return out


def paired(first: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]) -> tuple[int, int, float]:
    """(rows only `other` solves, rows only `first` solves, sign-test p); the rows must match."""
    return paired_sign_test({r["key"]: r["right"] for r in first}, {r["key"]: r["right"] for r in other})


def table(runs: dict[str, list[dict[str, Any]]], buckets: Sequence[int]) -> str:
    """The markdown table of accuracies (and row counts) per group, one column per run."""
    names = list(runs)
    grouped = {name: groups(rows, buckets) for name, rows in runs.items()}
    labels = list(grouped[names[0]])
    lines = ["| | rows | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for label in labels:
        size = len(grouped[names[0]][label])
        cells = []
        for name in names:
            members = grouped[name].get(label, [])
            cells.append(f"{100 * sum(r['right'] for r in members) / len(members):.1f}%" if members else "—")
        lines.append(f"| {label} | {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("responses", nargs="+",
                        help="responses.parquet files written by evaluate.py, or FILE.csv:COLUMN of a verdicts CSV")
    parser.add_argument("--names", nargs="+", help="column names (default: the files' folder names)")
    parser.add_argument("--buckets", nargs="+", type=int, default=[20, 40, 60, 80],
                        help="gold-length bucket edges in characters for the random trees")
    args = parser.parse_args(argv)
    names = args.names or [p.rpartition(":")[2] if is_verdict_column(p) else Path(p).parent.name or p
                            for p in args.responses]
    if len(names) != len(args.responses) or len(set(names)) != len(names):
        parser.error("--names needs one distinct name per file")
    parquets = {p: load(p) for p in args.responses if not is_verdict_column(p)}
    if not parquets:
        parser.error("give at least one responses.parquet: a verdicts column takes its rows from it")
    like = next(iter(parquets.values()))
    runs = {name: parquets[p] if p in parquets else load_column(p, like) for name, p in zip(names, args.responses)}
    first = names[0]
    comparisons = []  # computed before printing: files of different rows fail before any output
    for name in names[1:]:
        only_b, only_a, p = paired(runs[first], runs[name])
        tb, ta, tp = paired(*([r for r in runs[n] if r["type"] == RANDOM_TREES] for n in (first, name)))
        comparisons.append(f"\n{name} vs {first}: only {name} solves {only_b}, only {first} solves {only_a} "
                           f"(sign test p = {p:.3g}); random trees {tb} vs {ta} (p = {tp:.3g})")
    print(table(runs, args.buckets))
    for line in comparisons:
        print(line)


if __name__ == "__main__":
    main()
