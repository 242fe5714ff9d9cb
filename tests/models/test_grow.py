"""Depth growth (tsm/models/grow.py): the grown model computes the trained model's function, its new
layers learn, it generates the same greedy text with a KV cache, and it round-trips through the HF
export; train.py applies `grow` to `init_from` and rejects a malformed `grow` in one line."""
from __future__ import annotations

import pytest
import torch

from tsm.models import TinyArch, build_math_tokenizer, build_tiny_model, load_checkpoint, save_hf
from tsm.models.grow import copy_plan, grow_depth

ARCH = TinyArch(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128, max_position_embeddings=128)


@pytest.fixture(scope="module")
def tokenizer():
    return build_math_tokenizer()


def _model(tokenizer, seed=0):
    return build_tiny_model(ARCH, tokenizer, seed=seed).eval()


def test_copy_plan_spreads_copies_evenly():
    assert copy_plan(3, 3) == [0, 1, 2]
    assert copy_plan(3, 6) == [0, 0, 1, 1, 2, 2]
    assert copy_plan(6, 9) == [0, 1, 1, 2, 3, 3, 4, 5, 5]
    assert copy_plan(2, 7) == [0, 0, 0, 1, 1, 1, 1]
    for bad in (2, 2.5, True, "6"):
        with pytest.raises(ValueError, match="grow.num_layers"):
            copy_plan(3, bad)


@pytest.mark.parametrize("num_layers", [4, 6, 8])
def test_grown_model_computes_the_same_function(tokenizer, num_layers):
    small, grown = _model(tokenizer), grow_depth(_model(tokenizer), num_layers)
    assert len(grown.model.layers) == grown.config.num_hidden_layers == num_layers
    assert [layer.self_attn.layer_idx for layer in grown.model.layers] == list(range(num_layers))
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in small.parameters())
    ids = torch.randint(3, len(tokenizer), (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(grown(ids).logits, small(ids).logits, rtol=0, atol=1e-5)
        # greedy decoding with a KV cache indexes the cache by layer_idx: a wrong index would differ
        a = small.generate(ids[:1], max_new_tokens=12, do_sample=False)
        b = grown.generate(ids[:1], max_new_tokens=12, do_sample=False)
    assert torch.equal(a, b)


def test_new_layers_are_zero_output_copies_and_learn(tokenizer):
    grown = grow_depth(_model(tokenizer), 6).train()
    old, new = grown.model.layers[0], grown.model.layers[1]
    assert torch.equal(new.self_attn.q_proj.weight, old.self_attn.q_proj.weight)
    assert new.self_attn.q_proj.weight.data_ptr() != old.self_attn.q_proj.weight.data_ptr()  # a copy, not shared
    assert not new.self_attn.o_proj.weight.any() and not new.mlp.down_proj.weight.any()
    ids = torch.randint(3, len(tokenizer), (2, 12), generator=torch.Generator().manual_seed(2))
    grown(ids, labels=ids).loss.backward()
    assert new.self_attn.o_proj.weight.grad.abs().sum() > 0  # the zeroed writers get a gradient at once
    assert new.mlp.down_proj.weight.grad.abs().sum() > 0


def test_grown_model_exports_and_reloads(tokenizer, tmp_path):
    grown = grow_depth(_model(tokenizer), 5)
    save_hf(grown, tokenizer, tmp_path / "hf")
    again, _ = load_checkpoint(str(tmp_path / "hf"))
    assert again.config.num_hidden_layers == 5
    ids = torch.randint(3, len(tokenizer), (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(ids).logits, grown(ids).logits)


def test_grow_needs_a_llama_family_model():
    with pytest.raises(ValueError, match="Llama-family"):
        grow_depth(torch.nn.Linear(2, 2), 4)
