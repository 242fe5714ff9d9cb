"""The ``sympy.integrate`` baseline on an integration test split (issue 21).

    OMP_NUM_THREADS=1 python experiments/integration/sympy_baseline.py \\
        --data PATH/test.parquet --limit 1 --workers 1 [--n-rows N] --out sympy_baseline.csv

Each row's integrand is ``extra_info.function_sympy``. Every integrand goes through
``tsm.tasks.integration.baseline.run_baseline``: ``sympy.integrate`` in a pool worker, at most
``--limit`` seconds each, judged solved iff the result is elementary, has no ``Integral`` left and
differentiates back to the integrand. Writes a CSV (index, integrand, solved, seconds, reason)
and prints the solved share with its 95% Wilson interval, mean/median seconds per problem
(a timed-out problem counts as ``--limit``), the reason counts, the wall time and the OMP threads.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq


def read_integrands(path: str, n_rows: int | None = None) -> list[str]:
    """``extra_info.function_sympy`` of the first ``n_rows`` rows (all when None)."""
    rows = pq.read_table(path, columns=["extra_info"]).column("extra_info").to_pylist()
    if n_rows is not None:
        rows = rows[:n_rows]
    return [row["function_sympy"] for row in rows]


def write_csv(path: str, integrands: list[str], results: list[dict]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "integrand", "solved", "seconds", "reason"])
        for i, (f, r) in enumerate(zip(integrands, results, strict=True)):
            writer.writerow([i, f, r["solved"], f"{r['seconds']:.4f}", r["reason"]])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="test parquet with extra_info.function_sympy")
    ap.add_argument("--limit", type=float, default=1.0, help="seconds per integrand")
    ap.add_argument("--workers", type=int, default=1, help="pool workers (0: inline, no limit)")
    ap.add_argument("--n-rows", type=int, default=None, help="only the first N rows")
    ap.add_argument("--out", required=True, help="CSV to write")
    args = ap.parse_args(argv)

    from tsm.stats import describe
    from tsm.tasks.integration.baseline import run_baseline

    integrands = read_integrands(args.data, args.n_rows)
    start = time.perf_counter()
    results = run_baseline(integrands, args.limit, args.workers)
    wall = time.perf_counter() - start
    write_csv(args.out, integrands, results)

    n = len(results)
    solved = sum(r["solved"] for r in results)
    seconds = [r["seconds"] for r in results]
    reasons = Counter(r["reason"] for r in results)
    print(f"rows: {n}")
    print(f"solved: {describe(solved, n)}")
    if seconds:
        print(f"seconds per problem: mean {statistics.fmean(seconds):.3f}, "
              f"median {statistics.median(seconds):.3f} (limit {args.limit:g} s)")
    print("reasons: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    print(f"wall: {wall:.1f} s, workers {args.workers}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"csv: {args.out}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
