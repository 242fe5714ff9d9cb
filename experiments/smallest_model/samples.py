"""Right and wrong sample responses from evaluate.py's responses.parquet, as markdown.

    python experiments/smallest_model/samples.py <run>/responses.parquet [--per-type 1] [--wrong 2]

Picks, for every function type, the first right and the first `--wrong` wrong responses (test-set
order, so the same file always gives the same samples), and prints the function, the gold
derivative, the model's response and its score. Nothing is generated here.
"""

from __future__ import annotations

import argparse
from typing import Any

import pyarrow.parquet as pq


def pick(rows: list[dict[str, Any]], per_type: int, wrong: int) -> list[tuple[str, dict[str, Any], bool]]:
    """(type, row, right) triples: per type, `per_type` right then `wrong` wrong rows."""
    taken: dict[tuple[str, bool], int] = {}
    out = []
    for row in rows:
        kind = row["extra_info"].get("function_type") or "?"
        right = float(row["scores"][0]) >= 1.0
        limit = per_type if right else wrong
        if taken.get((kind, right), 0) < limit:
            taken[(kind, right)] = taken.get((kind, right), 0) + 1
            out.append((kind, row, right))
    return sorted(out, key=lambda t: (t[0], not t[2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("responses", help="responses.parquet written by evaluate.py")
    parser.add_argument("--per-type", type=int, default=1, help="right samples per function type")
    parser.add_argument("--wrong", type=int, default=1, help="wrong samples per function type")
    args = parser.parse_args()
    rows = pq.read_table(args.responses).to_pylist()
    for kind, row, right in pick(rows, args.per_type, args.wrong):
        info = row["extra_info"]
        print(f"- **{kind}, {'right' if right else 'wrong'}** (score {float(row['scores'][0]):g}): "
              f"`{info.get('function_shown') or info['function']}` → `{row['responses'][0].strip()}`"
              + ("" if right else f" — gold `{info.get('answer', info.get('derivative'))}`"))


if __name__ == "__main__":
    main()
