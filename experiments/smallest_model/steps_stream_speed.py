"""Fresh-function stream generation with ``sft_target=steps`` against ``answer`` (the peer), same run.

    OMP_NUM_THREADS=1 python experiments/smallest_model/steps_stream_speed.py [--steps 6] [--keep 80]

Both generators draw the same functions (the same stream seed and candidates); ``steps`` also builds
each function's derivation (tsm/tasks/differentiation/steps.py). Prints CPU seconds per step of
``keep`` candidates (``process_time``: robust to other processes) after a warm-up round of each, the
ratio, and the mean and largest target token counts, so one can check that one stream worker keeps
ahead of a training step and what the longer targets cost in tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tsm.data.build import DatasetSpec
from tsm.data.sft import IGNORE_INDEX
from tsm.data.stream import StepGenerator, StreamConfig
from tsm.models import build_math_tokenizer


def measure(target: str, spec: DatasetSpec, cfg: StreamConfig, tokenizer, steps: int, keep: int,
            first: int) -> tuple[float, list[int]]:
    gen = StepGenerator(spec, cfg, tokenizer, 384, frozenset(), keep, target)
    start = time.process_time()
    tokens: list[int] = []
    for step in range(first, first + steps):
        out, _ = gen.candidates(step)
        tokens += [sum(label != IGNORE_INDEX for label in c.example.labels) for c in out]
    return (time.process_time() - start) / steps, tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--keep", type=int, default=80, help="candidates per step (64 x oversample 1.25)")
    parser.add_argument("--simplicity", type=float, default=0.2, help="the smallest recipe's stream mix")
    args = parser.parse_args(argv)
    tokenizer = build_math_tokenizer()
    spec = DatasetSpec(simplicity=args.simplicity, n_train=16, n_test=16, seed=100, output_dir="/tmp/tsm_steps_speed")
    cfg = StreamConfig(seed=9, workers=0)
    for target in ("answer", "steps"):  # warm-up: sympy caches, imports
        measure(target, spec, cfg, tokenizer, 1, args.keep, 10_000)
    answer_s, answer_tokens = measure("answer", spec, cfg, tokenizer, args.steps, args.keep, 1)
    steps_s, steps_tokens = measure("steps", spec, cfg, tokenizer, args.steps, args.keep, 1)
    print(f"| target | CPU s per step of {args.keep} | target tokens, mean | max |")
    print("|---|---|---|---|")
    for name, sec, tok in (("answer (peer)", answer_s, answer_tokens), ("steps", steps_s, steps_tokens)):
        print(f"| {name} | {sec:.2f} | {statistics.mean(tok):.0f} | {max(tok)} |")
    print(f"\nsteps / answer: {steps_s / answer_s:.2f}x the generation CPU time, "
          f"{statistics.mean(steps_tokens) / statistics.mean(answer_tokens):.2f}x the target tokens "
          f"({args.steps} steps, the same functions)")


if __name__ == "__main__":
    main()
