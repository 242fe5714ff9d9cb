"""GRPO step throughput: our GRPOModule (HF and vLLM engines) against TRL's GRPOTrainer, in one process.

    python experiments/grpo_bench/bench.py --model smollm2_135m --steps 4 --warmup 1 --prompts 4 \
        --group-size 4 --max-new-tokens 64 --threads 2

Every runner gets a fresh copy of the same model (same weights), the same tokenizer, the same
prompts in the same order, and the same RL settings:

- Prompts: rows of a differentiation dataset built for the run (``build_dataset``, ``n_train =
  prompts x steps``), cut into steps by our ``PromptBatches``; TRL gets the rows in that order with
  ``shuffle_dataset=False``, so step s holds the same prompts on every side (checked: the prompt
  token ids TRL renders with the chat template must equal ours, step by step).
- Sampling: ``--group-size`` completions per prompt, at most ``--max-new-tokens`` tokens,
  temperature 1.0, no top-k / top-p / min-p / repetition penalty.
- Reward: our ``RewardScorer`` as ``conf/reward/default.yaml`` configures it (worker subprocesses),
  a fresh one per runner (no warm caches from an earlier runner); TRL calls it through a reward
  function ``(prompts, completions, ground_truth, **kw) -> list[float]``.
- Update: one optimizer step per rollout batch (TRL: ``num_iterations=1`` and
  ``gradient_accumulation_steps = steps_per_generation = prompts x group / micro``, so one
  generation batch is one optimizer step and its micro-batches hold ``--micro-batch-size``
  sequences, as ours do), ``beta=0`` (no reference model), per-sequence mean loss (ours
  ``seq_mean``, TRL ``loss_type="grpo"``), advantages normalized by the group std on both,
  ``torch.optim.AdamW`` (betas 0.9/0.99, no weight decay, constant lr), gradient clipping 1.0,
  no gradient checkpointing (TRL's default is on).
- Precision: ``--precision fp32`` (default; TRL's default is bf16, so it is set explicitly) or
  ``bf16``: ours ``bf16-mixed`` with the HF engine decoding under bf16 autocast (vLLM engine in
  bfloat16), TRL ``bf16=True`` (accelerate wraps the model's forward, ``generate`` included, in
  bf16 autocast).
- Threads: ``torch.set_num_threads(--threads)`` before each runner, checked at every step.

Timing: a callback times each optimizer step (Lightning ``on_train_batch_start/end``, TRL
``on_step_begin/end``: both include generation, reward and update); the first ``--warmup`` steps
are not counted. ``samples/s`` = completions generated per second of step time, ``tok/s`` =
completion tokens per second of step time. ``cpu s/step`` is the CPU time of the whole process
tree (reward workers included): on a shared machine it is the steadier measure. The wall split is
``GRPOModule.last_metrics`` (``time/rollout_s``, ``time/reward_s``, ``time/update_s``) for ours
and wrappers around ``GRPOTrainer._generate`` (tokenize, generate, decode) and
``_calculate_rewards`` for TRL, whose "update" is the rest of its step; ``other`` is what the
step spent outside those (for ours-vllm mostly ``WeightSync``'s push). The CPU split comes from
the same kind of wrappers on both sides (our engine's ``generate`` and reward call).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("smollm2_135m", "tiny")
RUNNERS = ("hf", "vllm", "trl")
LABELS = {"hf": "ours-hf", "vllm": "ours-vllm", "trl": "trl"}
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}  # our Lightning precision for each choice
TINY_ARCH = "tiny_1m"  # random init: completions run to --max-new-tokens (EOS is never learned)


# -- per-step records --------------------------------------------------------------------------
@dataclass
class RunLog:
    """One runner's measurements: one dict per step (seconds, cpu_seconds, completions, tokens,
    rollout_s, reward_s, update_s, rollout_cpu, reward_cpu, reward, truncated)."""

    name: str
    rows: list[dict[str, float]] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    prompt_ids: list[list[list[int]]] = field(default_factory=list)  # per step, per prompt
    pending: dict[str, float] = field(default_factory=dict)  # filled by wrappers during a step
    _t0: float = 0.0
    _c0: float = 0.0

    def begin(self) -> None:
        self.threads.add(torch.get_num_threads())
        self.pending = {}
        self._t0, self._c0 = time.perf_counter(), tree_cpu_seconds()

    def end(self, **values: float) -> None:
        self.threads.add(torch.get_num_threads())  # an engine may have changed it mid-step
        self.rows.append({"seconds": time.perf_counter() - self._t0,
                          "cpu_seconds": tree_cpu_seconds() - self._c0, **self.pending, **values})

    def timed(self, fn: Callable, part: str) -> Callable:
        """``fn`` that adds its wall and process-tree CPU seconds to ``pending[part + "_s" / "_cpu"]``."""

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0, c0 = time.perf_counter(), tree_cpu_seconds()
            out = fn(*args, **kwargs)
            self.pending[f"{part}_s"] = self.pending.get(f"{part}_s", 0.0) + time.perf_counter() - t0
            self.pending[f"{part}_cpu"] = self.pending.get(f"{part}_cpu", 0.0) + tree_cpu_seconds() - c0
            return out

        return wrapper

    def summary(self, warmup: int) -> dict[str, float]:
        rows = self.rows[warmup:]
        if not rows:
            raise RuntimeError(f"{self.name}: no timed steps")

        def total(key: str) -> float:
            return sum(r[key] for r in rows)

        n, secs, cpu = len(rows), total("seconds"), total("cpu_seconds")
        out = {"steps": n, "s_per_step": secs / n, "samples_s": total("completions") / secs,
               "tok_s": total("tokens") / secs, "cpu_s_per_step": cpu / n, "tok_per_cpu_s": total("tokens") / cpu,
               "rollout_tok_s": total("tokens") / total("rollout_s"),
               "mean_len": total("tokens") / total("completions"),
               "reward": total("reward") / n, "truncated": total("truncated") / n}
        for key in ("rollout_s", "reward_s", "update_s", "rollout_cpu", "reward_cpu"):
            out[key] = total(key) / n
        out["other_s"] = out["s_per_step"] - out["rollout_s"] - out["reward_s"] - out["update_s"]
        out["rest_cpu"] = out["cpu_s_per_step"] - out["rollout_cpu"] - out["reward_cpu"]
        return out


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants (the reward workers)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:  # a child that exited between listing and reading
            pass
    return total


# -- shared inputs -----------------------------------------------------------------------------
def model_folder(args, tmp: Path) -> Path:
    """An HF folder with the benchmark's model: the embedded SmolLM2 cache, or a saved tiny Llama."""
    from tsm.models import (
        TINY_PRESETS,
        build_math_tokenizer,
        build_tiny_model,
        embedded_model_dir,
        save_hf,
    )

    if args.model == "smollm2_135m":
        return embedded_model_dir()
    tok = build_math_tokenizer()
    return save_hf(build_tiny_model(TINY_PRESETS[TINY_ARCH], tok, seed=args.seed), tok, tmp / "tiny")


def load(folder: Path):
    from tsm.models import ModelSpec, load_model_and_tokenizer

    return load_model_and_tokenizer(ModelSpec(name="bench", source="local", path=str(folder)))


def load_rows(args, tmp: Path) -> list[dict]:
    from tsm.data.build import DatasetSpec, build_dataset
    from tsm.data.datamodule import read_rows

    spec = DatasetSpec(n_train=args.prompts * args.steps, n_test=0, seed=args.seed,
                       output_dir=str(tmp / "data"))
    return read_rows(build_dataset(spec).train)


def plan(args, rows: list[dict], tok):
    """Our ``PromptBatches`` over the rows, and the row indices of each step's prompts, in order."""
    from tsm.data.prompts import Prompt, PromptBatches
    from tsm.data.sft import encode_prompt

    prompts = [Prompt(encode_prompt(tok, r["prompt"]), r["reward_model"]["ground_truth"],
                      r["extra_info"]["function_type"]) for r in rows]
    batches = PromptBatches(prompts, args.prompts, seed=args.seed)
    return batches, [list(batches._plan[s]) for s in range(args.steps)]


def make_reward(args):
    import hydra
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf/reward/default.yaml")
    if args.reward_workers is not None:
        cfg.workers = args.reward_workers
    return hydra.utils.instantiate(cfg)


def vllm_unavailable() -> str | None:
    """Why the vLLM runner cannot run here (None when it can)."""
    import importlib.util

    for module in ("vllm", "tsm.rollout.vllm", "tsm.rollout.sync"):
        if importlib.util.find_spec(module) is None:
            return f"no module {module}"
    if not (ROOT / "conf/rollout/vllm.yaml").is_file():
        return "no conf/rollout/vllm.yaml"
    return None


def make_engine(args, name: str, model, tok):
    """Our engine as ``conf/rollout/<name>.yaml`` builds it (HF: one batch for the whole step, as TRL)."""
    import hydra
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / f"conf/rollout/{name}.yaml")
    if "seed" in cfg:  # ${seed} points into train.yaml
        cfg.seed = args.seed
    extra = {}
    if name == "hf":
        extra["batch_size"] = args.prompts * args.group_size
        if args.precision == "bf16":  # what tsm.rollout.hf.autocast_dtype_for gives bf16 training
            extra["autocast_dtype"] = torch.bfloat16
    if name == "vllm" and args.precision == "bf16":
        extra["dtype"] = "bfloat16"
    return hydra.utils.instantiate(cfg)(model=model, tokenizer=tok, **extra)


class EngineUnavailable(RuntimeError):
    """The vLLM engine could not be built here; the run goes on without its column."""


# -- ours --------------------------------------------------------------------------------------
def run_ours(args, engine_name: str, folder: Path, rows: list[dict], log: RunLog) -> None:
    import lightning as L
    from torch.utils.data import DataLoader

    from tsm.algorithms.grpo import GRPOModule
    from tsm.data.prompts import _as_is
    from tsm.rollout.base import SamplingParams

    model, tok = load(folder)
    batches, _ = plan(args, rows, tok)
    try:
        engine = make_engine(args, engine_name, model, tok)
    except Exception as e:  # e.g. a vLLM build for another device
        if engine_name != "vllm":
            raise
        raise EngineUnavailable(f"{type(e).__name__}: {e}") from e
    engine.generate = log.timed(engine.generate, "rollout")
    callbacks = []
    if engine_name == "vllm":
        from tsm.rollout.sync import WeightSync

        callbacks.append(WeightSync(engine))

    class Timer(L.Callback):  # last in the list: WeightSync's push counts in the step
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            log.prompt_ids.append([p.token_ids for p in batch])
            log.begin()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            m = pl_module.last_metrics
            n = len(batch) * args.group_size
            log.end(completions=n, tokens=m["train/response_len/mean"] * n,
                    rollout_s=m["time/rollout_s"], reward_s=m["time/reward_s"], update_s=m["time/update_s"],
                    reward=m["train/reward/mean"], truncated=m["train/truncated_frac"])

    reward = make_reward(args)
    module = GRPOModule(
        model, tok, functools.partial(torch.optim.AdamW, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0),
        max_steps=args.steps, sampling=SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0),
        engine=engine, reward=log.timed(reward, "reward"), group_size=args.group_size,
        micro_batch_size=args.micro_batch_size, beta=0.0, loss_aggregation="seq_mean", normalize_std=True,
        grad_clip=1.0, seed=args.seed,
    )
    trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", devices=1, precision=PRECISIONS[args.precision],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[*callbacks, Timer()])
    torch.set_num_threads(args.threads)
    try:
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, collate_fn=_as_is))
    finally:
        reward.close()
        engine.close()


# -- TRL ---------------------------------------------------------------------------------------
def run_trl(args, folder: Path, rows: list[dict], log: RunLog) -> None:
    import datasets
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tok = load(folder)
    _, steps = plan(args, rows, tok)
    data = datasets.Dataset.from_list([{"prompt": rows[i]["prompt"],
                                        "ground_truth": rows[i]["reward_model"]["ground_truth"]}
                                       for step in steps for i in step])
    reward = make_reward(args)

    def tsm_reward(prompts, completions, ground_truth, **kwargs) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return reward(texts, ground_truth).values

    class Timer(TrainerCallback):
        def on_step_begin(self, args_, state, control, **kw):
            log.begin()

        def on_step_end(self, args_, state, control, **kw):
            log.end()

    n_seq = args.prompts * args.group_size
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, per_device_train_batch_size=args.micro_batch_size,
            gradient_accumulation_steps=n_seq // args.micro_batch_size, steps_per_generation=None,
            num_generations=args.group_size, num_iterations=1, max_completion_length=args.max_new_tokens,
            temperature=1.0, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0,
            beta=0.0, loss_type="grpo", scale_rewards="group", epsilon=0.2, mask_truncated_completions=False,
            learning_rate=args.lr, adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, optim="adamw_torch",
            lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
            bf16=args.precision == "bf16", fp16=False, gradient_checkpointing=False,  # TRL defaults: bf16, on
            max_steps=args.steps, shuffle_dataset=False, seed=args.seed, use_cpu=True,
            report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True, log_completions=False,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=[tsm_reward], args=config, train_dataset=data,
                              processing_class=tok, callbacks=[Timer()])
        trainer.remove_callback(PrinterCallback)  # the end-of-training summary dict
        wrap_trl(trainer, log, args.group_size)
        torch.set_num_threads(args.threads)  # in case anything above changed it
        try:
            trainer.train()
        finally:
            reward.close()
    for r in log.rows:  # TRL's "update": its step minus generation and reward
        r["update_s"] = r["seconds"] - r["rollout_s"] - r["reward_s"]


def wrap_trl(trainer, log: RunLog, group_size: int) -> None:
    """Time ``_generate`` and ``_calculate_rewards``; record the prompts, lengths and rewards they saw."""
    generate = log.timed(trainer._generate, "rollout")
    rewards = log.timed(trainer._calculate_rewards, "reward")
    eos = set(trainer.eos_token_ids)

    def recorded_generate(prompts):
        out = generate(prompts)
        prompt_ids, completion_ids = out[0], out[1]
        n = len(completion_ids)
        log.pending.update(completions=n, tokens=sum(len(c) for c in completion_ids),
                           truncated=sum(not c or c[-1] not in eos for c in completion_ids) / n)
        log.prompt_ids.append([list(p) for p in prompt_ids[::group_size]])
        return out

    def recorded_rewards(*a, **kw):
        out = rewards(*a, **kw)
        log.pending["reward"] = float(torch.nanmean(out[:, 0]))
        return out

    trainer._generate, trainer._calculate_rewards = recorded_generate, recorded_rewards


# -- report ------------------------------------------------------------------------------------
THROUGHPUT = (  # (header, summary key, format)
    ("steps", "steps", "{:d}"), ("s/step", "s_per_step", "{:.2f}"), ("samples/s", "samples_s", "{:.2f}"),
    ("tok/s", "tok_s", "{:.1f}"), ("cpu s/step", "cpu_s_per_step", "{:.2f}"),
    ("tok/cpu-s", "tok_per_cpu_s", "{:.1f}"), ("mean len", "mean_len", "{:.1f}"),
    ("truncated", "truncated", "{:.2f}"), ("reward", "reward", "{:.3f}"),
)
SPLIT = (
    ("rollout s", "rollout_s", "{:.2f}"), ("reward s", "reward_s", "{:.2f}"), ("update s", "update_s", "{:.2f}"),
    ("other s", "other_s", "{:.2f}"), ("rollout tok/s", "rollout_tok_s", "{:.1f}"),
    ("rollout cpu", "rollout_cpu", "{:.2f}"), ("reward cpu", "reward_cpu", "{:.2f}"),
    ("rest cpu", "rest_cpu", "{:.2f}"),
)


def print_table(rows: dict[str, dict[str, float]], columns) -> None:
    widths = [max(len(h), 7) + 2 for h, _, _ in columns]
    head = f"{'runner':<10}" + "".join(f"{h:>{w}}" for (h, _, _), w in zip(columns, widths))
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{LABELS[name]:<10}" + "".join(f"{fmt.format(r[k]):>{w}}" for (_, k, fmt), w in zip(columns, widths)))


def print_report(logs: dict[str, RunLog], warmup: int) -> None:
    rows = {name: log.summary(warmup) for name, log in logs.items()}
    print_table(rows, THROUGHPUT)
    print()
    print_table(rows, SPLIT)
    print()
    for name, log in logs.items():
        print(f"{LABELS[name]} step seconds (warmup first): " + ", ".join(f"{r['seconds']:.2f}" for r in log.rows))
    if "trl" not in rows:
        return
    t = rows["trl"]
    for name in ("hf", "vllm"):
        if name in rows:
            o = rows[name]
            same = logs[name].prompt_ids == logs["trl"].prompt_ids
            print(f"{LABELS[name]}/TRL: {t['s_per_step'] / o['s_per_step']:.2f}x steps/s, "
                  f"{o['samples_s'] / t['samples_s']:.2f}x samples/s, {o['tok_s'] / t['tok_s']:.2f}x tokens/s, "
                  f"{o['tok_per_cpu_s'] / t['tok_per_cpu_s']:.2f}x tokens per CPU-second; "
                  f"same prompt tokens every step: {'yes' if same else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="smollm2_135m")
    p.add_argument("--steps", type=int, default=4, help="rollout steps per runner (warmup included)")
    p.add_argument("--warmup", type=int, default=1, help="first steps not timed (>= 1)")
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--group-size", type=int, default=4, help="completions per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--micro-batch-size", type=int, default=8, help="sequences per forward/backward")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--reward-workers", type=int, default=None, help="default: conf/reward/default.yaml")
    p.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS), help="run in this order")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 1 <= args.warmup < args.steps:
        p.error("need 1 <= --warmup < --steps")
    if (args.prompts * args.group_size) % args.micro_batch_size:
        p.error("--prompts x --group-size must be a multiple of --micro-batch-size (TRL's accumulation)")

    warnings.filterwarnings("ignore")  # Lightning/TRL advice about workers, hub access, logging
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    import transformers
    import trl

    transformers.utils.logging.disable_progress_bar()  # weight loading / saving bars
    print(f"model={args.model} steps={args.steps} (warmup {args.warmup}) prompts={args.prompts} "
          f"group={args.group_size} max_new_tokens={args.max_new_tokens} micro={args.micro_batch_size} "
          f"threads={args.threads} precision={args.precision} torch={torch.__version__} "
          f"trl={trl.__version__} load={os.getloadavg()[0]:.2f}", flush=True)
    logs: dict[str, RunLog] = {}
    affinity = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_folder(args, Path(tmp))
        rows = load_rows(args, Path(tmp))
        for name in args.runners:
            why = vllm_unavailable() if name == "vllm" else None
            log, t0 = RunLog(name), time.perf_counter()
            try:
                if why:
                    raise EngineUnavailable(why)
                if name == "trl":
                    run_trl(args, folder, rows, log)
                else:
                    run_ours(args, name, folder, rows, log)
            except EngineUnavailable as e:
                print(f"vllm engine unavailable ({e}): skipping the ours-vllm column", flush=True)
                continue
            logs[name] = log
            if log.threads != {args.threads}:
                print(f"warning: {name} ran with {sorted(log.threads)} threads, not {args.threads}")
            if os.sched_getaffinity(0) != affinity:
                print(f"warning: {name} changed the CPU affinity to {sorted(os.sched_getaffinity(0))}")
            print(f"{LABELS[name]} done in {time.perf_counter() - t0:.1f} s; load={os.getloadavg()[0]:.2f}",
                  flush=True)
    print()
    print_report(logs, args.warmup)
    return 0


if __name__ == "__main__":  # vLLM with tensor_parallel_size > 1 spawns workers that re-import this file
    sys.exit(main())
