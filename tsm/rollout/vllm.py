"""Rollouts from a vLLM engine colocated with training, kept in sync by pushing the policy's weights.

The engine starts from the live policy (saved to a temporary HF folder, or a given ``model_path``
that is then overwritten with the live weights) and runs *in this process*
(``VLLM_ENABLE_V1_MULTIPROCESSING=0`` while it is built): no engine-core subprocess, no ``if
__name__ == "__main__"`` guard needed for one device, and `load_weights` hands the policy's tensors
to vLLM's model without copying them through a pipe. It takes token ids (``TokensPrompt``), never
text, and returns the same `Rollouts` as `tsm.rollout.hf.HFEngine`.

Logprob convention (the one HFEngine and the GRPO loss use): ``log_softmax(logits / T)`` of the raw
logits, before top-k/top-p (T = 1 when greedy). vLLM's ``logprobs_mode="processed_logprobs"``
gives exactly that whenever top_k = 0 and top_p = 1, which is how RL samples (temperature only):
"raw_logprobs" ignores the temperature, "processed_logprobs" applies it. With top-k or top-p on,
vLLM's value is the logprob under the *truncated, renormalised* distribution it actually sampled
from, i.e. HF's value minus log(kept probability mass) (>= HF's); no vLLM 0.32 mode returns the
pre-truncation value, so the engine warns once when that happens.

Weight sync (`load_weights`), three steps, each guarding a known failure:

1. ``collective_rpc("reload_weights", weights_iterator=...)``: vLLM's own in-place reload. It
   maps HF names (q/k/v -> fused qkv_proj, gate/up -> gate_up_proj), restores each layer from its
   recorded metadata, loads and re-runs the layer's post-load processing, then copies the result
   into the original storage (CUDA graphs and compiled code keep pointing at it). Plain
   ``model.load_weights`` is not enough on CPU: vLLM repacks CPU linear weights into oneDNN/SGL
   kernels after loading and drops the plain tensors, so new values would never reach the kernels.
2. Tied embeddings (SmolLM, Qwen2.5 tie lm_head to embed_tokens; HF's ``named_parameters()`` yields
   only ``embed_tokens``): vLLM's reload skips the alias, so a module whose weight is tied to an
   earlier one is re-processed (on CPU this repacks lm_head's kernel from the new embedding; on
   CUDA it is a no-op). Without it the CPU engine keeps sampling from the *old* output head.
3. ``reset_prefix_cache()``: cached KV blocks were computed with the old weights; reusing them
   serves stale rollouts after a sync (huggingface/trl#5312). A failed reset raises.

Process hygiene: building an in-process engine has side effects on the process, which the engine
undoes at once (environment variables such as LD_PRELOAD/LOCAL_WORLD_SIZE, the global RNG
states vLLM reseeds, the number of torch threads, and CPU vLLM's ``torch.set_num_threads``
monkeypatch) and at `close` (vLLM's torch.distributed world group if it created it, its env
cache, memory). Use the engine as a context manager or call `close`.

On CUDA (not run here, no GPU on this machine) what differs:

- ``gpu_memory_utilization`` is the share of the GPU vLLM takes (weights + KV cache + activations);
  the rest is the trainer's. ``kv_cache_space_gib`` is ignored (it sizes the KV cache on CPU only,
  like ``VLLM_CPU_KVCACHE_SPACE``).
- ``enable_sleep_mode``: after every `generate` the engine sleeps (level 1: weights offloaded to
  pinned CPU memory, KV cache freed) so training gets the memory back; `load_weights` wakes the
  weights before writing into them (writing into slept memory crashes, trl#5142) and `generate`
  wakes the rest. On CPU sleep mode does not exist and `sleep`/`wake_up` are no-ops.
- ``enforce_eager=false`` captures CUDA graphs (much faster decoding); the reload writes into the
  captured storage, so graphs stay valid. ``dtype=bfloat16`` is the usual choice there; the
  sampler's logprobs then carry bf16 error versus an fp32 policy.
- ``tensor_parallel_size > 1`` starts worker processes (spawn: the entry point needs the
  ``if __name__ == "__main__":`` guard); weights then travel pickled through vLLM's RPC queue,
  fine for the small models here; large models want vLLM's NCCL weight-transfer engine.
- Under DDP each rank would need its own engine with ``distributed_executor_backend=
  "external_launcher"`` (TRL's colocate mode); not wired: the constructor refuses a
  torch.distributed world larger than one.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import tempfile
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from tsm.rollout.base import Rollouts, SamplingParams

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16", "auto")
_GIB = 1 << 30
# Module-name segments wrappers add to parameter names (torch.compile, activation checkpointing)
_WRAPPER_SEGMENTS = ("_orig_mod.", "_checkpoint_wrapped_module.")
_RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"
_LIVE_ENGINES: weakref.WeakSet = weakref.WeakSet()


class VLLMEngine:
    """A vLLM engine fed token ids, with per-token logprobs; `load_weights` keeps it on-policy."""

    # Holds its own copy of the weights: WeightSync must push the policy's after every step.
    shares_policy_weights = False

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        gpu_memory_utilization: float = 0.3,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        dtype: str = "float32",
        enable_sleep_mode: bool = False,
        kv_cache_space_gib: float = 1.0,
        enforce_eager: bool = True,
        seed: int = 0,
        enable_prefix_caching: bool = True,
        model_path: str | None = None,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if kv_cache_space_gib <= 0 or tensor_parallel_size < 1:
            raise ValueError("kv_cache_space_gib must be > 0 and tensor_parallel_size >= 1")
        if any(e.llm is not None for e in _LIVE_ENGINES):
            # vLLM keeps its parallel state in process globals: two in-process engines collide
            raise RuntimeError("another VLLMEngine is open in this process; close() it first")
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            raise RuntimeError(
                "VLLMEngine runs one in-process engine and cannot join a torch.distributed world "
                f"of {torch.distributed.get_world_size()} ranks (DDP); use rollout=hf there"
            )
        import vllm  # noqa: F401  (fails here, with vllm's own message, when it is not installed)
        from vllm.platforms import current_platform

        self.model = model
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id
        self.eos_ids = sorted(set(eos if isinstance(eos, list) else [eos]))
        self.on_cpu = current_platform.is_cpu()
        self.sleep_mode = bool(enable_sleep_mode) and not self.on_cpu
        self._asleep: set[str] = set()
        self._warned_truncation = False
        # Requests without a seed draw one from this stream: reproducible for a given `seed`,
        # different on every call, and independent of the trainer's global RNG.
        self._rng = random.Random(seed)
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._log_filter = _ExpectedReloadWarnings()
        self.llm = None

        if model_path is None:
            from tsm.models import save_hf

            self._tmpdir = tempfile.TemporaryDirectory(prefix="tsm-vllm-")
            model_path = str(save_hf(model, tokenizer, os.path.join(self._tmpdir.name, "policy")))
        kwargs: dict[str, Any] = {
            "model": str(model_path),
            "dtype": dtype,
            "max_model_len": max_model_len,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            "enable_sleep_mode": self.sleep_mode,
            "enable_prefix_caching": enable_prefix_caching,
            "seed": seed,
            "logprobs_mode": "processed_logprobs",  # log_softmax(logits / T): see the module docstring
            "generation_config": "vllm",  # stop on the tokenizer's EOS only, as HFEngine does
        }
        if self.on_cpu:
            # kv_cache_memory_bytes is what VLLM_CPU_KVCACHE_SPACE (GiB) sets, without an env var
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_space_gib * _GIB)
        self._owns_dist = not torch.distributed.is_initialized()
        try:
            with _undo_process_side_effects():
                from vllm import LLM

                os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
                self.llm = LLM(**kwargs)
            _LIVE_ENGINES.add(self)
            mode = self.llm.llm_engine.model_config.logprobs_mode
            if mode != "processed_logprobs":
                raise RuntimeError(f"vLLM ignored logprobs_mode (got {mode!r})")
            self.dtype: torch.dtype = self.llm.llm_engine.model_config.dtype
            logging.getLogger(_RELOAD_LOGGER).addFilter(self._log_filter)
            self._log_filter.expected = set().union(
                *self.llm.collective_rpc(_modules_without_own_weights)
            )
            if self._tmpdir is None:  # a given folder may hold other weights than the live policy
                self.load_weights(model.named_parameters())
        except BaseException:
            self.close()
            raise

    # -- generation --------------------------------------------------------------------------------
    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> Rollouts:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if sampling.num_beams > 1:
            raise ValueError("num_beams > 1: beam search runs on the HF engine (rollout=hf), not vLLM")
        llm = self._live()
        from vllm.inputs import TokensPrompt

        if not sampling.greedy and (sampling.top_k > 0 or sampling.top_p < 1) and not self._warned_truncation:
            self._warned_truncation = True
            log.warning(
                "top-k/top-p sampling: vLLM returns logprobs of the truncated distribution (HFEngine: "
                "before truncation), above the policy's by -log(kept mass); this matters only where "
                "sampler logprobs are used (RL importance ratios, rollout/logprob_diff)"
            )
        base_seed = sampling.seed if sampling.seed is not None else self._rng.randrange(2**31)
        # vLLM gives sample j of a request the seed `seed + j`: stride n keeps every sample distinct
        params = [self._vllm_params(sampling, n, base_seed + i * n) for i in range(len(prompt_token_ids))]
        prompts = [TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompt_token_ids]
        self.wake_up()
        t0 = time.perf_counter()
        try:
            outputs = llm.generate(prompts, params, use_tqdm=False)
        finally:
            self.sleep()
        elapsed = time.perf_counter() - t0
        prompt_index: list[int] = []
        token_ids: list[list[int]] = []
        logprobs: list[list[float]] = []
        reasons: list[str] = []
        for i, out in enumerate(outputs):
            completions = sorted(out.outputs, key=lambda c: c.index)
            if len(completions) != n:
                raise RuntimeError(f"vLLM returned {len(completions)} completions for prompt {i}, expected {n}")
            for c in completions:
                ids = list(c.token_ids)
                if c.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM finished a completion with {c.finish_reason!r}")
                prompt_index.append(i)
                token_ids.append(ids)
                # one {token id: Logprob} per step; logprobs=0 asks for the sampled token's only
                logprobs.append([float(step[t].logprob) for step, t in zip(c.logprobs, ids)])
                reasons.append(c.finish_reason)
        return Rollouts.decoded(self.tokenizer, prompt_index, token_ids, logprobs, reasons, n, elapsed)

    def _vllm_params(self, sp: SamplingParams, n: int, seed: int):
        from vllm import SamplingParams as VLLMSamplingParams

        return VLLMSamplingParams(
            n=n,
            max_tokens=sp.max_new_tokens,
            temperature=sp.temperature,
            top_p=1.0 if sp.greedy else sp.top_p,
            top_k=0 if sp.greedy else sp.top_k,
            seed=seed,
            logprobs=0,  # the sampled token's logprob only
            stop_token_ids=self.eos_ids,  # EOS is kept in token_ids with finish reason "stop"
            detokenize=False,  # texts come from our tokenizer, exactly as HFEngine decodes them
        )

    # -- weight sync -------------------------------------------------------------------------------
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Write the policy's weights (HF names, any dtype) into the engine; see the module docstring.

        Pass every parameter (``model.named_parameters()``): vLLM reloads whole layers.
        """
        llm = self._live()
        weights = [(_strip_wrappers(name), t.detach().to(self.dtype)) for name, t in named_tensors]
        if not weights:
            raise ValueError("load_weights got no tensors")
        self.wake_up(("weights",))
        with torch.no_grad():
            llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
            )
            llm.collective_rpc(_refresh_tied_modules)
        if not llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache; rollouts would reuse stale KV")

    # -- memory ------------------------------------------------------------------------------------
    def sleep(self) -> None:
        """Free the engine's GPU memory until the next `generate`/`load_weights` (sleep mode only)."""
        if self.sleep_mode and not self._asleep and self.llm is not None:
            self.llm.sleep(level=1)
            self._asleep = {"weights", "kv_cache"}

    def wake_up(self, tags: Sequence[str] = ("weights", "kv_cache")) -> None:
        """Re-allocate what `sleep` freed (only the given parts); a no-op when awake or on CPU."""
        todo = [t for t in tags if t in self._asleep]
        if todo and self.llm is not None:
            self.llm.wake_up(tags=todo)
            self._asleep.difference_update(todo)

    def close(self) -> None:
        """Shut the engine down and release what it holds; safe to call twice."""
        llm, self.llm = self.llm, None
        _LIVE_ENGINES.discard(self)
        logging.getLogger(_RELOAD_LOGGER).removeFilter(self._log_filter)
        try:
            if llm is not None:
                llm.llm_engine.engine_core.shutdown()
                del llm
                gc.collect()
                from vllm import envs
                from vllm.distributed.parallel_state import (
                    destroy_distributed_environment,
                    destroy_model_parallel,
                )

                destroy_model_parallel()
                if self._owns_dist:  # the trainer's own process group, if any, stays
                    destroy_distributed_environment()
                envs.disable_envs_cache()  # env reads are cached once an engine starts
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        finally:
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
                self._tmpdir = None

    def __enter__(self) -> VLLMEngine:  # noqa: PYI034 - as TimeoutPool
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _live(self):
        if self.llm is None:
            raise RuntimeError("the vLLM engine is closed")
        return self.llm


def _strip_wrappers(name: str) -> str:
    for segment in _WRAPPER_SEGMENTS:
        name = name.replace(segment, "")
    return name


# -- functions run on vLLM's worker (in this process; pickled by reference when TP > 1) -----------
def _tied_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Modules whose weight is the same Parameter as an earlier module's (a tied lm_head)."""
    seen: set[int] = set()
    tied = []
    for name, module in model.named_modules():
        weight = module._parameters.get("weight")
        if weight is None:
            continue
        if id(weight) in seen:
            tied.append((name, module))
        seen.add(id(weight))
    return tied


def _refresh_tied_modules(worker) -> list[str]:
    """Re-run post-load processing of tied modules, which vLLM's reload skips (see step 2 above)."""
    names = []
    for name, module in _tied_modules(worker.get_model()):
        method = getattr(module, "quant_method", None)
        if method is not None:
            method.process_weights_after_loading(module)
            names.append(name)
    return names


def _modules_without_own_weights(worker) -> set[str]:
    """Class names that vLLM's reload reports as "Failed to load weights" by design."""
    model = worker.get_model()
    names = {type(m).__name__ for _, m in _tied_modules(model)}
    for module in model.modules():  # buffers only (rotary cos/sin caches): nothing to load
        if not any(True for _ in module.parameters(recurse=False)) and any(
            True for _ in module.buffers(recurse=False)
        ):
            names.add(type(module).__name__)
    return names


class _ExpectedReloadWarnings(logging.Filter):
    """Drops vLLM's per-sync "X: Failed to load weights" for modules that have no weights of their
    own (rotary caches, a tied lm_head); the warning for any other module still shows."""

    def __init__(self) -> None:
        super().__init__()
        self.expected: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if "Failed to load weights" in str(record.msg) and record.args:
            return str(record.args[0]) not in self.expected
        return True


class _undo_process_side_effects:
    """Context manager: whatever building an in-process vLLM engine changes in this process's
    environment, global RNGs and torch threading is put back on exit."""

    def __enter__(self) -> None:
        import numpy as np

        self.env = dict(os.environ)
        self.threads = torch.get_num_threads()
        self.set_num_threads = torch.set_num_threads
        self.rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def __exit__(self, *exc) -> None:
        import numpy as np

        for key in set(os.environ) - set(self.env):
            del os.environ[key]
        for key, value in self.env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        torch.set_num_threads = self.set_num_threads  # CPU vLLM replaces it with a no-op
        torch.set_num_threads(self.threads)
        random.setstate(self.rng[0])
        np.random.set_state(self.rng[1])
        torch.set_rng_state(self.rng[2])
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
