"""SFT training throughput: our SFTModule (Lightning) against TRL's SFTTrainer, in one process.

    python experiments/sft_bench/bench.py --model smollm2_135m --steps 5 --batch-size 8 \
        --micro-batch-size 4 --max-length 256 --precision fp32 --threads 2

Both trainers get a fresh copy of the same model (same weights), the same tokenizer, the same
examples, the same global batch, micro-batch, accumulation, learning rate, optimizer (plain
``torch.optim.AdamW``, no weight decay), gradient clipping (1.0), precision and thread count:

- Data: rows of Diff-TSM's ``sample_simplicity_05.jsonl`` as chat prompts (system prompt + "Find
  the derivative ...") with the ``answer`` target ("The final answer is $\\boxed{f'}$").
  Examples that would not fit ``--max-length`` are dropped for both, so neither truncates.
- Ours: ``lightning.Trainer`` fitting ``SFTModule`` on ``StepBatches`` (length-bucketed steps).
- TRL: ``trl.SFTTrainer`` on a prompt-completion conversational ``datasets.Dataset`` holding the
  examples of our first ``--steps`` steps, in our order, read sequentially: TRL's micro-batches
  hold exactly our micro-batches' examples (so padding is the same, up to TRL's tokenization,
  which keeps the newline the chat template writes after ``<|im_end|>``: one more token per
  example). ``gradient_checkpointing=False`` (TRL defaults to True; ours is off) and
  ``bf16`` is set explicitly (TRL defaults to True).

Timing: a callback times each optimizer step (Lightning ``on_train_batch_start/end``; TRL
``on_step_begin/end``); the first ``--warmup`` steps are not counted. Batch loading and collation
happen before either start hook, so ``s/step`` is compute plus the trainer's own per-step work.
``e2e s/step`` is the wall time from one step's end to the next (data loading and logging
included). Tokens: non-pad tokens (sum of ``attention_mask``) and padded tokens (its numel) of
the step's micro-batches, counted from the batches each trainer actually trained on (TRL's
through a wrapper around its own collator). ``ratio`` = ours / TRL on non-pad tokens/s, the fair
measure when tokenization differs slightly; padded tokens/s is printed too. ``loss@1`` is the
first step's token-mean loss (same weights, same examples: the two should agree closely).

``--profile ours|trl`` runs one trainer only under ``torch.profiler`` and prints the top ops.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

DATA = Path("/work/shared/diff_tsm_reference/sample_simplicity_05.jsonl")
MODELS = ("smollm2_135m", "tiny_5m", "tiny_20m")
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}  # our Lightning precision for each choice
USER_TEMPLATE = "Find the derivative of the following function with respect to x: {function}"
TRL_SLACK = 2  # TRL's sequences are up to this many tokens longer (template's trailing newline)


@dataclass
class StepLog:
    """Per-step wall times and token counts of one trainer's run."""

    name: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # process CPU time, all threads
    ends: list[float] = field(default_factory=list)
    nonpad: list[int] = field(default_factory=list)
    padded: list[int] = field(default_factory=list)
    first_loss: float | None = None
    threads: int | None = None
    _t0: float = 0.0
    _c0: float = 0.0

    def begin(self) -> None:
        self.threads = torch.get_num_threads()
        if not self.ends:  # the first step's "previous end" for the end-to-end gaps
            self.ends.append(time.perf_counter())
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def end(self) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self._t0)
        self.cpu_seconds.append(time.process_time() - self._c0)
        self.ends.append(now)

    def summary(self, warmup: int) -> dict[str, float]:
        secs, nonpad, padded = self.seconds[warmup:], self.nonpad[warmup:], self.padded[warmup:]
        if not secs or len(nonpad) != len(secs):
            raise RuntimeError(f"{self.name}: {len(secs)} timed steps, {len(nonpad)} token counts")
        # ends[0] is the first step's start; ends[k] the end of step k (1-based)
        gaps = [b - a for a, b in zip(self.ends[warmup:], self.ends[warmup + 1 :])]
        total = sum(secs)
        return {
            "steps": len(secs),
            "s_per_step": total / len(secs),
            "e2e_s_per_step": statistics.mean(gaps),
            "e2e_nonpad_tok_s": sum(nonpad) / sum(gaps),
            "cpu_s_per_step": sum(self.cpu_seconds[warmup:]) / len(secs),
            "nonpad_per_cpu_s": sum(nonpad) / sum(self.cpu_seconds[warmup:]),
            "nonpad_per_step": sum(nonpad) / len(secs),
            "padded_per_step": sum(padded) / len(secs),
            "nonpad_tok_s": sum(nonpad) / total,
            "padded_tok_s": sum(padded) / total,
        }


# -- data --------------------------------------------------------------------------------------
def load_conversations(path: Path) -> list[tuple[list[dict[str, str]], str]]:
    """(prompt messages, completion) for every row of a Diff-TSM sample file."""
    from tsm.data.sft import answer_only
    from tsm.tasks.base import SYSTEM_PROMPT

    out = []
    with path.open() as fh:
        for line in fh:
            row = json.loads(line)
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_TEMPLATE.format(function=row["function"])},
            ]
            out.append((messages, answer_only(row["derivative"])))
    return out


def build_model(name: str, dtype: str = "float32"):
    from tsm.models import TINY_PRESETS, ModelSpec, load_model_and_tokenizer

    if name == "smollm2_135m":
        spec = ModelSpec(name=name, source="embedded", dtype=dtype)
    else:
        spec = ModelSpec(
            name=name, source="scratch", arch=TINY_PRESETS[name], init_seed=0, dtype=dtype
        )
    return load_model_and_tokenizer(spec)


# -- the shared plan ---------------------------------------------------------------------------
def step_batches(args, tok, convs):
    """Our ``StepBatches`` (length-bucketed steps) over the conversations that fit ``--max-length``.

    Returns it with the conversation index of each of its examples. The plan depends only on the
    lengths and the seed, so every call with the same model family gives the same steps.
    """
    from tsm.data.datamodule import StepBatches
    from tsm.data.sft import encode_example

    examples = [encode_example(tok, m, c) for m, c in convs]
    keep = [i for i, e in enumerate(examples) if len(e.input_ids) <= args.max_length - TRL_SLACK]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ds = StepBatches(
        [examples[i] for i in keep], args.batch_size, args.micro_batch_size, pad_id, seed=args.seed
    )
    if len(ds) < args.steps:
        raise SystemExit(f"only {len(ds)} steps of data for --steps {args.steps}")
    return ds, keep


def make_plan(args, convs) -> list[list[int]]:
    """Conversation indices of each of the first ``args.steps`` steps, in micro-batch order."""
    _, tok = build_model(args.model)
    ds, keep = step_batches(args, tok, convs)
    return [[keep[i] for i in ds._plan[s]] for s in range(args.steps)]


# -- ours --------------------------------------------------------------------------------------
def run_ours(args, convs, log: StepLog, profiler=None) -> None:
    import lightning as L
    from torch.utils.data import DataLoader

    from tsm.algorithms.sft import SFTModule

    model, tok = build_model(args.model)
    steps, _ = step_batches(args, tok, convs)

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            log.nonpad.append(sum(int(mb["attention_mask"].sum()) for mb in batch))
            log.padded.append(sum(mb["attention_mask"].numel() for mb in batch))
            log.begin()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            log.end()
            if log.first_loss is None:
                log.first_loss = float(trainer.callback_metrics["train/loss"])
            if profiler is not None:
                profiler.step()

    module = SFTModule(
        model,
        tok,
        functools.partial(torch.optim.AdamW, lr=args.lr, weight_decay=0.0),
        max_steps=args.steps,
        warmup_steps=0,
        grad_clip=1.0,
    )
    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        devices=1,
        precision=PRECISIONS[args.precision],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[Timer()],
    )
    torch.set_num_threads(args.threads)
    trainer.fit(
        module, train_dataloaders=DataLoader(steps, batch_size=None, shuffle=False, num_workers=0)
    )


# -- TRL ---------------------------------------------------------------------------------------
class CountingCollator:
    """TRL's own collator, recording each micro-batch's non-pad and padded token counts in order."""

    def __init__(self, inner):
        self.inner, self.counts = inner, []

    def __call__(self, examples):
        batch = self.inner(examples)
        mask = batch["attention_mask"]
        self.counts.append((int(mask.sum()), mask.numel()))
        return batch


def run_trl(args, convs, plan: list[list[int]], log: StepLog, profiler=None) -> None:
    import datasets
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    model, tok = build_model(args.model)
    order = [i for step in plan for i in step]  # our micro-batches, back to back
    data = datasets.Dataset.from_list(
        [
            {"prompt": convs[i][0], "completion": [{"role": "assistant", "content": convs[i][1]}]}
            for i in order
        ]
    )

    class Timer(TrainerCallback):
        def on_step_begin(self, args_, state, control, **kw):
            log.begin()

        def on_step_end(self, args_, state, control, **kw):
            log.end()
            if profiler is not None:
                profiler.step()

        def on_log(self, args_, state, control, logs=None, **kw):
            if log.first_loss is None and logs and "loss" in logs:
                log.first_loss = float(logs["loss"])

    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=args.micro_batch_size,
            gradient_accumulation_steps=args.batch_size // args.micro_batch_size,
            max_length=args.max_length,
            completion_only_loss=True,
            learning_rate=args.lr,
            weight_decay=0.0,
            max_grad_norm=1.0,
            optim="adamw_torch",
            bf16=args.precision == "bf16",
            gradient_checkpointing=False,  # TRL's default is True; ours does not checkpoint
            report_to=[],
            save_strategy="no",
            logging_steps=1,
            max_steps=args.steps,
            dataloader_num_workers=0,
            use_cpu=True,
            packing=False,
            shuffle_dataset=False,
            train_sampling_strategy="sequential",  # keep our step order: same micro-batches
            disable_tqdm=True,
            seed=args.seed,
        )
        trainer = SFTTrainer(
            model=model, args=config, train_dataset=data, processing_class=tok, callbacks=[Timer()]
        )
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        torch.set_num_threads(args.threads)  # in case anything above changed it
        trainer.train()
    acc = args.batch_size // args.micro_batch_size
    for s in range(len(log.seconds)):
        chunk = counter.counts[s * acc : (s + 1) * acc]
        log.nonpad.append(sum(c[0] for c in chunk))
        log.padded.append(sum(c[1] for c in chunk))


# -- report ------------------------------------------------------------------------------------
COLUMNS = (  # (header, summary key, format)
    ("steps", "steps", "{:d}"),
    ("s/step", "s_per_step", "{:.3f}"),
    ("e2e s/step", "e2e_s_per_step", "{:.3f}"),
    ("cpu s/step", "cpu_s_per_step", "{:.3f}"),
    ("nonpad tok/step", "nonpad_per_step", "{:.1f}"),
    ("padded tok/step", "padded_per_step", "{:.1f}"),
    ("nonpad tok/s", "nonpad_tok_s", "{:.1f}"),
    ("padded tok/s", "padded_tok_s", "{:.1f}"),
    ("nonpad tok/cpu-s", "nonpad_per_cpu_s", "{:.1f}"),
)


def print_table(logs: list[StepLog], warmup: int) -> dict[str, dict[str, float]]:
    rows = {log.name: log.summary(warmup) for log in logs}
    widths = [max(len(h), 8) + 2 for h, _, _ in COLUMNS]
    head = (
        f"{'trainer':<8}"
        + "".join(f"{h:>{w}}" for (h, _, _), w in zip(COLUMNS, widths))
        + f"{'loss@1':>9}"
    )
    print(head)
    print("-" * len(head))
    for log in logs:
        r = rows[log.name]
        cells = "".join(f"{fmt.format(r[k]):>{w}}" for (_, k, fmt), w in zip(COLUMNS, widths))
        loss = f"{log.first_loss:.4f}" if log.first_loss is not None else "n/a"
        print(f"{log.name:<8}{cells}{loss:>9}")
    if "ours" in rows and "trl" in rows:
        o, t = rows["ours"], rows["trl"]
        extra = sorted({b - a for a, b in zip(logs[0].nonpad, logs[1].nonpad)})
        print(
            f"same examples, step by step: TRL's steps hold {extra} more non-pad tokens than ours "
            "(one per example expected: the newline its tokenization keeps after <|im_end|>)"
        )
        print(
            f"ratio ours/TRL: non-pad tokens/s {o['nonpad_tok_s'] / t['nonpad_tok_s']:.2f}x "
            f"(padded tokens/s {o['padded_tok_s'] / t['padded_tok_s']:.2f}x, "
            f"end-to-end non-pad tokens/s {o['e2e_nonpad_tok_s'] / t['e2e_nonpad_tok_s']:.2f}x, "
            f"non-pad tokens per CPU-second {o['nonpad_per_cpu_s'] / t['nonpad_per_cpu_s']:.2f}x)"
        )
    return rows


def profiled(enabled: bool, warmup: int):
    if not enabled:
        return contextlib.nullcontext(None)
    from torch.profiler import ProfilerActivity, profile, schedule

    return profile(
        activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=warmup, active=100)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="smollm2_135m")
    p.add_argument(
        "--steps", type=int, default=5, help="optimizer steps per trainer (warmup included)"
    )
    p.add_argument("--warmup", type=int, default=1, help="first steps not timed (>= 1)")
    p.add_argument(
        "--batch-size", type=int, default=8, help="global batch (examples per optimizer step)"
    )
    p.add_argument("--micro-batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--order",
        choices=("ours-first", "trl-first"),
        default="ours-first",
        help="which trainer runs first (load on a shared machine drifts)",
    )
    p.add_argument(
        "--profile",
        choices=("ours", "trl"),
        default=None,
        help="run only this trainer, under torch.profiler, and print its top ops",
    )
    args = p.parse_args(argv)
    if not 1 <= args.warmup < args.steps:
        p.error("need 1 <= --warmup < --steps")
    if args.batch_size % args.micro_batch_size:
        p.error("--batch-size must be a multiple of --micro-batch-size")

    warnings.filterwarnings("ignore")  # Lightning/TRL advice about workers, hub access, logging
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    convs = load_conversations(DATA)
    print(
        f"model={args.model} steps={args.steps} (warmup {args.warmup}) batch={args.batch_size} "
        f"micro={args.micro_batch_size} max_length={args.max_length} precision={args.precision} "
        f"threads={args.threads} order={args.order} torch={torch.__version__}",
        flush=True,
    )

    plan = make_plan(args, convs)
    logs = {"ours": StepLog("ours"), "trl": StepLog("trl")}
    runners = {
        "ours": lambda prof: run_ours(args, convs, logs["ours"], prof),
        "trl": lambda prof: run_trl(args, convs, plan, logs["trl"], prof),
    }
    names = (
        [args.profile]
        if args.profile
        else (["ours", "trl"] if args.order == "ours-first" else ["trl", "ours"])
    )
    for name in names:
        with profiled(args.profile is not None, args.warmup) as prof:
            runners[name](prof)
        if prof is not None:
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        if logs[name].threads != args.threads:
            print(f"warning: {name} ran with {logs[name].threads} threads, not {args.threads}")
    print()
    print_table([logs[n] for n in ("ours", "trl") if n in names], args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
