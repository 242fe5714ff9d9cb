"""The integration table: models and sympy.integrate on the same test rows, paired.

    python experiments/integration/compare.py \
        --sympy 1s=experiments/integration/records/sympy_1s.csv 10s=experiments/integration/records/sympy_10s.csv \
        --model NAME=RUN/test_after/responses.parquet [NAME=...] [--any NAME=SAMPLED/responses.parquet] \
        [--seconds NAME=SECONDS_PER_ANSWER ...] [--rows TEST.parquet] \
        [--verdicts experiments/integration/records/verdicts.csv]
    python experiments/integration/compare.py --from-verdicts experiments/integration/records/verdicts.csv
        [--model NAME=... --any NAME=...] [--pair A=B ...]

Reads the sympy baseline CSVs (``sympy_baseline.py``: one row per test row, in test order) and
model responses parquets (``evaluate.py`` / ``train.py``'s ``test_after/``: greedy, first sample),
generates nothing, and prints a markdown table: solved share with its 95% Wilson interval, seconds
per problem where known, and for every model the rows only it / only sympy (each limit) solves with
the two-sided exact sign-test p. ``--verdicts`` writes the per-row verdicts, from which
``--from-verdicts`` reprints the same table without the big files.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tsm.stats import describe, paired_sign_test


def sympy_verdicts(path: str) -> tuple[dict[int, bool], dict[int, float]]:
    solved, seconds = {}, {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            i = int(row["index"])
            solved[i] = row["solved"] == "True"
            seconds[i] = float(row["seconds"])
    return solved, seconds


def model_verdicts(path: str, any_sample: bool = False) -> dict[int, bool]:
    """Row index -> the first sample (or, with ``any_sample``, any sample) is correct."""
    out = {}
    for row in pq.read_table(path, columns=["extra_info", "scores"]).to_pylist():
        scores = [float(s) for s in row["scores"] or []]
        out[int(row["extra_info"]["index"])] = any(s >= 1.0 for s in (scores if any_sample else scores[:1]))
    return out


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{what}: expected NAME=PATH, got {item!r}")
        out.append(tuple(item.split("=", 1)))
    return out


def table(columns: dict[str, dict[int, bool]], seconds: dict[str, float | None], sympy_names: list[str]) -> str:
    keys = None
    for name, v in columns.items():
        if keys is None:
            keys = set(v)
        elif set(v) != keys:
            raise SystemExit(f"{name} holds other rows than the first column: compare on the same test set")
    lines = ["| solver | solved (95% interval) | s / problem | " + " | ".join(f"vs sympy {s}: only model / only sympy, p" for s in sympy_names) + " |",
             "|---|---|---|" + "---|" * len(sympy_names)]
    for name, v in columns.items():
        cells = []
        for s in sympy_names:
            if name.startswith("sympy"):
                cells.append("")
                continue
            only_model, only_sympy, p = paired_sign_test(columns[f"sympy {s}"], v)
            cells.append(f"{only_model} / {only_sympy}, p = {p:.2g}")
        sec = seconds.get(name)
        lines.append(f"| {name} | {describe(sum(v.values()), len(v))} | {'' if sec is None else f'{sec:.3f}'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def by_type(columns: dict[str, dict[int, bool]], kinds: dict[int, str]) -> str:
    """Solved share per function type (the generator family of F), one column per solver."""
    types = sorted(set(kinds.values()), key=lambda t: (t == "composite-complex", t))
    lines = ["| function type | rows | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for t in types:
        idx = [i for i, k in kinds.items() if k == t]
        cells = [f"{100 * sum(v[i] for i in idx) / len(idx):.1f}%" for v in columns.values()]
        lines.append(f"| {t} | {len(idx)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sympy", nargs="*", default=[], help="LIMIT=CSV from sympy_baseline.py")
    ap.add_argument("--model", nargs="*", default=[], help="NAME=responses.parquet (first sample)")
    ap.add_argument("--any", nargs="*", default=[], help="NAME=responses.parquet: solved when any sample "
                    "passes the check (the check needs only f, so a model + check solver returns that one)")
    ap.add_argument("--seconds", nargs="*", default=[], help="NAME=seconds per answer (a model's mean)")
    ap.add_argument("--rows", help="the test parquet: adds a table by function type")
    ap.add_argument("--verdicts", help="write the per-row verdicts here")
    ap.add_argument("--from-verdicts", help="start from a verdicts CSV's columns (reprints its table; "
                    "--model/--any/--sympy add columns to it)")
    ap.add_argument("--pair", nargs="*", default=[], help="A=B: the paired sign test of two named columns "
                    "(rows only A / only B solves)")
    args = ap.parse_args(argv)

    columns: dict[str, dict[int, bool]] = {}
    kinds: dict[int, str] = {}
    seconds: dict[str, float | None] = {}
    per_row: dict[str, dict[int, float]] = {}  # seconds per row (sympy: measured; models: the mean given)
    if args.from_verdicts:
        with open(args.from_verdicts) as fh:
            rows = list(csv.DictReader(fh))
        names = [c for c in rows[0] if c not in ("index", "function_type") and not c.startswith("seconds ")]
        kinds = {int(r["index"]): r["function_type"] for r in rows if r.get("function_type")}
        for name in names:
            columns[name] = {int(r["index"]): r[name] == "1" for r in rows}
            col = f"seconds {name}"
            vals = [float(r[col]) for r in rows if r.get(col)]
            seconds[name] = sum(vals) / len(vals) if vals else None
            if vals:
                per_row[name] = {int(r["index"]): float(r[col]) for r in rows if r.get(col)}
    for limit, path in _pairs(args.sympy, "--sympy"):
        solved, secs = sympy_verdicts(path)
        columns[f"sympy {limit}"] = solved
        seconds[f"sympy {limit}"] = sum(secs.values()) / len(secs)
        per_row[f"sympy {limit}"] = secs
    for name, path in _pairs(args.model, "--model"):
        columns[name] = model_verdicts(path)
    for name, path in _pairs(args.any, "--any"):
        columns[name] = model_verdicts(path, any_sample=True)
    for name, value in _pairs(args.seconds, "--seconds"):
        seconds[name] = float(value)
        per_row[name] = dict.fromkeys(columns[name], float(value))
    if args.rows:
        kinds = {int(r["extra_info"]["index"]): r["extra_info"]["function_type"]
                 for r in pq.read_table(args.rows, columns=["extra_info"]).to_pylist()}
    sympy_names = [n.split(" ", 1)[1] for n in columns if n.startswith("sympy ")]
    print(table(columns, seconds, sympy_names))
    if kinds:
        print()
        print(by_type(columns, kinds))
    for a, b in _pairs(args.pair, "--pair"):
        for name in (a, b):
            if name not in columns:
                raise SystemExit(f"--pair: no column {name!r}; columns: {list(columns)}")
        only_a, only_b, p = paired_sign_test(columns[b], columns[a])
        print(f"\n{a} vs {b}: only {a} {only_a}, only {b} {only_b}, two-sided exact sign test p = {p:.2g}")
    if args.verdicts:
        index = sorted(next(iter(columns.values())))
        with open(args.verdicts, "w", newline="") as fh:
            w = csv.writer(fh)
            timed = [n for n in columns if n in per_row]
            w.writerow(["index", "function_type", *columns, *(f"seconds {n}" for n in timed)])
            for i in index:
                w.writerow([i, kinds.get(i, ""), *(int(columns[n][i]) for n in columns),
                            *(per_row[n][i] for n in timed)])


if __name__ == "__main__":
    main()
