"""Tasks as plugins: the registry, the integration task end to end, and a third task from one module.

The third task (``tsm_negation_task``: given f, answer -f) lives in a module written by the test, outside
``tsm/``: building its data, training targets, scoring and evaluation need nothing else, which is
the claim "adding a task is one package and one YAML".
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sympy

from tsm.data.build import DatasetSpec, build_dataset, generate_candidate, task_args
from tsm.data.sft import target_texts
from tsm.reward import RewardScorer
from tsm.tasks import TASKS, TaskPlugin, get_task, task_of_row
from tsm.tasks.integration import IntegrationTask, antiderivative_check, verify

ROOT = Path(__file__).resolve().parents[2]
X = sympy.Symbol("x")


def test_registry_knows_the_shipped_tasks_and_refuses_others():
    for name in TASKS:
        plugin = get_task(name)
        assert isinstance(plugin, TaskPlugin) and plugin.name == name
        assert plugin.data_source == f"tsm/{name}"
    with pytest.raises(ValueError, match="unknown task 'no_such'.*differentiation.*integration"):
        get_task("no_such")
    with pytest.raises(ValueError, match="no TASK"):
        get_task("tsm.tasks.base")  # a module, but not a task
    assert task_of_row({"data_source": "tsm/integration"}).name == "integration"
    with pytest.raises(ValueError, match="not a tsm task"):
        task_of_row({"data_source": "openai/gsm8k"})


# -- integration: the sampler ----------------------------------------------------------------
def test_backward_pairs_are_antiderivatives_and_reproducible():
    task = IntegrationTask(simplicity=0.5)
    n_ok, reasons = 0, set()
    for i in range(150):
        try:
            p = task.sample(random.Random(i))
        except Exception as exc:  # noqa: BLE001 - only Rejected may escape
            assert type(exc).__name__ == "Rejected", exc
            reasons.add(exc.reason)
            continue
        n_ok += 1
        assert p.direction == "backward"
        assert antiderivative_check(p.antiderivative, p.function), p  # F' = f, checked numerically
        assert task.ground_truth(p) == str(p.function)  # the check needs the integrand, not F
        assert len(p.function_latex) <= 100 and len(p.answer_latex) <= 100
        assert p == task.sample(random.Random(i))  # a draw is a function of its seed
    assert n_ok > 100
    assert reasons <= {"too_long_function", "too_long_answer", "constant", "complex", "not_finite",
                       "invalid_node", "too_large", "error"}


def test_forward_pairs_come_from_sympy_within_the_limit():
    task = IntegrationTask(simplicity=1.0, forward_share=1.0, forward_timeout_s=2.0)
    got = 0
    for i in range(12):
        try:
            p = task.sample(random.Random(i))
        except Exception as exc:  # noqa: BLE001
            assert exc.reason in {"timeout", "not_elementary", "too_long_answer", "too_long_function",
                                  "constant", "complex", "not_finite", "invalid_node", "error"}
            continue
        got += 1
        assert p.direction == "forward" and not p.antiderivative.has(sympy.Integral)
        assert antiderivative_check(p.antiderivative, p.function)
    assert got >= 4


def test_forward_time_limit_survives_code_that_swallows_exceptions(monkeypatch):
    """sympy catches ``Exception`` inside its own integration code; the limit raises a
    BaseException, so it still ends a call that swallows every Exception (this stand-in for
    sympy.integrate would run 5 s)."""
    from tsm.tasks.integration import sampler as integration_sampler

    def stubborn(f, var):
        start = time.perf_counter()
        while time.perf_counter() - start < 5.0:
            try:
                sum(range(1000))
            except Exception:  # noqa: BLE001, S112  (what sympy does)
                continue
        return f

    monkeypatch.setattr(integration_sampler.sympy, "integrate", stubborn)
    start = time.perf_counter()
    with pytest.raises(Exception, match="timeout") as info:
        integration_sampler.integrate_within(sympy.Symbol("x"), 0.2)
    assert info.value.reason == "timeout" and time.perf_counter() - start < 2.0


@pytest.mark.parametrize("bad, words", [
    ({"forward_share": 1.5}, "forward_share"), ({"forward_timeout_s": 0}, "forward_timeout_s"),
    ({"no_such_knob": 1}, "task_options"),
])
def test_bad_task_options_fail_at_the_spec(bad, words):
    with pytest.raises(ValueError, match=words):
        DatasetSpec(task="integration", task_options=bad)
    with pytest.raises(ValueError, match="data.task"):
        DatasetSpec(task="no_such")


# -- integration: data, targets, reward --------------------------------------------------------
@pytest.fixture(scope="module")
def integration_files(tmp_path_factory):
    spec = DatasetSpec(task="integration", n_train=48, n_test=16, output_dir=str(tmp_path_factory.mktemp("int")))
    return spec, build_dataset(spec)


def test_integration_rows_are_task_neutral_and_self_consistent(integration_files):
    _, files = integration_files
    assert files.directory.name.startswith("integration-")
    test = pq.read_table(files.test).to_pylist()
    train = pq.read_table(files.train).to_pylist()
    assert {r["extra_info"]["function_sympy"] for r in test}.isdisjoint(
        r["extra_info"]["function_sympy"] for r in train)
    rows = test + train
    assert {r["data_source"] for r in rows} == {"tsm/integration"}
    for r in rows:
        assert r["reward_model"]["ground_truth"] == r["extra_info"]["function_sympy"]
        assert "antiderivative" in r["prompt"][1]["content"].lower() or "integra" in r["prompt"][1]["content"].lower() \
            or "primitive" in r["prompt"][1]["content"] or "F'(x)" in r["prompt"][1]["content"] \
            or "derivative is" in r["prompt"][1]["content"]
    # the answer target, scored by the reward the config gives an integration run
    targets = [target_texts(r, "answer")[0] for r in rows]
    scorer = RewardScorer(task="integration", workers=0)
    gts = [r["reward_model"]["ground_truth"] for r in rows]
    assert scorer(targets, gts).correct_frac == 1.0
    with_c = [t.replace("}$", " + C}$") for t in targets]
    assert scorer(with_c, gts).correct_frac == 1.0
    # differentiating instead of integrating is wrong (f is never its own antiderivative here)
    derivatives = [f"\\boxed{{{r['extra_info']['function']}}}" for r in rows]
    assert scorer(derivatives, gts).correct_frac < 0.1
    # the same answers under the derivative reward are mostly wrong: the task picks the check
    assert RewardScorer(workers=0)(targets, gts).correct_frac < 0.1
    with pytest.raises(ValueError, match="no step-by-step"):
        target_texts(rows[0], "steps")


def test_pool_workers_score_with_the_tasks_check(integration_files):
    _, files = integration_files
    rows = pq.read_table(files.test).to_pylist()[:6]
    with RewardScorer(task="integration", workers=1, timeout_s=20.0) as scorer:
        out = scorer([target_texts(r, "answer")[0] for r in rows], [r["reward_model"]["ground_truth"] for r in rows])
    assert out.correct_frac == 1.0 and out.n_timeouts == 0


def test_generator_arguments_carry_the_task():
    spec = DatasetSpec(task="integration", task_options={"forward_share": 0.25})
    args = task_args(spec, simplicity=0.2, seed=7)
    assert args[0] == "integration" and args[-1] == 7
    knobs = dict(args[1])
    assert knobs["simplicity"] == 0.2 and knobs["forward_share"] == 0.25
    _, fields = next(r for r in (generate_candidate((args, i)) for i in range(20)) if r[0] == "ok")
    assert fields["task"] == "integration" and fields["ground_truth"] == fields["function_sympy"]


def test_verify_accepts_any_antiderivative_and_refuses_the_rest():
    assert verify(r"\boxed{\ln|x| + C}", "1/x").correct
    assert verify(r"\boxed{-\frac{\cos^{2}(x)}{2}}", "sin(x)*cos(x)").correct
    assert verify(r"\boxed{\frac{\sin^{2}(x)}{2} + 7}", "sin(x)*cos(x)").correct
    assert not verify(r"\boxed{\cos(x)}", "sin(x)*cos(x)").correct
    assert verify(r"\boxed{\int x\,dx}", "x").reason == "invalid"


# -- a third task from one module ---------------------------------------------------------------
NEGATION = textwrap.dedent('''
    """A toy task for the tests: given f(x), answer -f(x). Loaded as task=tsm_negation_task."""
    import random

    import sympy

    from tsm.math import render, sampling
    from tsm.tasks.base import SYSTEM_PROMPT, Posed, Rejected, TaskPlugin
    from tsm.tasks.differentiation.sampler import canonical_key


    class Problem:
        def __init__(self, f):
            self.function, self.answer = f, -f
            self.function_latex, self.answer_latex = render.to_latex(f), render.to_latex(-f)
            self.function_type, self.key = "any", canonical_key(f)
            self.function_sympy, self.answer_sympy = str(f), str(-f)


    class Sampler:
        def __init__(self, simplicity=0.5, max_coefficient=40, max_power=5, max_depth=4,
                     max_length=100, variations=True, simplify="fast"):
            self.simplicity, self.max_length = simplicity, max_length

        def sample(self, rng):
            f = sampling.sample_function(rng, simplicity=self.simplicity).expr
            p = Problem(f)
            if len(p.function_latex) > self.max_length or len(p.answer_latex) > self.max_length:
                raise Rejected("too_long")
            return p

        def pose(self, problem, rng):
            return ([{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": f"Negate {problem.function_latex}"}], problem.function_latex)

        def ground_truth(self, problem):
            return problem.answer_sympy


    def verify(response, ground_truth, config=None):
        from tsm.tasks.differentiation import verify as same_expression
        return same_expression(response, ground_truth, config)


    def pose(f, variations=False, seed=0, function_type="user"):
        p = Problem(f)
        return Posed(p, Sampler().pose(p, random.Random(seed))[0], p.answer_sympy)


    TASK = TaskPlugin(name="tsm_negation_task", sampler=Sampler, verify=verify, pose=pose)
''')


def test_a_third_task_is_one_module(tmp_path, monkeypatch):
    (tmp_path / "tsm_negation_task.py").write_text(NEGATION)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = DatasetSpec(task="tsm_negation_task", n_train=24, n_test=8, output_dir=str(tmp_path / "data"))
    files = build_dataset(spec)
    rows = pq.read_table(files.test).to_pylist() + pq.read_table(files.train).to_pylist()
    assert len(rows) == 32 and {r["data_source"] for r in rows} == {"tsm/tsm_negation_task"}
    assert task_of_row(rows[0]).name == "tsm_negation_task"
    assert files.directory.name.startswith("tsm_negation_task-")
    scorer = RewardScorer(task="tsm_negation_task", workers=0)
    gts = [r["reward_model"]["ground_truth"] for r in rows]
    assert scorer([target_texts(r, "answer")[0] for r in rows], gts).correct_frac == 1.0
    assert scorer([f"\\boxed{{{r['extra_info']['function']}}}" for r in rows], gts).correct_frac < 0.2


# -- the command lines ---------------------------------------------------------------------------
def test_task_override_selects_the_tasks_data_and_check():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        for name in ("train", "evaluate"):
            cfg = compose(name, overrides=["task=integration"])
            assert cfg.data.task == cfg.reward.task == "integration" and cfg.data.n_test == 1000
            cfg = compose(name)
            assert cfg.data.task == cfg.reward.task == "differentiation"
        cfg = compose("train", overrides=["task=integration", "experiment=integration_tiny"])
        assert cfg.init_from == "tsm-diff-5m-stage3" and cfg.data.task == "integration"


def test_a_task_whose_data_an_experiment_replaced_fails_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train.py", "task=integration", "experiment=smallest", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0
    assert "task=integration but data.task='differentiation'" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout


def test_the_size_sweep_runs_per_task(tmp_path):
    """`python train.py -m hparams_search=size_simplicity task=integration`: every grid point trains
    and is scored on integration (tiny_sft replaces no data config)."""
    from hydra.utils import instantiate

    from tests.helpers import compose_cfg

    for model in ("tiny_1m", "tiny_5m"):
        cfg = compose_cfg("train", ["hparams_search=size_simplicity", "task=integration", f"model={model}",
                                    "data.simplicity=0.9"], tmp_path)
        assert cfg.task_name == "tiny_sft" and cfg.data.task == cfg.reward.task == "integration"
        spec = instantiate(cfg.data)
        assert spec.task == "integration" and spec.simplicity == 0.9


def test_evaluate_scores_a_parquet_with_its_rows_task(integration_files, tmp_path):
    """`evaluate.py responses=...` on integration rows, with no task= given: the rows' data_source picks
    the antiderivative check (the derivative reward would call these answers wrong)."""
    import json

    import pyarrow as pa

    _, files = integration_files
    rows = pq.read_table(files.test).to_pylist()
    answered = [{**r, "responses": [target_texts(r, "answer")[0] if i % 2 == 0 else r"\boxed{0}"]}
                for i, r in enumerate(rows)]
    path = tmp_path / "responses.parquet"
    pq.write_table(pa.Table.from_pylist(answered), path)
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "evaluate.py", f"responses={path}", "reward.workers=0",
                           "wandb.enabled=false", f"hydra.run.dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy@1"] == 0.5


def test_hygiene_knobs_change_only_what_they_say(tmp_path):
    """data.surface=clean and data.drop_constants=true: new folders, clean prompts, no constant f;
    at their defaults the config hash and the rows are what they were."""
    base = DatasetSpec(n_train=40, n_test=8, output_dir=str(tmp_path))
    assert "surface" not in base.generation_config() and "drop_constants" not in base.generation_config()
    clean = DatasetSpec(n_train=40, n_test=8, surface="clean", drop_constants=True, output_dir=str(tmp_path))
    assert clean.config_hash() != base.config_hash()
    x = sympy.Symbol("x")
    for row in pq.read_table(build_dataset(clean).train).to_pylist():
        f = sympy.sympify(row["extra_info"]["function_sympy"])
        assert f.has(x)
        shown = row["extra_info"]["function_shown"]
        assert "**{" not in shown and "((((" not in shown
    with pytest.raises(ValueError, match="data.surface"):
        DatasetSpec(surface="fancy")
    # a task sampler that predates the knobs still works at their defaults (they are not passed)
    assert "surface" not in dict(task_args(base)[1]) and dict(task_args(clean)[1])["surface"] == "clean"
