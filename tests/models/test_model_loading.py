"""ModelSpec validation, checkpoint strings, the offline hub error, and the HF export round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from tsm.models.loading import (
    ModelNotAvailableError,
    ModelSpec,
    load_checkpoint,
    load_model_and_tokenizer,
    save_hf,
    spec_from_checkpoint,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
SMALL_ARCH = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
PROMPT = [{"role": "system", "content": "Reason."}, {"role": "user", "content": "d/dx \\sin{(x )}"}]


def tiny_spec(**overrides) -> ModelSpec:
    return ModelSpec(
        **{"name": "t", "source": "scratch", "arch": SMALL_ARCH, "init_seed": 0, **overrides}
    )


def logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        return model(**ids).logits


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"source": "cloud"}, "source must be one of"),
        ({"name": ""}, "name must be"),
        ({"source": "hub"}, "path is required"),
        ({"source": "local", "path": "???"}, "path is required"),
        ({"source": "embedded", "path": "/x"}, "path must be null"),
        ({"source": "embedded", "arch": SMALL_ARCH}, "only apply to source='scratch'"),
        ({"source": "hub", "path": "a/b", "init_seed": 1}, "only apply to source='scratch'"),
        ({"source": "scratch"}, "arch .* is required"),
        ({"dtype": "fp8"}, "dtype must be one of"),
        ({"attn_implementation": "flash"}, "attn_implementation must be"),
    ],
)
def test_model_spec_validation(kwargs, match):
    base = {"name": "m", "source": "embedded"}
    with pytest.raises(ValueError, match=match):
        ModelSpec(**{**base, **kwargs})


def test_model_spec_type_errors():
    with pytest.raises(TypeError, match="gradient_checkpointing must be a bool"):
        ModelSpec(name="m", source="embedded", gradient_checkpointing="yes")


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_config_instantiates(path):
    node = OmegaConf.load(path)
    if path.stem == "local":
        assert OmegaConf.is_missing(node, "path")
        node.path = "/some/folder"
    spec = instantiate(node)
    assert isinstance(spec, ModelSpec)
    assert spec.name == path.stem


def test_hub_configs_name_diff_tsm_models():
    paths = {p.stem: OmegaConf.load(p).get("path") for p in CONF.glob("*.yaml")}
    assert paths["smollm_135m"] == "HuggingFaceTB/SmolLM-135M-Instruct"
    assert paths["smollm_360m"] == "HuggingFaceTB/SmolLM-360M-Instruct"
    assert paths["qwen05b"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert paths["qwen15b_math"] == "Qwen/Qwen2.5-Math-1.5B-Instruct"
    assert OmegaConf.load(CONF / "smollm2_135m.yaml").source == "embedded"


@pytest.mark.parametrize("how", ["offline_env", "unreachable_endpoint"])
def test_offline_hub_error_is_one_line_naming_model(monkeypatch, how):
    if how == "offline_env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # nothing listens on port 1 of localhost: refused at once, like a dead network
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
    # An id no HF cache holds, so the test means the same on a machine with cached models.
    spec = ModelSpec(name="nope", source="hub", path="tsm-tests/no-such-model-0.5B")
    with pytest.raises(ModelNotAvailableError) as info:
        load_model_and_tokenizer(spec)
    message = str(info.value)
    assert "\n" not in message
    assert "'tsm-tests/no-such-model-0.5B'" in message and "unreachable" in message
    assert "model=smollm2_135m" in message and "model.path=" in message


def test_spec_from_checkpoint(tmp_path):
    assert spec_from_checkpoint("embedded").source == "embedded"
    assert spec_from_checkpoint("smollm2_135m").source == "embedded"
    local = spec_from_checkpoint(str(tmp_path), dtype="bfloat16")
    assert (local.source, local.path, local.dtype) == ("local", str(tmp_path), "bfloat16")
    hub = spec_from_checkpoint("Qwen/Qwen2.5-0.5B-Instruct")
    assert (hub.source, hub.path) == ("hub", "Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(ValueError, match="Lightning checkpoint"):
        spec_from_checkpoint(str(tmp_path / "runs" / "x" / "last.ckpt"))
    with pytest.raises(ValueError, match="not a folder, a shipped model's name .* a hub id"):
        spec_from_checkpoint("no such thing")


def test_local_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_and_tokenizer(ModelSpec(name="l", source="local", path=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model_and_tokenizer(ModelSpec(name="l", source="local", path=str(tmp_path)))


def test_save_hf_reload_gives_identical_logits(tmp_path):
    model, tokenizer = load_model_and_tokenizer(tiny_spec())
    folder = save_hf(model, tokenizer, tmp_path / "export" / "hf")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert "model.embed_tokens.weight" in f.keys()  # noqa: SIM118 (safe_open is no dict)
    # transformers loads it as it is: no tsm code involved.
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    reloaded_tok = AutoTokenizer.from_pretrained(folder)
    assert reloaded_tok.chat_template == tokenizer.chat_template
    assert torch.equal(logits(reloaded, reloaded_tok), logits(model, tokenizer))
    # ... and so does load_checkpoint (what the next stage and evaluate.py call).
    again, again_tok = load_checkpoint(str(folder))
    assert torch.equal(logits(again, again_tok), logits(model, tokenizer))
    # transformers 4 (and vLLM on it) cannot resolve transformers 5's "TokenizersBackend".
    assert (
        json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"]
        == "PreTrainedTokenizerFast"
    )


def test_save_hf_replaces_an_existing_export_whole(tmp_path):
    first, tokenizer = load_model_and_tokenizer(tiny_spec(init_seed=1))
    second, _ = load_model_and_tokenizer(tiny_spec(init_seed=2))
    folder = tmp_path / "hf"
    save_hf(first, tokenizer, folder)
    (folder / "stale.txt").write_text("from the first export")
    save_hf(second, tokenizer, folder)
    assert not (folder / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no staging folders left behind
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    assert torch.equal(reloaded.model.embed_tokens.weight, second.model.embed_tokens.weight)


def test_save_hf_requires_chat_template(tmp_path):
    model, tokenizer = load_model_and_tokenizer(tiny_spec())
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        save_hf(model, tokenizer, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_dtype_and_gradient_checkpointing_are_applied():
    model, _ = load_model_and_tokenizer(tiny_spec(dtype="bfloat16", gradient_checkpointing=True))
    assert model.dtype == torch.bfloat16
    assert model.is_gradient_checkpointing
    plain, _ = load_model_and_tokenizer(tiny_spec())
    assert plain.dtype == torch.float32 and not plain.is_gradient_checkpointing


def test_local_source_loads_in_requested_dtype(tmp_path):
    model, tokenizer = load_model_and_tokenizer(tiny_spec())
    save_hf(model, tokenizer, tmp_path / "hf")
    spec = ModelSpec(
        name="l",
        source="local",
        path=str(tmp_path / "hf"),
        dtype="bfloat16",
        attn_implementation="eager",
    )
    loaded, _ = load_model_and_tokenizer(spec)
    assert loaded.dtype == torch.bfloat16
    assert loaded.config._attn_implementation == "eager"


def test_export_sets_max_new_tokens_for_plain_generate(tmp_path):
    import json

    from tsm.models import TINY_PRESETS, build_math_tokenizer, build_tiny_model, save_hf
    from tsm.models.loading import EXPORT_MAX_NEW_TOKENS

    tok = build_math_tokenizer()
    folder = save_hf(build_tiny_model(TINY_PRESETS["tiny_1m"], tok, seed=0), tok, tmp_path / "hf")
    assert json.loads((folder / "generation_config.json").read_text())["max_new_tokens"] == EXPORT_MAX_NEW_TOKENS
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # staged and renamed, nothing left
