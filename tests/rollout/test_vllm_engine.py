"""vLLM engine (CPU here, CUDA where available): weight sync proven by logprob parity with the policy.

One small engine serves the module (vLLM starts in ~3 s here); each test first pushes the current
policy, then changes the policy with a few real optimizer steps and checks what the engine serves.
Tests run in file order: the process-state test needs no engine open, the sampling test an
untrained (non-peaked) policy.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

pytest.importorskip("vllm")

from tsm.models import TinyArch, build_math_tokenizer, build_tiny_model
from tsm.rollout.base import SamplingParams
from tsm.rollout.hf import HFEngine
from tsm.rollout.vllm import VLLMEngine, _refresh_tied_modules

pytestmark = pytest.mark.vllm

# Tied embeddings like SmolLM/Qwen2.5; head size 32 (vLLM's CPU attention has no kernel for 16).
ARCH = TinyArch(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                max_position_embeddings=512)
ENGINE_OPTIONS = {"dtype": "float32", "max_model_len": 512, "kv_cache_space_gib": 0.25,
                  "enforce_eager": True, "seed": 0}
PARITY = 1e-2  # fp32 on both sides: observed differences are ~1e-6


@pytest.fixture(scope="module")
def policy_and_engine():
    tokenizer = build_math_tokenizer(model_max_length=ARCH.max_position_embeddings)
    model = build_tiny_model(ARCH, tokenizer, seed=0)
    assert model.config.tie_word_embeddings
    with VLLMEngine(model, tokenizer, **ENGINE_OPTIONS) as engine:
        yield model, tokenizer, engine


def fixed_sequences(tokenizer) -> list[tuple[list[int], list[int]]]:
    """(prompt, completion) pairs; completions end with EOS, as answers do."""
    eos = tokenizer.eos_token_id
    pairs = [("d/dx x^2", " = 2*x"), ("d/dx sin(x) + x", " = cos(x) + 1")]
    return [(tokenizer(p)["input_ids"], tokenizer(c)["input_ids"] + [eos]) for p, c in pairs]


def teacher_forced(model, prompt, completion, temperature=1.0) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    pos = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)
    return torch.log_softmax(logits / temperature, -1)[pos, torch.tensor(completion)]


def engine_teacher_forced(engine, prompt, completion) -> torch.Tensor:
    """vLLM's logprobs of a fixed completion (prompt_logprobs over prompt + completion)."""
    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.inputs import TokensPrompt

    seq = prompt + completion
    params = VLLMSamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
    out = engine.llm.generate([TokensPrompt(prompt_token_ids=seq)], params, use_tqdm=False)[0]
    return torch.tensor([out.prompt_logprobs[i][seq[i]].logprob for i in range(len(prompt), len(seq))])


def train(model, pairs, steps: int, lr: float = 1e-2) -> None:
    """Plain AdamW steps raising the likelihood of the completions."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = 0.0
        for prompt, completion in pairs:
            ids = torch.tensor([prompt + completion])
            logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
            pos = torch.arange(len(prompt) - 1, ids.shape[1] - 1)
            loss = loss - logp[pos, torch.tensor(completion)].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def push_without_reset(engine, model) -> None:
    """The sync minus the prefix-cache reset (what trl#5312 shipped)."""
    weights = [(n, p.detach()) for n, p in model.named_parameters()]
    engine.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                         "is_checkpoint_format": True})
    engine.llm.collective_rpc(_refresh_tied_modules)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def environment() -> dict[str, str]:
    # torch's inductor records a pointer here when it loads a compiled CPU kernel (vLLM compiles
    # a few sampler helpers lazily); it is torch's own bookkeeping, not state vLLM leaves behind
    return {k: v for k, v in os.environ.items() if k != "_TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR"}


def test_close_leaves_the_process_as_it_was():
    """First in the file: it must run before the module's shared engine exists (one per process)."""
    tokenizer = build_math_tokenizer(model_max_length=ARCH.max_position_embeddings)
    model = build_tiny_model(ARCH, tokenizer, seed=1)
    env, threads, set_threads = environment(), torch.get_num_threads(), torch.set_num_threads
    rng = torch.get_rng_state()
    with VLLMEngine(model, tokenizer, **ENGINE_OPTIONS) as engine:
        assert environment() == env and torch.set_num_threads is set_threads
        assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
        ro = engine.generate([[5, 6, 7]], n=2, sampling=SamplingParams(max_new_tokens=3))
        assert len(ro) == 2
    assert engine.llm is None and not torch.distributed.is_initialized()
    assert environment() == env and torch.set_num_threads is set_threads
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate([[5]], n=1, sampling=SamplingParams(max_new_tokens=1))
    engine.close()  # twice is fine


def test_generate_n_samples_shapes_texts_and_sampler_logprobs(policy_and_engine):
    """Runs on the untrained policy (before the training tests), where samples are diverse."""
    model, tokenizer, engine = policy_and_engine
    engine.load_weights(model.named_parameters())
    prompts = [tokenizer(t)["input_ids"] for t in ("d/dx x", "d/dx exp(3*x) + x^2", "f")]
    sp = SamplingParams(max_new_tokens=6, temperature=0.7, seed=5)
    ro = engine.generate(prompts, n=3, sampling=sp)
    assert len(ro) == 9 and ro.n == 3 and ro.prompt_index == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(1 <= len(ids) <= 6 for ids in ro.token_ids)
    for ids, reason in zip(ro.token_ids, ro.finish_reasons):
        stopped = ids[-1] == tokenizer.eos_token_id
        assert reason == ("stop" if stopped else "length") and (stopped or len(ids) == 6)
    assert ro.texts == tokenizer.batch_decode(ro.token_ids, skip_special_tokens=True)
    assert len({tuple(ids) for ids in ro.token_ids[:3]}) > 1  # n samples of one prompt differ
    assert ro.stats["tokens"] == ro.n_tokens and ro.stats["tokens_per_s"] > 0
    # sampler logprobs are log_softmax(logits / T) of the policy, at T != 1
    for k, ids in enumerate(ro.token_ids):
        ref = teacher_forced(model, prompts[ro.prompt_index[k]], ids, temperature=0.7)
        assert max_diff(torch.tensor(ro.logprobs[k]), ref) <= PARITY
    assert engine.generate(prompts, n=3, sampling=sp).token_ids == ro.token_ids  # seeded


def test_sync_after_optimizer_steps_matches_policy(policy_and_engine):
    model, tokenizer, engine = policy_and_engine
    engine.load_weights(model.named_parameters())
    pairs = fixed_sequences(tokenizer)
    before = [engine_teacher_forced(engine, p, c) for p, c in pairs]
    for (p, c), lp in zip(pairs, before):
        assert max_diff(lp, teacher_forced(model, p, c)) <= PARITY

    train(model, pairs, steps=3)
    policy = [teacher_forced(model, p, c) for p, c in pairs]
    # not synced yet: the engine still serves the old weights
    assert max(max_diff(engine_teacher_forced(engine, p, c), lp) for (p, c), lp in zip(pairs, policy)) > 0.1

    engine.load_weights(model.named_parameters())
    after = [engine_teacher_forced(engine, p, c) for p, c in pairs]
    for lp_after, lp_policy, lp_before in zip(after, policy, before):
        assert max_diff(lp_after, lp_policy) <= PARITY
        assert max_diff(lp_after, lp_before) > 10 * PARITY

    # tied head: vLLM's lm_head is its embedding, and both hold the policy's new embedding
    same, head = engine.llm.apply_model(
        lambda m: (m.lm_head.weight is m.model.embed_tokens.weight, m.lm_head.weight.detach().clone())
    )[0]
    emb = model.model.embed_tokens.weight.detach()
    assert same and torch.equal(head[: len(emb)], emb)  # vLLM pads the vocabulary to a multiple of 64


def test_tied_output_head_is_refreshed(policy_and_engine):
    """Only the embedding changes: the output head (tied to it) must follow."""
    model, tokenizer, engine = policy_and_engine
    engine.load_weights(model.named_parameters())
    (prompt, completion), _ = fixed_sequences(tokenizer)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.add_(0.5 * torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)))
    policy = teacher_forced(model, prompt, completion)
    if engine.on_cpu:  # vLLM's reload alone leaves the CPU lm_head kernel packed from the old embedding
        weights = [(n, p.detach()) for n, p in model.named_parameters()]
        engine.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                             "is_checkpoint_format": True})
        assert max_diff(engine_teacher_forced(engine, prompt, completion), policy) > PARITY
    engine.load_weights(model.named_parameters())
    assert max_diff(engine_teacher_forced(engine, prompt, completion), policy) <= PARITY


def test_prefix_cache_serves_no_stale_kv_after_sync(policy_and_engine):
    model, tokenizer, engine = policy_and_engine
    engine.load_weights(model.named_parameters())
    rng = random.Random(0)
    prompt = [rng.randrange(5, len(tokenizer)) for _ in range(300)]  # > 2 KV blocks: cacheable
    sp = SamplingParams(max_new_tokens=4, temperature=0.0)
    first = engine.generate([prompt], n=1, sampling=sp)  # fills the prefix cache
    train(model, [(prompt[:40], prompt[40:60])], steps=3)

    def served_vs_policy() -> float:
        ro = engine.generate([prompt], n=1, sampling=sp)
        return max_diff(torch.tensor(ro.logprobs[0]), teacher_forced(model, prompt, ro.token_ids[0]))

    push_without_reset(engine, model)
    assert served_vs_policy() > PARITY  # the cached prompt KV still comes from the old weights
    engine.load_weights(model.named_parameters())  # the real sync resets the cache
    assert served_vs_policy() <= PARITY
    second = engine.generate([prompt], n=1, sampling=sp)
    assert max_diff(torch.tensor(second.logprobs[0][:1]), torch.tensor(first.logprobs[0][:1])) > PARITY


def test_greedy_matches_hf_engine_and_stops_on_eos(policy_and_engine):
    model, tokenizer, engine = policy_and_engine
    pairs = fixed_sequences(tokenizer)
    train(model, pairs, steps=40)  # memorise the completions, EOS included
    engine.load_weights(model.named_parameters())
    prompts = [p for p, _ in pairs]
    sp = SamplingParams(max_new_tokens=24, temperature=0.0)
    ro = engine.generate(prompts, n=1, sampling=sp)
    ref = HFEngine(model, tokenizer).generate(prompts, n=1, sampling=sp)
    assert ro.token_ids == ref.token_ids == [c for _, c in pairs]
    assert ro.finish_reasons == ["stop", "stop"]
    for a, b in zip(ro.logprobs, ref.logprobs):
        assert max_diff(torch.tensor(a), torch.tensor(b)) <= PARITY
