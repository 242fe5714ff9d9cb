"""Training tokens/s of tiny_5m on this CPU in fp32 vs bf16 autocast (why smallest_tiny5m_rl uses bf16-mixed).

    OMP_NUM_THREADS=1 python experiments/smallest_model/precision_bench.py --threads 1

One optimizer step (forward, backward, AdamW) on a random 64 x 92 batch — the answer-only
examples of conf/data/smallest.yaml average 91 tokens — timed over --steps steps after one warm-up.
"""

from __future__ import annotations

import argparse
import time

import torch

from tsm.models.math_tokenizer import build_math_tokenizer
from tsm.models.tiny import TINY_PRESETS, build_tiny_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=92)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = build_math_tokenizer()
    model = build_tiny_model(TINY_PRESETS["tiny_5m"], tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(5, len(tokenizer), (args.batch, args.length))
    rates = {}
    for mode in ("fp32", "bf16"):
        for i in range(args.steps + 1):
            if i == 1:  # step 0 warms up allocator and kernels
                t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        dt = (time.perf_counter() - t0) / args.steps
        rates[mode] = args.batch * args.length / dt
        print(f"{mode}: {dt:.3f} s/step, {rates[mode]:.0f} tokens/s ({args.threads} thread(s))")
    print(f"bf16 / fp32: {rates['bf16'] / rates['fp32']:.2f}x")


if __name__ == "__main__":
    main()
