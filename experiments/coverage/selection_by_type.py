"""Which kinds of function selective backprop trains on, from a run's metrics CSV.

    python experiments/coverage/selection_by_type.py <run>/sft/csv/version_0/metrics.csv

A run with ``sft.module.select_fraction`` < 1 on the fresh-function stream logs, every step, the
rows drawn (``train/candidates/<type>``) and trained on (``train/selected/<type>``) per family
(course and variant draws by kind: ``variant/sum`` is f + g). This sums them over the run and prints
each family's share of the draws, its share of the trained rows, and its selection rate (the
fraction of its draws that were trained on; the run's overall rate is ``select_fraction``): a family
above the overall rate is one the model finds harder than the average draw.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tsm.algorithms.sft import selection_by_type


def table(counts: dict[str, tuple[int, int]]) -> list[list[str]]:
    drawn = sum(c for c, _ in counts.values())
    chosen = sum(s for _, s in counts.values())
    rows = []
    for kind, (c, s) in sorted(counts.items(), key=lambda kv: -kv[1][1] / max(kv[1][0], 1)):
        rows.append([kind, f"{c:,}", f"{100 * c / max(drawn, 1):.1f}%", f"{s:,}",
                     f"{100 * s / max(chosen, 1):.1f}%", f"{100 * s / max(c, 1):.1f}%"])
    rows.append(["all", f"{drawn:,}", "100%", f"{chosen:,}", "100%", f"{100 * chosen / max(drawn, 1):.1f}%"])
    return rows


HEADER = ["family", "drawn", "share of draws", "trained on", "share of trained rows", "selection rate"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics_csv")
    args = parser.parse_args(argv)
    counts = selection_by_type(args.metrics_csv)
    if not counts:
        raise SystemExit(f"{args.metrics_csv}: no train/candidates/<type> columns (a run without "
                         "selective backprop on the fresh-function stream)")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in table(counts):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
