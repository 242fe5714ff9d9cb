"""python -m tsm.predict: the dataset's prompt, the printed fields, the verdict, clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pyarrow.parquet as pq
import pytest
import sympy

from tsm.predict import main, pose, read_function
from tsm.rollout.base import Rollouts

ROOT = Path(__file__).resolve().parents[1]


SCRIPTS = {  # answers to f = x^x
    "right": r"The final answer is $\boxed{x^{x} (\log{(x)} + 1)}$",
    "wrong": r"The final answer is $\boxed{x^{x}}$",
    "unboxed": "I do not know",
}


class ScriptedEngine:
    """A rollout engine that always answers ``SCRIPTS[script]`` (a model that knows f', or not)."""

    def __init__(self, model, tokenizer, script: str, **hf_options):  # hf_options: rollout/hf.yaml's keys
        self.response = SCRIPTS[script]

    def generate(self, prompt_token_ids, n, sampling):
        k = len(prompt_token_ids) * n
        return Rollouts(prompt_index=[i for i in range(len(prompt_token_ids)) for _ in range(n)],
                        token_ids=[[1]] * k, texts=[self.response] * k, logprobs=[[0.0]] * k,
                        finish_reasons=["stop"] * k, n=n)

    def load_weights(self, named_tensors):
        pass


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from tsm.models import TINY_PRESETS, build_math_tokenizer, build_tiny_model, save_hf

    tok = build_math_tokenizer()
    return save_hf(build_tiny_model(TINY_PRESETS["tiny_1m"], tok, seed=0), tok,
                   tmp_path_factory.mktemp("predict") / "hf")


def test_prompt_is_the_datasets(tmp_path):
    from tsm.data.build import DatasetSpec, build_dataset

    spec = DatasetSpec(n_train=4, n_test=8, variations=False, output_dir=str(tmp_path))
    for row in pq.read_table(build_dataset(spec).test).to_pylist():
        _, messages = pose(read_function(row["extra_info"]["function_sympy"]))
        assert messages == row["prompt"]


def test_tiny_model_prints_every_field(tiny_checkpoint, capsys):
    rc = main(["e^(2x) sin(14x)", f"checkpoint={tiny_checkpoint}", "sampling.max_new_tokens=6"])
    out = capsys.readouterr().out
    assert rc == 0
    for label in ("f(x)", "prompt", "response", "answer", "verdict", "true f'(x)"):
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert r"e^{2 x} \sin{(14 x )}" in out and "14*exp(2*x)*cos(14*x)" in out
    assert "correct:" not in out  # a random 1M model does not know the answer


@pytest.mark.parametrize("script, verdict", [
    ("right", "correct"), ("wrong", "wrong"), ("unboxed", "not checked (no_box)")])
def test_verdict_checks_the_answer_against_sympy(tiny_checkpoint, capsys, script, verdict):
    rc = main(["x^x", f"checkpoint={tiny_checkpoint}", "rollout._target_=tests.test_predict.ScriptedEngine",
               f"+rollout.script={script}"])
    out = capsys.readouterr().out
    assert rc == 0
    assert next(line for line in out.splitlines() if line.startswith("verdict")).split(None, 1)[1].startswith(verdict)
    assert str(sympy.diff(sympy.Symbol("x") ** sympy.Symbol("x"))) in out


def test_variations_pick_a_dataset_phrasing():
    from tsm.tasks.differentiation import USER_PROMPTS

    f = read_function(r"\arctan(3x+1)")
    problem, messages = pose(f, variations=True, seed=3)
    assert problem.function_latex == r"\arctan{(3 x + 1 )}"
    assert any(messages[1]["content"].startswith(p.split("{function}")[0]) for p in USER_PROMPTS)
    assert pose(f, variations=True, seed=3) == (problem, messages)  # seeded


def test_bad_input_exits_nonzero_with_one_clear_line():
    # the real CLI: f is read before any model or torch import, so this is quick
    proc = subprocess.run([sys.executable, "-m", "tsm.predict", "sin(x"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: cannot read f(x) = 'sin(x'")
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("args, words", [
    (["y + x"], "cannot read f(x)"),
    (["x^2", "checkpoint=/no/such/folder"], "cannot load checkpoint"),
    (["x^2", "chekpoint=embedded"], "bad override"),
])
def test_bad_input_in_process(args, words, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and len(err.strip().splitlines()) <= 3


def test_no_argument_prints_usage(capsys):
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


class CountingEngine(ScriptedEngine):
    """ScriptedEngine that records how many times it was built and called (one load, one batch)."""

    built = 0
    calls: ClassVar[list[int]] = []

    def __init__(self, model, tokenizer, script: str, **hf_options):
        super().__init__(model, tokenizer, script)
        CountingEngine.built += 1

    def generate(self, prompt_token_ids, n, sampling):
        CountingEngine.calls.append(len(prompt_token_ids))
        return super().generate(prompt_token_ids, n, sampling)


def test_several_functions_from_args_file_and_stdin_one_load_one_batch(tiny_checkpoint, tmp_path, capsys,
                                                                     monkeypatch):
    import io

    listing = tmp_path / "functions.txt"
    listing.write_text("# one a line\nsin(x^2)\n\nx^3 log(x)\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("cos(3x)\n"))
    import importlib

    engine = importlib.import_module("tests.test_predict").CountingEngine  # the class Hydra instantiates
    engine.built, engine.calls = 0, []
    rc = main(["x^x", "--file", str(listing), "-", f"checkpoint={tiny_checkpoint}",
               "rollout._target_=tests.test_predict.CountingEngine", "+rollout.script=right"])
    out = capsys.readouterr().out
    assert rc == 0 and engine.built == 1 and engine.calls == [4]
    fs = [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("f(x)")]
    assert [f.split("(read from ")[1] for f in fs] == ["'x^x')", "'sin(x^2)')", "'x^3 log(x)')", "'cos(3x)')"]
    assert out.strip().endswith("1/4 correct")  # the scripted answer is x^x's derivative only


def test_missing_function_and_help(capsys):
    assert main([f"checkpoint={ROOT}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no function given") and "usage:" in err
    assert main(["--file", "/no/such/list.txt"]) == 2
    assert "cannot read --file /no/such/list.txt" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "checkpoint:" in out and "max_new_tokens" in out and "--file" in out


INTEGRATION_SCRIPTS = {"right": r"The final answer is $\boxed{x e^{x} - e^{x} + C}$",
                       "wrong": r"The final answer is $\boxed{x e^{x}}$"}


class IntegrationEngine(ScriptedEngine):
    def __init__(self, model, tokenizer, script: str, **hf_options):
        self.response = INTEGRATION_SCRIPTS[script]


@pytest.mark.parametrize("script, verdict", [("right", "correct"), ("wrong", "wrong")])
def test_integration_task_poses_its_prompt_and_checks_by_differentiating(tiny_checkpoint, capsys, script, verdict):
    rc = main(["--task", "integration", "x e^x", f"checkpoint={tiny_checkpoint}",
               "rollout._target_=tests.test_predict.IntegrationEngine", f"+rollout.script={script}"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert next(line for line in lines if line.startswith("verdict")).split(None, 1)[1].startswith(verdict)
    assert "antiderivative" in next(line for line in lines if line.startswith("prompt"))
    assert any(line.startswith("sympy F(x)") and "(x - 1)*exp(x)" in line for line in lines)


def test_unknown_task_is_bad_input(capsys):
    assert main(["--task", "no_such", "x"]) == 2
    assert "unknown task 'no_such'" in capsys.readouterr().err
