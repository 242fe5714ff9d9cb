"""The OOD test set (data=ood): size, categories, sympy golds that self-score, prompts like the generator's."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
import sympy
from hydra.utils import instantiate

from tests.helpers import compose_cfg
from tsm.data.build import DatasetSpec, build_dataset
from tsm.data.schema import SCHEMA
from tsm.math.equivalence import equivalent, gold_values
from tsm.math.parse import parse_expression
from tsm.reward import score
from tsm.tasks.base import SYSTEM_PROMPT
from tsm.tasks.differentiation import FIXED_PROMPT, USER_PROMPTS, ood

X = sympy.Symbol("x")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    spec = ood.OODSpec(output_dir=str(tmp_path_factory.mktemp("ood")))
    return spec, ood.build_ood(spec)


def test_set_size_schema_and_categories(built):
    _, files = built
    test, train = pq.read_table(files.test), pq.read_table(files.train)
    assert test.schema.equals(SCHEMA) and train.schema.equals(SCHEMA)
    assert train.num_rows == 0 and test.num_rows >= 50
    rows = test.to_pylist()
    kinds = Counter(r["extra_info"]["function_type"] for r in rows)
    assert {"inverse-trig", "power-tower", "nested-quotient", "product", "chain", "log-quotient",
            "radical"} <= set(kinds)
    assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))
    assert all(r["extra_info"]["split"] == "test" and r["data_source"] == "tsm/differentiation" for r in rows)
    meta = json.loads(files.meta.read_text())
    assert meta["counts"]["test"] == len(rows) and meta["function_types"]["test"] == dict(kinds)


def test_functions_use_operators_the_generator_never_emits(built):
    rows = pq.read_table(built[1].test).to_pylist()
    fs = [parse_expression(r["extra_info"]["function_sympy"]) for r in rows]
    assert any(f.has(sympy.asin) for f in fs) and any(f.has(sympy.atan) for f in fs)
    # a power whose base and exponent both depend on x (x^x, sin(x)^x): the generator has none
    assert sum(any(p.base.has(X) and p.exp.has(X) for p in f.atoms(sympy.Pow)) for f in fs) >= 5
    assert any(r["extra_info"]["function"] == r"\arcsin{(2 x )}" for r in rows)  # textbook notation


def test_golds_come_from_sympy_and_self_score_in_latex_and_plain(built):
    for r in pq.read_table(built[1].test).to_pylist():
        info, gt = r["extra_info"], r["reward_model"]["ground_truth"]
        f = parse_expression(info["function_sympy"], dialect="plain")
        assert gt == info["answer_sympy"] == str(sympy.diff(f, X))
        for answer in (info["answer"], info["answer_sympy"]):
            verdict = score(f"The final answer is $\\boxed{{{answer}}}$", gt)
            assert verdict.correct, (info["function_sympy"], answer, verdict)
        assert not score(f"\\boxed{{{info['answer']} + 1}}", gt).correct  # the check can fail


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prompts_show_the_same_function(tmp_path, seed):
    files = ood.build_ood(ood.OODSpec(output_dir=str(tmp_path), seed=seed))
    for r in pq.read_table(files.test).to_pylist():
        system, user = r["prompt"]
        info = r["extra_info"]
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert any(user["content"] == p.format(function=info["function_shown"]) for p in USER_PROMPTS)
        f = parse_expression(info["function_sympy"])
        assert equivalent(parse_expression(info["function_shown"]), gold_values(f)), info["function_shown"]
        assert equivalent(parse_expression(info["function"]), gold_values(f)), info["function"]


def test_fixed_prompt_without_variations(tmp_path):
    files = ood.build_ood(ood.OODSpec(output_dir=str(tmp_path), variations=False))
    for r in pq.read_table(files.test).to_pylist():
        assert r["prompt"][1]["content"] == FIXED_PROMPT.format(function=r["extra_info"]["function"])


def test_reuse_and_folder_per_config(built, tmp_path):
    spec, files = built
    again = ood.build_ood(ood.OODSpec(output_dir=spec.output_dir))
    assert again.reused and again.test == files.test
    other = ood.build_ood(ood.OODSpec(output_dir=spec.output_dir, seed=1))
    assert other.directory != files.directory
    source = tmp_path / "mine.yaml"
    source.write_text("chain:\n  - sin(cos(x))\n")
    mine = ood.OODSpec(source=str(source), output_dir=spec.output_dir)
    assert pq.read_table(mine.build().test).num_rows == 1
    source.write_text("chain:\n  - sin(cos(x))\n  - exp(sin(x))\n")  # edited source: rebuilt
    assert pq.read_table(mine.build().test).num_rows == 2


@pytest.mark.parametrize("body, words", [
    ("chain:\n  - sin(x\n", "does not parse"),
    ("chain:\n  - sin(x)\n  - sin(x)\n", "repeats"),
    ("chain:\n  - 2 + 3\n", "has no x"),
    ("inverse-trig:\n  - acot(x)\n", "operatorname"),
    ("chain: sin(x)\n", "list of strings"),
])
def test_bad_source_is_refused_with_the_function_named(tmp_path, body, words):
    source = tmp_path / "bad.yaml"
    source.write_text(body)
    with pytest.raises(ValueError, match=words):
        ood.OODSpec(source=str(source), output_dir=str(tmp_path)).build()


def test_conf_is_airtight_and_composes_for_evaluate_and_train(tmp_path):
    import dataclasses

    for name in ("evaluate", "train"):
        cfg = compose_cfg(name, ["data=ood"], tmp_path)
        spec = instantiate(cfg.data)
        assert isinstance(spec, ood.OODSpec) and spec.output_dir == str(tmp_path / "data")
        assert set(cfg.data) - {"_target_"} == {f.name for f in dataclasses.fields(ood.OODSpec)}
    assert pq.read_table(spec.build().test).num_rows >= 50


def test_train_reads_the_ood_test_split_through_build_dataset(tmp_path):
    from tsm.models import TINY_PRESETS, build_math_tokenizer, build_tiny_model
    from tsm.pipeline import test_accuracy
    from tsm.reward import RewardScorer

    cfg = compose_cfg("train", ["data=ood", "evaluate.n_rows=4", "evaluate.max_new_tokens=4"], tmp_path)
    spec = instantiate(cfg.data)
    assert not isinstance(spec, DatasetSpec) and build_dataset(spec).test == spec.build().test
    tok = build_math_tokenizer()
    m = test_accuracy(cfg, build_tiny_model(TINY_PRESETS["tiny_1m"], tok), tok, RewardScorer(), "ood")
    assert m["n_prompts"] == 4 and "accuracy/inverse-trig" in m
