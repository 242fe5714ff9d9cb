"""HF engine: logprobs equal a teacher-forced forward pass; sampling semantics hold."""

import torch

from tsm.rollout.base import Rollouts, SamplingParams
from tsm.rollout.hf import HFEngine, _filter_top_k_top_p


def teacher_forced_logprobs(model, prompt, completion, temperature=1.0):
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits / temperature, -1)
    pos = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)
    return logp[pos, torch.tensor(completion)]


def test_logprobs_match_teacher_forcing_with_left_padding(tiny_llama):
    model, tok = tiny_llama
    engine = HFEngine(model, tok, batch_size=8)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [20, 21, 22, 23]]  # different lengths -> padding
    for sp in (SamplingParams(max_new_tokens=12, temperature=0.0),
               SamplingParams(max_new_tokens=12, temperature=0.7, seed=3)):
        ro = engine.generate(prompts, n=2, sampling=sp)
        assert isinstance(ro, Rollouts) and len(ro) == 6 and ro.prompt_index == [0, 0, 1, 1, 2, 2]
        for k in range(len(ro)):
            ref = teacher_forced_logprobs(model, prompts[ro.prompt_index[k]], ro.token_ids[k],
                                          temperature=sp.temperature or 1.0)
            assert torch.allclose(torch.tensor(ro.logprobs[k]), ref, atol=1e-4), (k, sp)


def test_greedy_is_deterministic_and_matches_argmax(tiny_llama):
    model, tok = tiny_llama
    engine = HFEngine(model, tok)
    sp = SamplingParams(max_new_tokens=6, temperature=0.0)
    a = engine.generate([[5, 6, 7]], n=1, sampling=sp)
    b = engine.generate([[5, 6, 7]], n=1, sampling=sp)
    assert a.token_ids == b.token_ids
    ids = [5, 6, 7]
    for t in a.token_ids[0]:
        with torch.no_grad():
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        assert nxt == t
        ids.append(t)
        if t == tok.eos_token_id:
            break


def test_stop_and_length_finish_reasons(tiny_llama):
    model, tok = tiny_llama
    engine = HFEngine(model, tok)
    sp = SamplingParams(max_new_tokens=4, temperature=0.0)
    ro = engine.generate([[5, 6]], n=1, sampling=sp)
    assert 1 not in ro.token_ids[0] and ro.finish_reasons == ["length"] and len(ro.token_ids[0]) == 4
    # make EOS the argmax from the second step on: generation stops there and keeps the EOS token
    calls = {"n": 0}

    def push_eos(_module, _inputs, output):
        calls["n"] += 1
        if calls["n"] >= 2:
            output[..., 1] += 1e4
        return output

    handle = model.lm_head.register_forward_hook(push_eos)
    try:
        ro = engine.generate([[5, 6]], n=1, sampling=sp)
    finally:
        handle.remove()
    assert ro.finish_reasons == ["stop"] and len(ro.token_ids[0]) == 2 and ro.token_ids[0][-1] == 1


def test_top_k_top_p_filter():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(_filter_top_k_top_p(logits, 2, 1.0)[0, 2:]).all()
    kept = ~torch.isinf(_filter_top_k_top_p(logits, 0, 0.5))
    assert kept.tolist() == [[True, False, False, False]]  # p(top) = 0.64 >= 0.5
    assert (~torch.isinf(_filter_top_k_top_p(logits, 0, 0.9))).sum() == 3


def test_beam_search_matches_transformers_and_teacher_forcing(tiny_llama):
    """Batched, left-padded, chunked beam search returns per prompt what ``generate`` gives that
    prompt alone, best beam first, with teacher-forced logprobs."""
    import pytest
    from transformers import GenerationConfig

    model, tok = tiny_llama
    engine = HFEngine(model, tok, batch_size=4)  # 4 // 2 beams = 2 prompts per call: two calls
    prompts = [[12, 13], [5, 6, 7, 8, 9, 10, 11], [20, 21, 22, 23]]
    sp = SamplingParams(max_new_tokens=8, temperature=0.0, num_beams=2)
    ro = engine.generate(prompts, n=2, sampling=sp)
    assert ro.prompt_index == [0, 0, 1, 1, 2, 2] and len(ro) == 6
    cfg = GenerationConfig(num_beams=2, num_return_sequences=2, do_sample=False, max_new_tokens=8,
                           eos_token_id=[1], pad_token_id=0, length_penalty=1.0)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            ref = model.generate(input_ids=torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                 generation_config=cfg)[:, len(p):].tolist()
        for r in range(2):
            ids = ro.token_ids[2 * i + r]
            assert ids == ref[r][: len(ids)] and all(t == 0 for t in ref[r][len(ids):]), (i, r)
            assert ro.finish_reasons[2 * i + r] == ("stop" if ids[-1] == 1 else "length")
            lp = teacher_forced_logprobs(model, p, ids)
            assert torch.allclose(torch.tensor(ro.logprobs[2 * i + r]), lp, atol=1e-4), (i, r)
        assert ro.token_ids[2 * i] != ro.token_ids[2 * i + 1]  # two different beams
        mean = [sum(ro.logprobs[2 * i + r]) / len(ro.logprobs[2 * i + r]) for r in range(2)]
        assert mean[0] >= mean[1] - 1e-5  # best beam first (length penalty 1: mean logprob)
    with pytest.raises(ValueError, match="at most num_beams"):
        engine.generate(prompts, n=3, sampling=sp)


def test_beam_params_are_validated():
    import pytest

    with pytest.raises(ValueError, match="num_beams"):
        SamplingParams(num_beams=0)
    with pytest.raises(ValueError, match="temperature 0"):
        SamplingParams(num_beams=4, temperature=0.7)
    assert SamplingParams(num_beams=4, temperature=0.0).num_beams == 4
