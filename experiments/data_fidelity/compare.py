"""Compare our differentiation data with Diff-TSM's own samples, side by side.

    python experiments/data_fidelity/compare.py [--workers 2] [--simplify fast|exact]

For each simplicity (0.0, 0.5, 1.0) it draws candidates with our generator at the reference
settings (max_coefficient 40, max_power 5, max_length 100, depth 4), dedups them like the
reference (by LaTeX string, first occurrence), and compares with
``/work/shared/diff_tsm_reference/sample_simplicity_{00,05,10}.jsonl``: function_type shares,
LaTeX lengths of f and f' (means and two-sample KS statistics) and operator frequencies (share
of functions whose LaTeX contains each operator). Targets: shares within 3 points, KS <= 0.1.

Like with like: the reference files hold every unique function from a fixed number of draws
(dedup shrinks repeated short trees, so the tree share and the lengths of a deduped sample
depend on how many draws it came from). We draw the same number: ~3000 at 0.0, 4500 at 0.5
(1.5x its ~3000 target), 1000 unique at 1.0 (templates never repeat). The rows also report
our builder's own dedup (canonical sympy form) on the same draws, to show it merges what the
LaTeX dedup merges.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from scipy.stats import ks_2samp

from tsm.data.build import DatasetSpec, _task_args
from tsm.math.sampling import FUNCTION_TYPES
from tsm.parallel import TimeoutPool

REFERENCE = Path("/work/shared/diff_tsm_reference")
SETTINGS = ((0.0, "00", 3000, None), (0.5, "05", 4500, None), (1.0, "10", None, 1000))
OPERATORS = ("\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc", "\\sinh", "\\cosh", "\\tanh",
             "e^", "\\log", "\\sqrt", "\\frac", "^")


def op_share(rows: list[dict], field: str, op: str) -> float:
    def has(text: str) -> bool:
        if op in ("\\sin", "\\cos", "\\tan"):  # \sin but not \sinh
            return any(not text[i + len(op):i + len(op) + 1].isalpha()
                       for i in _find_all(text, op))
        return op in text
    return sum(has(r[field]) for r in rows) / max(1, len(rows))


def _find_all(text: str, sub: str):
    i = text.find(sub)
    while i >= 0:
        yield i
        i = text.find(sub, i + 1)


def draw(simplicity: float, draws: int | None, unique: int | None, workers: int, simplify: str,
         seed: int) -> tuple[list[dict], dict]:
    """Unique rows (LaTeX dedup) from ``draws`` candidates, or until ``unique`` rows."""
    spec = DatasetSpec(simplicity=simplicity, n_train=1, n_test=0, simplify=simplify,
                       variations=False, seed=seed)
    args = _task_args(spec)
    rows, seen_latex, seen_key, stats = [], set(), set(), Counter()
    index, chunk = 0, 500
    began = time.perf_counter()
    with TimeoutPool("tsm.data.build:generate_candidate", workers, 30.0) as pool:
        while (draws is not None and index < draws) or (unique is not None and len(rows) < unique):
            stop = index + chunk if draws is None else min(index + chunk, draws)
            for result in pool.map([(args, i) for i in range(index, stop)], chunk_size=25):
                stats["candidates"] += 1
                if not result.ok:
                    stats["timeout" if result.timed_out else "error"] += 1
                    continue
                status, value = result.value
                if status != "ok":
                    stats["rejected"] += 1
                    continue
                if value["key"] not in seen_key:
                    seen_key.add(value["key"])
                if value["function"] in seen_latex:
                    stats["duplicates"] += 1
                    continue
                seen_latex.add(value["function"])
                if unique is None or len(rows) < unique:
                    rows.append(value)
            index = stop
    stats["unique_latex"] = len(seen_latex)
    stats["unique_canonical"] = len(seen_key)
    stats["seconds"] = round(time.perf_counter() - began, 1)
    return rows, dict(stats)


def compare(ours: list[dict], ref: list[dict]) -> tuple[list[str], dict]:
    lines, verdict = [], {"max_share_gap": 0.0, "ks": {}}
    lines.append(f"  {'function_type':<20}{'ours':>8}{'ref':>8}{'gap':>8}")
    c_ours = Counter(r["function_type"] for r in ours)
    c_ref = Counter(r["function_type"] for r in ref)
    for kind in FUNCTION_TYPES:
        a, b = 100 * c_ours[kind] / len(ours), 100 * c_ref[kind] / len(ref)
        verdict["max_share_gap"] = max(verdict["max_share_gap"], abs(a - b))
        lines.append(f"  {kind:<20}{a:7.1f}%{b:7.1f}%{a - b:+7.1f}")
    lines.append(f"  {'LaTeX length':<20}{'ours':>8}{'ref':>8}{'KS':>8}")
    for field in ("function", "derivative"):
        la, lb = [len(r[field]) for r in ours], [len(r[field]) for r in ref]
        ks = ks_2samp(la, lb).statistic
        verdict["ks"][field] = ks
        lines.append(f"  {'mean ' + field:<20}{sum(la) / len(la):8.1f}{sum(lb) / len(lb):8.1f}"
                     f"{ks:8.3f}")
    lines.append(f"  {'operator in f':<20}{'ours':>8}{'ref':>8}{'gap':>8}")
    for op in OPERATORS:
        a, b = 100 * op_share(ours, "function", op), 100 * op_share(ref, "function", op)
        lines.append(f"  {op:<20}{a:7.1f}%{b:7.1f}%{a - b:+7.1f}")
    return lines, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--simplify", choices=("fast", "exact"), default="fast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=float, default=None, help="one simplicity only")
    opts = parser.parse_args()
    ok = True
    for simplicity, tag, draws, unique in SETTINGS:
        if opts.only is not None and simplicity != opts.only:
            continue
        ref = [json.loads(line) for line in (REFERENCE / f"sample_simplicity_{tag}.jsonl").open()]
        ours, stats = draw(simplicity, draws, unique, opts.workers, opts.simplify, opts.seed)
        what = f"{draws} candidates" if draws else f"until {unique} unique"
        print(f"simplicity {simplicity}: ours {len(ours)} rows ({what}, simplify={opts.simplify}, "
              f"seed {opts.seed}) vs reference {len(ref)} rows")
        print(f"  our draws: {stats}")
        lines, verdict = compare(ours, ref)
        print("\n".join(lines))
        good = verdict["max_share_gap"] <= 3.0 and max(verdict["ks"].values()) <= 0.1
        ok &= good
        print(f"  -> max share gap {verdict['max_share_gap']:.1f} points, KS f "
              f"{verdict['ks']['function']:.3f}, KS f' {verdict['ks']['derivative']:.3f}: "
              f"{'within targets' if good else 'OUTSIDE TARGETS'}\n")
    print("all within targets" if ok else "some settings outside targets")


if __name__ == "__main__":
    main()
