"""Models: loading from every source (embedded GGUF default, hub id, local folder, from scratch),
the math tokenizer for from-scratch models, and the HF export (`save_hf`)."""

from tsm.models.embedded import EmbeddedModelMissing, embedded_model_dir, find_gguf
from tsm.models.loading import (
    ModelNotAvailableError,
    ModelSpec,
    load_checkpoint,
    load_model_and_tokenizer,
    save_hf,
    spec_from_checkpoint,
)
from tsm.models.math_tokenizer import build_math_tokenizer
from tsm.models.tiny import TINY_PRESETS, TinyArch, build_tiny_model, count_parameters

__all__ = [
    "TINY_PRESETS",
    "EmbeddedModelMissing",
    "ModelNotAvailableError",
    "ModelSpec",
    "TinyArch",
    "build_math_tokenizer",
    "build_tiny_model",
    "count_parameters",
    "embedded_model_dir",
    "find_gguf",
    "load_checkpoint",
    "load_model_and_tokenizer",
    "save_hf",
    "spec_from_checkpoint",
]
