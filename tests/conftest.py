"""Shared fixtures: tiny random-weight models built locally (never downloaded)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# at most 2 torch threads; OMP_NUM_THREADS=1 (e.g. beside a training run) is respected
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1, int(os.environ.get("OMP_NUM_THREADS") or 2))))


class CharTokenizer:
    """Minimal HF-like tokenizer over bytes, enough for engine and loss tests."""

    eos_token_id = 1
    pad_token_id = 0

    def batch_decode(self, seqs, skip_special_tokens=True):
        return ["".join(chr(t) for t in s if t > 2) for s in seqs]


@pytest.fixture
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg).float().eval()
    return model, CharTokenizer()
