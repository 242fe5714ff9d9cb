"""Checkpoint averaging (tsm.models.average): exact means, refusals, a loadable export."""

from __future__ import annotations

import json

import pytest
import torch

from tsm.models.average import average_checkpoints, average_state_dicts, main
from tsm.models.loading import load_checkpoint, save_hf
from tsm.models.tiny import TINY_PRESETS, TinyArch, build_tiny_model

ARCH = TinyArch(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=128)


@pytest.fixture
def two_exports(tmp_path, math_tokenizer):
    a = build_tiny_model(ARCH, math_tokenizer, seed=1)
    b = build_tiny_model(ARCH, math_tokenizer, seed=2)
    return save_hf(a, math_tokenizer, tmp_path / "a"), save_hf(b, math_tokenizer, tmp_path / "b")


def test_state_dict_mean_is_exact_and_keeps_dtype():
    a = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "n": torch.tensor([3])}
    b = {"w": torch.tensor([3.0, 5.0], dtype=torch.bfloat16), "n": torch.tensor([3])}
    out = average_state_dicts([a, b])
    assert out["w"].dtype == torch.bfloat16
    assert torch.equal(out["w"], torch.tensor([2.0, 3.5], dtype=torch.bfloat16))
    assert torch.equal(out["n"], torch.tensor([3]))


def test_state_dict_refusals():
    w = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="at least two"):
        average_state_dicts([w])
    with pytest.raises(ValueError, match="different tensors"):
        average_state_dicts([w, {"v": torch.zeros(2)}])
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([w, {"w": torch.zeros(3)}])
    with pytest.raises(ValueError, match="non-float"):
        average_state_dicts([{"n": torch.tensor([1])}, {"n": torch.tensor([2])}])


def test_average_of_two_exports(tmp_path, two_exports):
    a_dir, b_dir = two_exports
    out = average_checkpoints([str(a_dir), str(b_dir)], tmp_path / "avg")
    avg, tok = load_checkpoint(str(out))
    a, _ = load_checkpoint(str(a_dir))
    b, _ = load_checkpoint(str(b_dir))
    sa, sb = a.state_dict(), b.state_dict()
    for name, t in avg.state_dict().items():
        torch.testing.assert_close(t, (sa[name] + sb[name]) / 2, rtol=0, atol=1e-7, msg=name)
        if not torch.equal(sa[name], sb[name]):  # norms start at 1 in both; the rest differ
            assert not torch.equal(t, sa[name]), name
    assert avg.lm_head.weight.data_ptr() == avg.model.embed_tokens.weight.data_ptr()  # still tied
    assert json.loads((out / "averaged_from.json").read_text())["checkpoints"] == [str(a_dir), str(b_dir)]
    assert tok.get_vocab() == load_checkpoint(str(a_dir))[1].get_vocab()


def test_average_of_a_model_with_itself_is_the_model(tmp_path, two_exports, math_tokenizer):
    a_dir, _ = two_exports
    out = average_checkpoints([str(a_dir), str(a_dir)], tmp_path / "same")
    avg, _ = load_checkpoint(str(out))
    a, _ = load_checkpoint(str(a_dir))
    ids = torch.tensor([math_tokenizer("\\sin{(x)}")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(avg(ids).logits, a(ids).logits)


def test_refuses_other_architectures_and_the_output_as_input(tmp_path, two_exports, math_tokenizer):
    a_dir, _ = two_exports
    other = save_hf(build_tiny_model(TINY_PRESETS["tiny_1m"], math_tokenizer, seed=0), math_tokenizer,
                    tmp_path / "other")
    with pytest.raises(ValueError, match="different architecture"):
        average_checkpoints([str(a_dir), str(other)], tmp_path / "x")
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([str(a_dir)], tmp_path / "x")
    with pytest.raises(ValueError, match="one of the checkpoints"):
        average_checkpoints([str(a_dir), str(other)], a_dir)
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_cli(tmp_path, two_exports, capsys):
    a_dir, b_dir = two_exports
    main([str(a_dir), str(b_dir), "--out", str(tmp_path / "cli")])
    assert (tmp_path / "cli" / "model.safetensors").is_file()
    assert str(tmp_path / "cli") in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a missing folder: a usage error, not a traceback
        main([str(a_dir), str(tmp_path / "missing"), "--out", str(tmp_path / "y")])
