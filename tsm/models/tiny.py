"""From-scratch tiny models: Llama-architecture configs and a seeded random initialisation.

`TinyArch` holds the few numbers that define a model (conf/model/tiny_*.yaml set them; any can
be overridden from the command line, e.g. ``model.arch.num_layers=2``). The presets below are
sized, with the math tokenizer's vocabulary and tied input/output embeddings, to roughly 1M, 5M
and 20M parameters (tests/models/test_tiny.py pins the exact counts). All use plain multi-head
attention (as many key/value heads as query heads): at these widths grouped-query attention
saves little and costs quality.

The initialisation is transformers' own (normal(0, initializer_range), zero biases, unit
norms), drawn from a private RNG seeded with `seed`, so a build does not depend on, or advance,
the global torch RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TinyArch:
    """Shape of a from-scratch Llama model (the vocabulary comes from the tokenizer)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 1024  # prompt + step-by-step answer fit well within this
    rope_theta: float = 10000.0
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for name in (
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"TinyArch.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyArch.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError("TinyArch head size (hidden_size / num_heads) must be even for RoPE")
        if self.rope_theta <= 0 or self.initializer_range <= 0:
            raise ValueError("TinyArch.rope_theta and initializer_range must be positive")


TINY_PRESETS: dict[str, TinyArch] = {
    "tiny_1m": TinyArch(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384),
    "tiny_5m": TinyArch(hidden_size=256, num_layers=6, num_heads=8, intermediate_size=640),
    "tiny_20m": TinyArch(hidden_size=384, num_layers=11, num_heads=6, intermediate_size=1024),
}


def llama_config(arch: TinyArch, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """A LlamaConfig for `arch` whose vocabulary and special ids match `tokenizer`."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_heads,
        max_position_embeddings=arch.max_position_embeddings,
        rope_theta=arch.rope_theta,
        initializer_range=arch.initializer_range,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,  # at this size the embedding matrix is a large share
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_model(
    arch: TinyArch,
    tokenizer: PreTrainedTokenizerBase,
    *,
    seed: int | None = 0,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> LlamaForCausalLM:
    """A randomly initialised Llama model; the same `seed` gives the same weights.

    seed=None draws from the global torch RNG instead (seeded by the training entry point).
    """
    config = llama_config(arch, tokenizer)
    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    if seed is None:
        model = LlamaForCausalLM._from_config(config, dtype=torch.float32, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM._from_config(config, dtype=torch.float32, **kwargs)
    # Initialise in float32 and cast afterwards so that bf16 weights are the rounded fp32 ones.
    model = model.to(dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
