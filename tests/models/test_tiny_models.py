"""From-scratch tiny models: sizes, deterministic init, the configs that build them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tsm.models.loading import ModelSpec, load_model_and_tokenizer
from tsm.models.tiny import TINY_PRESETS, TinyArch, build_tiny_model, count_parameters

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"

# Exact counts with the current math tokenizer (1078 tokens); a vocabulary or architecture
# change shows up here first.
EXPECTED = {"tiny_1m": 991_104, "tiny_5m": 4_801_280, "tiny_20m": 19_886_976}
RANGES = {"tiny_1m": (0.8e6, 1.2e6), "tiny_5m": (4e6, 6e6), "tiny_20m": (16e6, 24e6)}


@pytest.mark.parametrize("name", sorted(TINY_PRESETS))
def test_parameter_counts(name, math_tokenizer):
    model = build_tiny_model(TINY_PRESETS[name], math_tokenizer, seed=0)
    n = count_parameters(model)
    low, high = RANGES[name]
    assert low <= n <= high
    assert n == EXPECTED[name]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    assert model.config.vocab_size == len(math_tokenizer)


def test_same_seed_same_weights_and_global_rng_untouched(math_tokenizer):
    arch = TINY_PRESETS["tiny_1m"]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_model(arch, math_tokenizer, seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # the build used a private RNG
    b = build_tiny_model(arch, math_tokenizer, seed=7)
    c = build_tiny_model(arch, math_tokenizer, seed=8)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_special_ids_match_tokenizer(math_tokenizer):
    model = build_tiny_model(TINY_PRESETS["tiny_1m"], math_tokenizer, seed=0)
    assert model.config.eos_token_id == math_tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == math_tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == math_tokenizer.pad_token_id


def test_bfloat16_weights_are_rounded_float32_init(math_tokenizer):
    arch = TINY_PRESETS["tiny_1m"]
    fp32 = build_tiny_model(arch, math_tokenizer, seed=3)
    bf16 = build_tiny_model(arch, math_tokenizer, seed=3, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(bf16.model.embed_tokens.weight, fp32.model.embed_tokens.weight.bfloat16())


@pytest.mark.parametrize("name", sorted(TINY_PRESETS))
def test_config_file_matches_preset_and_loads(name):
    spec = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(spec, ModelSpec) and spec.source == "scratch"
    assert spec.arch == TINY_PRESETS[name]
    model, tokenizer = load_model_and_tokenizer(spec)
    assert count_parameters(model) == EXPECTED[name]
    assert tokenizer.model_max_length == spec.arch.max_position_embeddings


def test_scratch_spec_accepts_plain_dict_arch(math_tokenizer):
    spec = ModelSpec(
        name="t",
        source="scratch",
        init_seed=1,
        arch={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
    )
    assert spec.arch == TinyArch(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    model, _ = load_model_and_tokenizer(spec)
    again, _ = load_model_and_tokenizer(spec)
    assert torch.equal(model.model.embed_tokens.weight, again.model.embed_tokens.weight)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_size": 0}, "positive int"),
        ({"num_heads": 3}, "divisible"),
        ({"hidden_size": 24, "num_heads": 8}, "even"),
        ({"num_layers": 2.0}, "positive int"),
    ],
)
def test_tiny_arch_validation(kwargs, match):
    base = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}
    with pytest.raises(ValueError, match=match):
        TinyArch(**{**base, **kwargs})
