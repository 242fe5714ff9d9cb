"""Score the labelled reward suite with three verifiers in one run and compare them.

    python experiments/reward_bench/bench.py [--cases tests/reward/cases.jsonl] [--timeout 10]

Verifiers:
- ``tsm``: ``tsm.reward.score`` (gold cache warm after the first response per gold, as in RL).
- ``tsm-cold``: the same with its caches cleared before every item (worst case).
- ``math-verify``: HF's ``math_verify.parse`` + ``verify`` on the full response; the gold is given
  as LaTeX (Diff-TSM's LaTeX as is; our plain golds through ``sympy.latex``).
- ``simplify``: our extraction, prefix rule and parser on both sides, then
  ``sympy.simplify(a - b) == 0`` (so only the equivalence step differs from ``tsm``).

Each verifier runs in its own single-worker ``tsm.parallel.TimeoutPool`` (so numbers are per
core and a hang costs one item, counted as wrong at the cap). Latency is measured inside the
worker around the verdict, as CPU time of the worker process (``time.process_time``: per-core
cost, unaffected by other jobs sharing the cores) and as wall time. Printed: verdict agreement
with the labels, false positives and negatives, timeouts, mean / p99 / max CPU ms per answer
(also split by right and wrong answers), wall mean / p99, answers per second per core.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("tsm", "tsm-cold", "math-verify", "simplify")


def _latex_gold(gt: str) -> str:
    import sympy

    from tsm.math.parse import parse_expression

    if "\\" in gt or "{" in gt:
        return gt
    return sympy.latex(parse_expression(gt))


def judge(item: tuple[str, str, str]) -> tuple[bool, float, float]:
    """Pool worker: (method, response, ground truth) -> (verdict, wall s, CPU s)."""
    c0 = time.process_time()
    ok, wall = _judge(*item)
    return ok, wall, time.process_time() - c0


def _judge(method: str, response: str, gt: str) -> tuple[bool, float]:
    if method in ("tsm", "tsm-cold"):
        from tsm.reward import score, scoring

        if method == "tsm-cold":
            scoring._gold.cache_clear()
            scoring._verdict.cache_clear()
        t0 = time.perf_counter()
        ok = score(response, gt).correct
        return ok, time.perf_counter() - t0
    if method == "math-verify":
        from math_verify import parse, verify

        gold_tex = "$" + _latex_gold(gt) + "$"
        t0 = time.perf_counter()
        ok = bool(verify(parse(gold_tex), parse(response)))
        return ok, time.perf_counter() - t0
    if method == "simplify":
        import sympy

        from tsm.math.parse import ParseError, parse_expression
        from tsm.reward.extract import extract_boxed
        from tsm.reward.scoring import _is_derivative_prefix

        t0 = time.perf_counter()
        parts = (extract_boxed(response).answer or "").split("=")
        if len(parts) > 2 or (len(parts) == 2 and not _is_derivative_prefix(parts[0])):
            return False, time.perf_counter() - t0
        try:
            a, b = parse_expression(parts[-1]), parse_expression(gt)
            ok = sympy.simplify(a - b) == 0
        except ParseError:
            ok = False
        return ok, time.perf_counter() - t0
    raise ValueError(method)


def warm() -> None:
    _judge("tsm", "\\boxed{2x}", "2*x")


def _mean(xs: list[float]) -> float:
    return 1e3 * sum(xs) / len(xs) if xs else float("nan")


def _p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return 1e3 * xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=str(ROOT / "tests" / "reward" / "cases.jsonl"))
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from tsm.parallel import TimeoutPool

    cases = [json.loads(line) for line in Path(args.cases).read_text().splitlines()]
    labels = [c["correct"] for c in cases]
    print(f"{len(cases)} cases ({sum(labels)} right, {len(cases) - sum(labels)} wrong), "
          f"per-item cap {args.timeout:g} s\n")
    print("| verifier | agree | false pos | false neg | timeouts | mean ms | mean ms right / wrong "
          "| p99 ms | p99 ms right / wrong | max ms | wall mean / p99 ms | answers/s/core |")
    print("|" + "---|" * 12)
    fp_kinds: dict[str, Counter] = {}
    for method in args.methods.split(","):
        with TimeoutPool("bench:judge", workers=1, timeout_s=args.timeout, init="bench:warm") as pool:
            results = pool.map([(method, c["response"], c["ground_truth"]) for c in cases])
        verdicts, wall, cpu, timeouts = [], [], [], 0
        for r in results:
            if r.ok:
                verdicts.append(r.value[0])
                wall.append(r.value[1])
                cpu.append(r.value[2])
            else:
                timeouts += r.timed_out
                verdicts.append(False)
                wall.append(args.timeout)
                cpu.append(args.timeout)
        agree = sum(v == lab for v, lab in zip(verdicts, labels))
        fp = sum(v and not lab for v, lab in zip(verdicts, labels))
        fn = sum(lab and not v for v, lab in zip(verdicts, labels))
        right = [t for t, lab in zip(cpu, labels) if lab]
        wrong = [t for t, lab in zip(cpu, labels) if not lab]
        print(f"| {method} | {agree}/{len(cases)} | {fp} | {fn} | {timeouts} | {_mean(cpu):.2f} "
              f"| {_mean(right):.2f} / {_mean(wrong):.2f} | {_p99(cpu):.1f} "
              f"| {_p99(right):.1f} / {_p99(wrong):.1f} | {max(cpu) * 1e3:.0f} "
              f"| {_mean(wall):.2f} / {_p99(wall):.1f} | {1e3 / _mean(cpu):.0f} |", flush=True)
        fp_kinds[method] = Counter(c["kind"] for c, v in zip(cases, verdicts)
                                   if v and not c["correct"])
    print("\nfalse positives by case kind:")
    for method, kinds in fp_kinds.items():
        print(f"- {method}: " + (", ".join(f"{k} {n}" for k, n in kinds.most_common()) or "none"))


if __name__ == "__main__":
    main()
