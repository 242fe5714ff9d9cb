"""Serving throughput: N sequential ``POST /api/differentiate`` requests against tsm.serve.

    OMP_NUM_THREADS=1 python experiments/serving/bench.py --checkpoint tsm-diff-5m -n 50

The server runs in this process (a thread; the same ``make_server`` as ``python -m tsm.serve``)
with ``--threads`` torch threads (default 1), and one client sends the requests one after the
other over HTTP, so a latency is the whole round trip: JSON, parsing f, the prompt, greedy
generation, the reward's check. The functions are the task's own draws (simplicity 0.5, fixed
phrasing, ``--seed``), sent as LaTeX; one warm-up request is not counted. Prints the thread count,
answers/s, median and p90 latency, and how many answers the verifier judged correct.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.request


def functions(n: int, seed: int) -> list[str]:
    """n distinct functions (LaTeX) drawn by the differentiation task's generator."""
    from tsm.tasks.base import Rejected
    from tsm.tasks.differentiation import DifferentiationTask

    task, rng, out = DifferentiationTask(simplicity=0.5, variations=False), random.Random(seed), []
    while len(out) < n:
        try:
            latex = task.sample(rng).function_latex
        except Rejected:
            continue
        if latex not in out:
            out.append(latex)
    return out


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="tsm-diff-5m")
    p.add_argument("-n", "--requests", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="torch threads for generation")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch

    from tsm.serve import Differentiator, make_server, url_of

    torch.set_num_threads(args.threads)
    fs = functions(args.requests, args.seed)
    t0 = time.perf_counter()
    differentiator = Differentiator(args.checkpoint, args.max_new_tokens)
    load_s = time.perf_counter() - t0
    server = make_server(differentiator, "127.0.0.1", 0, log_requests=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = url_of(server) + "api/differentiate"
    try:
        post(url, {"function": "x^2"})  # warm-up
        latencies, generate_s, correct = [], [], 0
        start = time.perf_counter()
        for f in fs:
            t = time.perf_counter()
            out = post(url, {"function": f})
            latencies.append(time.perf_counter() - t)
            generate_s.append(out["generate_seconds"])
            correct += out["verdict"] == "correct"
        wall = time.perf_counter() - start
    finally:
        server.shutdown()
        server.server_close()
    latencies.sort()
    result = {
        "checkpoint": args.checkpoint, "requests": len(fs), "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "load_s": round(load_s, 2),
        "answers_per_s": round(len(fs) / wall, 2),
        "latency_median_s": round(statistics.median(latencies), 4),
        "latency_p90_s": round(latencies[int(0.9 * (len(latencies) - 1))], 4),
        "generate_median_s": round(statistics.median(generate_s), 4),
        "correct": correct, "wall_s": round(wall, 2),
    }
    print(f"torch threads: {result['torch_threads']} (OMP_NUM_THREADS={result['OMP_NUM_THREADS']})")
    print(f"{args.checkpoint}: {len(fs)} sequential requests in {wall:.2f} s: "
          f"{result['answers_per_s']} answers/s, median latency {result['latency_median_s'] * 1000:.0f} ms "
          f"(p90 {result['latency_p90_s'] * 1000:.0f} ms; generation median "
          f"{result['generate_median_s'] * 1000:.0f} ms), {correct}/{len(fs)} correct")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
