"""Rollout throughput: HFEngine against VLLMEngine on the same model, prompts and sampling, in one run.

    python experiments/rollout_bench/bench.py --prompts 32 --max-new-tokens 64 --repeats 3 --threads 2

Model: the embedded SmolLM2-135M-Instruct (fp32). Prompts: the first ``--prompts`` rows of a
differentiation dataset built for the run, chat-templated as training renders them. Sampling:
temperature 1.0, no top-k/top-p, ``--max-new-tokens`` at most, one sample per prompt, seeded.
Each engine gets one untimed warm-up call, then ``--repeats`` timed calls; the table shows the
median. ``tok/s`` counts completion tokens (the engines sample different tokens, so completions
end at different lengths; tokens per second is the fair unit). vLLM variants (``--vllm``):
``eager`` (conf/rollout/vllm.yaml's default, fp32), ``compiled`` (``enforce_eager=false``:
torch.compile on CPU, CUDA graphs on GPU), ``bf16`` (eager, bfloat16 weights). Startup and one
weight sync (``load_weights`` of the full policy) are timed too. ``tok/cpu-s`` divides by the
process's CPU time (vLLM runs in-process), steadier than wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

VARIANTS = {
    "eager": {"dtype": "float32", "enforce_eager": True},
    "compiled": {"dtype": "float32", "enforce_eager": False},
    "bf16": {"dtype": "bfloat16", "enforce_eager": True},
}


def build_prompts(tokenizer, n: int, seed: int) -> list[list[int]]:
    from tsm.data.build import DatasetSpec, build_dataset
    from tsm.data.datamodule import read_rows
    from tsm.data.sft import encode_prompt

    with tempfile.TemporaryDirectory() as tmp:
        rows = read_rows(build_dataset(DatasetSpec(n_train=n, n_test=0, seed=seed, output_dir=tmp)).train)
    return [encode_prompt(tokenizer, r["prompt"]) for r in rows[:n]]


def time_engine(engine, prompts, sampling, repeats: int) -> dict[str, float]:
    engine.generate(prompts, n=1, sampling=sampling)  # warm-up: lazy kernels, allocator
    runs, cpu = [], []
    for _ in range(repeats):
        c0 = time.process_time()  # all threads of this process (vLLM runs in it)
        runs.append(engine.generate(prompts, n=1, sampling=sampling))
        cpu.append(time.process_time() - c0)
    tokens = statistics.median(r.stats["tokens"] for r in runs)
    return {
        "seconds": statistics.median(r.stats["seconds"] for r in runs),
        "tokens": tokens,
        "tok/s": statistics.median(r.stats["tokens_per_s"] for r in runs),
        "tok/cpu_s": statistics.median(r.stats["tokens"] / c for r, c in zip(runs, cpu)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hf-batch-size", type=int, default=32)
    ap.add_argument("--vllm", default="eager", help=f"comma-separated variants of {sorted(VARIANTS)}")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from tsm.models import ModelSpec, load_model_and_tokenizer
    from tsm.rollout.base import SamplingParams
    from tsm.rollout.hf import HFEngine
    from tsm.rollout.vllm import VLLMEngine

    model, tokenizer = load_model_and_tokenizer(ModelSpec(name="smollm2_135m", source="embedded"))
    prompts = build_prompts(tokenizer, args.prompts, args.seed)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=args.seed)
    print(f"{len(prompts)} prompts (mean {statistics.mean(map(len, prompts)):.0f} tokens), "
          f"<= {args.max_new_tokens} new tokens, {torch.get_num_threads()} torch threads")

    rows = []
    for name, autocast in (("hf fp32", None), ("hf bf16-autocast", "bfloat16")):
        with HFEngine(model, tokenizer, batch_size=args.hf_batch_size, autocast_dtype=autocast) as engine:
            rows.append({"engine": name, "startup_s": 0.0, "sync_s": 0.0,
                         **time_engine(engine, prompts, sampling, args.repeats)})
        print(rows[-1], flush=True)
    for variant in args.vllm.split(","):
        t0 = time.perf_counter()
        with VLLMEngine(model, tokenizer, kv_cache_space_gib=1.0, max_model_len=1024,
                        seed=args.seed, **VARIANTS[variant]) as engine:
            startup = time.perf_counter() - t0
            t1 = time.perf_counter()
            engine.load_weights(model.named_parameters())
            sync = time.perf_counter() - t1
            rows.append({"engine": f"vllm {variant}", "startup_s": startup, "sync_s": sync,
                         **time_engine(engine, prompts, sampling, args.repeats)})
        print(rows[-1], flush=True)

    base, base_cpu = rows[0]["tok/s"], rows[0]["tok/cpu_s"]
    print("\n| engine | startup s | sync s | tokens | seconds | tok/s | tok/cpu-s | vs hf fp32 (wall, cpu) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['startup_s']:.1f} | {r['sync_s']:.2f} | {r['tokens']:.0f} | "
              f"{r['seconds']:.2f} | {r['tok/s']:.0f} | {r['tok/cpu_s']:.0f} | "
              f"{r['tok/s'] / base:.2f}x, {r['tok/cpu_s'] / base_cpu:.2f}x |")


if __name__ == "__main__":
    main()
