"""The HF export: a plain (never quantized) copy of a model, and ``save_hf``, the folder that
transformers, vLLM and every tsm entry point load. At the bottom of ``tsm.models``: it imports no
other module of the package (``loading`` and ``embedded`` both use it)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["EXPORT_MAX_NEW_TOKENS", "is_quantized", "save_hf", "to_plain"]

EXPORT_MAX_NEW_TOKENS = 256  # written to every export's generation_config.json (answers need ~40; steps more)


def is_quantized(model: PreTrainedModel) -> bool:
    return getattr(model, "hf_quantizer", None) is not None or bool(
        getattr(model.config, "quantization_config", None)
    )


def to_plain(model: PreTrainedModel) -> PreTrainedModel:
    """An ordinary (not quantized) copy of `model`: same config minus quantization, same weights.

    GGUF weights are already dequantized in memory, so this is exact: the logits are equal.
    """
    from accelerate import init_empty_weights

    if not is_quantized(model):
        return model
    config = model.config.__class__.from_dict(model.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = model.state_dict()
    dtype = next(iter(state.values())).dtype
    # Parameters on the meta device: no time spent initialising weights that are replaced next
    # (buffers such as RoPE's inv_freq are still built for real).
    with init_empty_weights():
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(state, strict=True, assign=True)  # shares the dequantized tensors
    plain.tie_weights()
    plain.generation_config = model.generation_config
    plain.eval()
    return plain


def save_hf(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | os.PathLike
) -> Path:
    """Write `model` (always plain, never quantized) and `tokenizer` to an HF folder.

    The folder holds config.json, generation_config.json, model.safetensors, tokenizer.json,
    tokenizer_config.json and chat_template.jinja; `from_pretrained(folder)` and vLLM load it
    as it is. It is written beside `folder` and renamed into place, so readers never see a
    half-written export and an existing export is replaced whole. Call it on one rank only.
    """
    folder = Path(folder)
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = to_plain(model)
    if not tokenizer.chat_template:
        raise ValueError("save_hf: the tokenizer has no chat template; the export needs one")
    folder.parent.mkdir(parents=True, exist_ok=True)
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.max_new_tokens is None:
        # plain `model.generate` would stop at transformers' 20-token default, mid-answer
        gen.max_new_tokens = EXPORT_MAX_NEW_TOKENS
    from tsm.atomic import temp_path

    staging = temp_path(folder)  # .<name>.tmp-<pid>: removed by the next run if this one is killed
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    trash = None
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _make_tokenizer_config_portable(staging)
        if folder.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.tmp-{os.getpid()}.", dir=folder.parent))
            os.replace(folder, trash / "old")
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return folder


def _make_tokenizer_config_portable(folder: Path) -> None:
    # transformers 5 names its tokenizer.json-backed class "TokenizersBackend", a name that
    # transformers 4 (and the vLLM releases pinned to it) cannot resolve; both resolve
    # "PreTrainedTokenizerFast" to the same tokenizer.json-backed tokenizer.
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


