"""Rollouts from the live policy with a plain KV-cache decoding loop (no vLLM needed).

Why not ``model.generate``: we need the log-probability of every sampled token, and asking
``generate`` for per-step logits keeps a [batch, steps, vocab] tensor alive (GBs for a 49k
vocabulary). This loop computes the chosen token's logprob at each step and keeps nothing else.

Logprob convention (shared with the vLLM engine): ``log_softmax(logits / T)`` of the raw model
logits, before top-k/top-p truncation (T = 1 when greedy). That is the quantity a
policy-gradient loss recomputes with a teacher-forced forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import torch

from tsm.rollout.base import Rollouts, SamplingParams


def _filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token once the mass *before* it already reaches top_p (the top token always stays)
        drop = (probs.cumsum(-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, L]`` token ids and attention mask, left-padded so every row's next token sits at column L."""
    L = max(len(x) for x in seqs)
    input_ids = torch.full((len(seqs), L), pad_id, dtype=torch.long, device=device)
    attn = torch.zeros((len(seqs), L), dtype=torch.long, device=device)
    for b, x in enumerate(seqs):
        input_ids[b, L - len(x) :] = torch.tensor(list(x), device=device)
        attn[b, L - len(x) :] = 1
    return input_ids, attn


def _cut_at_eos(row: Sequence[int], eos_ids: set[int]) -> tuple[int, str]:
    """How many tokens of ``row`` a completion keeps (through the first EOS), and its finish reason."""
    for k, t in enumerate(row):
        if t in eos_ids:
            return k + 1, "stop"
    return len(row), "length"


def autocast_dtype_for(precision: object) -> torch.dtype | None:
    """Decode in bf16 when training runs in bf16 (``trainer.precision=bf16-mixed``/``bf16-true``)."""
    return torch.bfloat16 if str(precision).startswith("bf16") else None


def _as_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.bfloat16``, ``"bfloat16"`` (a YAML value) or None."""
    if value is None or isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"autocast_dtype must be null or a float dtype name like 'bfloat16', got {value!r}")
    return dtype


class HFEngine:
    """Batched sampling on a ``transformers`` causal LM (the policy itself, so always in sync)."""

    # Samples from the live policy: a weight sync has nothing to do (WeightSync skips it).
    shares_policy_weights = True

    def __init__(self, model: torch.nn.Module, tokenizer, batch_size: int = 64,
                 autocast_dtype: torch.dtype | str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # bf16 autocast roughly doubles CPU decoding speed (avx512_bf16); logprobs then carry bf16
        # error, so parity checks and RL importance ratios keep the default (None: full precision).
        self.autocast_dtype = _as_dtype(autocast_dtype)
        eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))

    def close(self) -> None:
        """Nothing to free (the engine owns no memory of its own); here for the engine contract."""

    def __enter__(self) -> HFEngine:  # noqa: PYI034 - as TimeoutPool
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """The engine shares the policy's parameters; loading copies into them (for API parity)."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in named_tensors:
                params[name].copy_(tensor)

    @torch.no_grad()
    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], n: int, sampling: SamplingParams
    ) -> Rollouts:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if sampling.num_beams > 1:
            return self._beam_search(prompt_token_ids, n, sampling)
        flat = [(i, list(p)) for i, p in enumerate(prompt_token_ids) for _ in range(n)]
        gen = None
        if sampling.seed is not None:
            gen = torch.Generator(device=self._device).manual_seed(sampling.seed)
        was_training = self.model.training
        self.model.eval()
        t0 = time.perf_counter()
        out_ids: list[list[int]] = []
        out_lps: list[list[float]] = []
        reasons: list[str] = []
        try:
            # longest prompts first: batches of similar length waste less padding
            order = sorted(range(len(flat)), key=lambda k: -len(flat[k][1]))
            results: dict[int, tuple[list[int], list[float], str]] = {}
            with self._autocast():
                for s in range(0, len(order), self.batch_size):
                    idx = order[s : s + self.batch_size]
                    for k, res in zip(idx, self._generate_batch([flat[k][1] for k in idx], sampling, gen)):
                        results[k] = res
            for k in range(len(flat)):
                ids, lps, reason = results[k]
                out_ids.append(ids)
                out_lps.append(lps)
                reasons.append(reason)
        finally:
            self.model.train(was_training)
        return self._pack([i for i, _ in flat], out_ids, out_lps, reasons, n, time.perf_counter() - t0)

    def _pack(self, prompt_index: list[int], token_ids: list[list[int]], logprobs: list[list[float]],
              reasons: list[str], n: int, elapsed: float) -> Rollouts:
        return Rollouts.decoded(self.tokenizer, prompt_index, token_ids, logprobs, reasons, n, elapsed)

    def _autocast(self):
        """bf16 autocast when ``autocast_dtype`` is set, else a no-op context."""
        return torch.autocast(self._device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    @torch.no_grad()
    def _beam_search(self, prompt_token_ids: Sequence[Sequence[int]], n: int, sp: SamplingParams) -> Rollouts:
        """The ``n`` best of ``sp.num_beams`` beams per prompt (``transformers``' beam search), with
        per-token logprobs of the raw model distribution from one teacher-forced pass (the greedy
        convention). Prompts go in batches of ``batch_size // num_beams``, longest first."""
        from transformers import GenerationConfig

        if n > sp.num_beams:
            raise ValueError(f"beam search returns at most num_beams={sp.num_beams} beams, asked for n={n}")
        gen_cfg = GenerationConfig(
            num_beams=sp.num_beams, num_return_sequences=n, do_sample=False, max_new_tokens=sp.max_new_tokens,
            eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id, length_penalty=1.0,
        )
        device = self._device
        prompts = [list(p) for p in prompt_token_ids]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        per_call = max(1, self.batch_size // sp.num_beams)
        # flat slot i * n + r: beam r of prompt i (generate returns each prompt's beams together)
        out_ids: list[list[int]] = [[] for _ in range(len(prompts) * n)]
        out_lps: list[list[float]] = [[] for _ in range(len(prompts) * n)]
        reasons: list[str] = [""] * (len(prompts) * n)
        was_training = self.model.training
        self.model.eval()
        t0 = time.perf_counter()
        try:
            with self._autocast():
                for s in range(0, len(order), per_call):
                    idx = order[s : s + per_call]
                    batch = [prompts[i] for i in idx]
                    input_ids, attn = _left_pad(batch, self.pad_id, device)
                    seqs = self.model.generate(input_ids=input_ids, attention_mask=attn, generation_config=gen_cfg)
                    slots = [i * n + r for i in idx for r in range(n)]
                    for slot, row in zip(slots, seqs[:, input_ids.shape[1] :].tolist()):
                        keep, reasons[slot] = _cut_at_eos(row, self.eos_ids)
                        out_ids[slot] = row[:keep]
                    lps = self._teacher_forced([prompts[slot // n] for slot in slots], [out_ids[k] for k in slots])
                    for slot, lp in zip(slots, lps):
                        out_lps[slot] = lp
        finally:
            self.model.train(was_training)
        return self._pack([i for i in range(len(prompts)) for _ in range(n)], out_ids, out_lps, reasons, n,
                          time.perf_counter() - t0)

    def _teacher_forced(self, prompts: list[list[int]], completions: list[list[int]]) -> list[list[float]]:
        """``log_softmax`` of the raw logits at each completion token, one left-padded forward pass."""
        device = self._device
        input_ids, attn = _left_pad([p + c for p, c in zip(prompts, completions)], self.pad_id, device)
        L = input_ids.shape[1]
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
        logp = torch.log_softmax(
            self.model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids).logits.float(), -1)
        out = []
        for b, (p, c) in enumerate(zip(prompts, completions)):
            if not c:
                out.append([])
                continue
            start = L - len(c)  # completion token k sits at column start + k, predicted at column - 1
            pos = torch.arange(start - 1, L - 1, device=device)
            out.append(logp[b, pos, torch.tensor(c, device=device)].tolist())
        return out

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _generate_batch(self, prompts: list[list[int]], sp: SamplingParams, gen):
        device = self._device
        input_ids, attn = _left_pad(prompts, self.pad_id, device)
        B = input_ids.shape[0]
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
        # logits_to_keep=1: the prompt's other positions need no vocabulary projection
        out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1)
        cache, logits = out.past_key_values, out.logits[:, -1, :]
        next_pos = position_ids[:, -1] + 1
        done = torch.zeros(B, dtype=torch.bool, device=device)
        tokens: list[torch.Tensor] = []
        lps: list[torch.Tensor] = []
        eos = torch.tensor(sorted(self.eos_ids), device=device)
        for _ in range(sp.max_new_tokens):
            logits = logits.float()
            if sp.greedy:
                logp = torch.log_softmax(logits, -1)
                tok = logits.argmax(-1)
            else:
                logp = torch.log_softmax(logits / sp.temperature, -1)
                filtered = _filter_top_k_top_p(logits / sp.temperature, sp.top_k, sp.top_p)
                tok = torch.multinomial(torch.softmax(filtered, -1), 1, generator=gen).squeeze(-1)
            tok = torch.where(done, torch.full_like(tok, self.pad_id), tok)
            tokens.append(tok)
            lps.append(logp.gather(-1, tok[:, None]).squeeze(-1))
            done = done | torch.isin(tok, eos)
            if bool(done.all()):
                break
            attn = torch.cat([attn, attn.new_ones((B, 1))], dim=1)  # finished rows decode pad, ignored
            out = self.model(
                input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None],
                past_key_values=cache, use_cache=True, logits_to_keep=1,
            )
            cache, logits = out.past_key_values, out.logits[:, -1, :]
            next_pos = next_pos + 1
        tok_mat = torch.stack(tokens, 1).tolist()
        lp_mat = torch.stack(lps, 1).tolist()
        results = []
        for b in range(B):
            keep, reason = _cut_at_eos(tok_mat[b], self.eos_ids)
            results.append((tok_mat[b][:keep], lp_mat[b][:keep], reason))
        return results
