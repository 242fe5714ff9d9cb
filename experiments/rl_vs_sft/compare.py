"""The RL-vs-SFT table: each arm against the start model on the same test rows.

    python experiments/rl_vs_sft/compare.py START/responses.parquet NAME=ARM/responses.parquet ... \
        [--minutes NAME=MIN ...] [--verdicts verdicts.csv]
    python experiments/rl_vs_sft/compare.py --from-verdicts experiments/rl_vs_sft/verdicts.csv
    python experiments/rl_vs_sft/compare.py OLD_verdicts.csv:COLUMN NAME=NEW/responses.parquet ...

Any model (start or arm) may also be a column of a verdicts CSV this script wrote (`FILE.csv:COLUMN`),
so a new model pairs with committed per-row verdicts without re-running the old one; rows are then
matched by their test-row index.

Reads `evaluate.py` (or `train.py`'s `test_after/`) responses parquets scored on the same rows,
generates nothing, and prints a markdown table: Accuracy@1 with its 95% Wilson interval, the error
rate and its relative cut against the start (the issue's goal: >= 25% with p < 0.01), the rows only
the arm / only the start solves and the two-sided exact sign-test p over them, and the same against
the equal-time SFT arm when one is named `sft`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tsm.stats import (
    is_verdict_column,
    paired_sign_test,
    read_verdict_column,
    read_verdicts,
    wilson_interval,
)


def verdicts(path: str) -> dict[tuple, bool]:
    """(row index, function) -> greedy first sample correct."""
    out = {}
    for row in pq.read_table(path, columns=["extra_info", "scores"]).to_pylist():
        info = row["extra_info"]
        out[(info.get("index"), info["function"])] = bool(row["scores"]) and float(row["scores"][0]) >= 1.0
    return out


def csv_verdicts(path: str) -> dict[str, dict[tuple, bool]]:
    """Every model column of a verdicts CSV this script wrote, in file order (keyed by row index)."""
    return {c: {(i,): v for i, v in rows.items()} for c, rows in read_verdicts(path).items()}


def load(spec: str) -> dict[tuple, bool]:
    """A responses parquet, or ``FILE.csv:COLUMN`` of a verdicts CSV (keyed by row index only)."""
    if not is_verdict_column(spec):
        return verdicts(spec)
    return {(i,): v for i, v in read_verdict_column(spec).items()}


def by_index(models: list[dict[tuple, bool]]) -> list[dict[tuple, bool]]:
    """When any model comes from a verdicts CSV, key every model by row index alone."""
    if all(len(k) == 2 for m in models for k in m):
        return models
    out = []
    for m in models:
        keyed = {(str(k[0]),): v for k, v in m.items()}
        if len(keyed) != len(m):
            raise SystemExit("row indices repeat: pair these files by their parquets instead")
        out.append(keyed)
    return out


def paired(a: dict[tuple, bool], b: dict[tuple, bool]) -> tuple[int, int, float]:
    """(rows only b solves, rows only a solves, sign-test p); both must hold the same rows."""
    try:
        return paired_sign_test(a, b)
    except ValueError:
        raise SystemExit("the two files hold different rows: compare models on the same test set") from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("start", nargs="?", help="responses parquet of the start model")
    ap.add_argument("arms", nargs="*", help="NAME=responses parquet")
    ap.add_argument("--from-verdicts", help="read the models' per-row verdicts from a CSV this script wrote")
    ap.add_argument("--minutes", nargs="*", default=[], help="NAME=training minutes, printed beside")
    ap.add_argument("--verdicts", help="also write a CSV: one row per test row, one 0/1 column per model")
    args = ap.parse_args(argv)
    if args.from_verdicts:
        columns = csv_verdicts(args.from_verdicts)
        first, *names = columns   # the first model column is the start
        start, arms = columns[first], {n: columns[n] for n in names}
    elif args.start and args.arms:
        named = [a.split("=", 1) for a in args.arms]
        start, *rest = by_index([load(args.start), *(load(path) for _, path in named)])
        arms = dict(zip((name for name, _ in named), rest))
    else:
        ap.error("give START and NAME=ARM parquets, or --from-verdicts CSV")
    minutes = dict(m.split("=", 1) for m in args.minutes)
    n = len(start)
    err0 = 1 - sum(start.values()) / n
    print("| arm | minutes | Accuracy@1 [95% interval] | error rate | error cut vs start | only arm / only start | p vs start |"
          + (" only arm / only sft | p vs sft |" if "sft" in arms else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if "sft" in arms else ""))
    c0 = sum(start.values())
    lo, hi = wilson_interval(c0, n)
    print(f"| start | 0 | {100 * c0 / n:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}] | {100 * err0:.2f}% | | | |"
          + (" | |" if "sft" in arms else ""))
    for name, v in arms.items():
        c = sum(v.values())
        lo, hi = wilson_interval(c, n)
        err = 1 - c / n
        w, lsum, p = paired(start, v)
        cut = (err0 - err) / err0 if err0 else 0.0
        line = (f"| {name} | {minutes.get(name, '')} | {100 * c / n:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}] | "
                f"{100 * err:.2f}% | {100 * cut:+.1f}% | {w} / {lsum} | {p:.2g} |")
        if "sft" in arms:
            if name == "sft":
                line += " | |"
            else:
                w2, l2, p2 = paired(arms["sft"], v)
                line += f" {w2} / {l2} | {p2:.2g} |"
        print(line)
    print(f"\n{n} rows; p: two-sided exact sign test over the rows only one of the two solves.")
    if args.verdicts:
        import csv

        with open(args.verdicts, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "start", *arms])
            for key in sorted(start, key=lambda k: (k[0] is None, int(k[0]) if k[0] is not None else 0, k[1:])):
                w.writerow([key[0], int(start[key]), *(int(v[key]) for v in arms.values())])


if __name__ == "__main__":
    main()
