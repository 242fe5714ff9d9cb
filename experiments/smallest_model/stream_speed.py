"""Does the fresh-function stream keep ahead of training? Both measured in one process, one run.

Generation: one process (what one DataLoader worker does) produces the candidates of `--steps`
steps of `experiment=smallest`'s stream (batch 64, oversample 1.25). Training: tiny_5m takes
`--steps` optimizer steps on those batches (AdamW, fp32, the recipe's batch). Prints seconds per
step for each and their ratio: how many training processes one generation worker can feed.

    OMP_NUM_THREADS=2 python experiments/smallest_model/stream_speed.py --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from tsm.data.build import DatasetSpec, build_dataset, excluded_functions
    from tsm.data.datamodule import collate
    from tsm.data.stream import StepGenerator, StreamConfig
    from tsm.models import TINY_PRESETS, build_math_tokenizer, build_tiny_model

    tok = build_math_tokenizer()
    spec = DatasetSpec(simplicity=0.5, variations=True, n_train=256, n_test=5000, seed=100, workers=2)
    build_dataset(spec)  # the headline split: its functions are kept out, as in the recipe
    excluded = frozenset(excluded_functions(dataclasses.replace(spec, exclude=[dataclasses.asdict(spec)])))
    gen = StepGenerator(spec, StreamConfig(seed=1000, simplicity=0.2), tok, 320, excluded,
                        keep=int(args.batch_size * 1.25 + 0.999))
    t0 = time.perf_counter()
    batches = [gen.candidates(s)[0][: args.batch_size] for s in range(args.steps)]
    gen_s = (time.perf_counter() - t0) / args.steps

    model = build_tiny_model(TINY_PRESETS["tiny_5m"], tok)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pad = tok.pad_token_id
    t0 = time.perf_counter()
    for cands in batches:
        batch = collate([c.example for c in sorted(cands, key=lambda c: len(c.example.input_ids))], pad)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    train_s = (time.perf_counter() - t0) / args.steps
    print(f"threads {os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.steps} steps of {args.batch_size}")
    print(f"generation (one process): {gen_s:.3f} s/step")
    print(f"training tiny_5m:         {train_s:.3f} s/step")
    print(f"ratio: one generation worker feeds {train_s / gen_s:.2f}x the training rate")


if __name__ == "__main__":
    main()
