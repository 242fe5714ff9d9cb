"""Scoring rate of a 1,024-answer batch through the reward pool, by chunk size, with and without
one hung answer (issue 20: a hung item must cost itself only, at no loss of throughput).

    OMP_NUM_THREADS=1 python experiments/reliability/pool_rate.py [--workers 2] [--repeats 3]

The answers are the labelled reward suite (tests/reward/cases.jsonl) cycled to 1,024. The hung
answer is ``\\boxed{HANG}``, which this script's worker function turns into a 600 s sleep (a
stand-in for a parser that never returns); the pool's ``timeout_s`` is 2 s. The reward's caches are
cleared before every answer (cold, as for an RL batch's new answers; ``POOL_RATE_WARM=1`` keeps
them, which leaves almost pure IPC to measure). Printed per setting:
answers/s (best of ``--repeats``), scores kept (not timed out), timeouts. Run it against another
checkout's code with ``PYTHONPATH=<checkout> python experiments/reliability/pool_rate.py``; the
first line names the ``tsm`` it imported.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HANG = r"\boxed{HANG}"
COLD = os.environ.get("POOL_RATE_WARM") != "1"


def hanging_score_item(item):
    from tsm.reward import scoring
    from tsm.reward.batch import score_item

    if COLD:  # every answer parsed and compared afresh, as for the new answers of an RL batch
        scoring._gold.cache_clear()
        scoring._verdict.cache_clear()
    if item[0] == HANG:
        time.sleep(600)
    return score_item(item)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=1024)
    args = ap.parse_args()

    from dataclasses import asdict

    import tsm
    from tsm.parallel import TimeoutPool
    from tsm.reward.batch import _to_score
    from tsm.reward.scoring import RewardConfig

    print(f"tsm from {Path(tsm.__file__).parent}; python {sys.version.split()[0]}; workers {args.workers}; "
          f"caches {'cold' if COLD else 'warm'}")
    cases = [json.loads(line) for line in (ROOT / "tests/reward/cases.jsonl").read_text().splitlines()]
    opts = asdict(RewardConfig())
    items = [(c["response"], c["ground_truth"], opts) for c in (cases * (args.n // len(cases) + 1))[: args.n]]
    hung = list(items)
    hung[args.n // 3] = (HANG, items[0][1], opts)
    print(f"{'chunk':>5} {'hung':>4} {'answers/s':>10} {'kept':>6} {'timeouts':>8}")
    for chunk in (1, 8):
        for batch, label in ((items, "no"), (hung, "yes")):
            with TimeoutPool("pool_rate:hanging_score_item", args.workers, 2.0,
                             init="tsm.reward.batch:warm_up") as pool:
                pool.map(items[:64])  # start the workers and warm the caches
                best, res = float("inf"), []
                for _ in range(args.repeats if label == "no" else 1):
                    t0 = time.perf_counter()
                    res = pool.map(batch, chunk_size=chunk)
                    best = min(best, time.perf_counter() - t0)
            scores = [_to_score(r) for r in res]
            kept = sum(s.reason != "timeout" for s in scores)
            print(f"{chunk:>5} {label:>4} {len(batch) / best:>10.0f} {kept:>6} {len(batch) - kept:>8}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
