"""Generator coverage (issue 22): the new operators, course templates and inverse-trig notations
are knobs that leave Diff-TSM's stream unchanged, and every new form round-trips through the
reward's parser (render -> surface variation -> parse -> the same function) and gets its
derivative checked by the reward."""
from __future__ import annotations

import hashlib
import random

import pytest
import sympy
from omegaconf import OmegaConf

from tsm.data.build import DatasetSpec, first_test_rows, task_args
from tsm.math import render, sampling
from tsm.math.equivalence import equal
from tsm.math.parse import X as PARSE_X
from tsm.math.parse import parse_expression
from tsm.reward.scoring import score
from tsm.tasks.base import Rejected
from tsm.tasks.differentiation import ood
from tsm.tasks.differentiation.sampler import DifferentiationTask, derivative

x = sampling.X


def _reads_back(text: str, f: sympy.Expr) -> bool:
    return equal(parse_expression(text).xreplace({PARSE_X: x}), f) is True


def _boxed(latex: str) -> str:
    return f"The final answer is $\\boxed{{{latex}}}$"


def test_defaults_keep_diff_tsm_stream():
    """Pinned before the coverage knobs existed: the first 400 draws (srepr and type) of seeds
    0..399 at simplicity 0.5; explicit default knobs give the same."""
    def digest(**knobs) -> str:
        h = hashlib.sha256()
        for i in range(400):
            f = sampling.sample_function(random.Random(i), simplicity=0.5, **knobs)
            h.update(sympy.srepr(f.expr).encode())
            h.update(f.function_type.encode())
        return h.hexdigest()[:16]

    assert digest() == "0c9d3a328936c70a"
    assert digest(weights=sampling.tree_weights({}), course_share=0.0) == "0c9d3a328936c70a"


EXTRA_FORMS = {
    "asin": sympy.asin(3 * x), "acos": sympy.acos(x**2), "atan": sympy.atan(2 * x + 1),
    "acot": sympy.acot(x), "asec": sympy.asec(2 * x), "acsc": sympy.acsc(x**2 + 1),
    "asinh": sympy.asinh(x), "acosh": sympy.acosh(x + 2), "atanh": sympy.atanh(x / 3),
    "exp_base": 10 ** sympy.sin(x), "log_base": sympy.log(x**2 + 1) / sympy.log(2),
    "root": (x**3 + 1) ** sympy.Rational(1, 3), "pow": sympy.sin(x) ** x,
    "power-of-inverse": sympy.asin(x) ** 2 * x,
}


@pytest.mark.parametrize("name", list(EXTRA_FORMS))
@pytest.mark.parametrize("style", render.SURFACE_STYLES)
def test_every_new_form_and_notation_round_trips(name, style):
    f = EXTRA_FORMS[name]
    notations = render.INVERSE_STYLES if render.has_inverse(f) else ("full",)
    for notation in notations:
        latex = render.to_latex(f, notation)
        assert _reads_back(latex, f), latex
        rng = random.Random(0)
        for _ in range(60):
            shown = render.surface_form(f, rng, latex, style)
            assert _reads_back(shown, f), (notation, shown)
    assert _reads_back(render.to_plain(f), f)


@pytest.mark.parametrize("name", list(EXTRA_FORMS))
def test_the_reward_checks_the_derivative_of_every_new_form(name):
    f = EXTRA_FORMS[name]
    d = derivative(f)
    assert equal(d, sympy.diff(f, x)) is True
    for notation in render.INVERSE_STYLES:
        assert score(_boxed(render.to_latex(d, notation)), str(d)).correct
    assert score(_boxed(render.to_plain(d, caret=True)), str(d)).correct
    wrong = d + sympy.Rational(1, 3) * x if name != "pow" else d * 2
    assert not score(_boxed(render.to_latex(wrong)), str(d)).correct
    assert not score(_boxed(render.to_latex(f)), str(d)).correct   # f itself is not f'


def test_inverse_power_notation_keeps_its_meaning_through_variations():
    """``\\sin^{-1}`` is arcsin: moving the power after the argument (a variation does that for
    ``\\sin^{2}``) would make it 1/sin; and ``\\operatorname{asin}`` parses after braces became
    parentheses and the backslash was dropped."""
    assert render._power_after_argument(r"\sin^{-1}{(x )}") == r"\sin^{-1}{(x )}"
    assert render._power_after_argument(r"\sin^{2}{(x )}") == r"\sin{(x )}^{2}"
    assert render._power_after_argument(r"\sin^{-1}{(x )} \cos^{3}{(x )}") == \
        r"\sin^{-1}{(x )} \cos{(x )}^{3}"
    for text, f in ((r"\sin^{-1}{(2x)}", sympy.asin(2 * x)), ("sin**(-1)((x))", sympy.asin(x)),
                    ("operatorname(asin)((2x))", sympy.asin(2 * x)),
                    (r"\operatorname(atan)((3x+ 1))", sympy.atan(3 * x + 1)),
                    ("3operatorname(atan)^(3)((x))", 3 * sympy.atan(x) ** 3),
                    ("operatorname{acos}{(x)} operatorname{asin}{(x )}", sympy.acos(x) * sympy.asin(x)),
                    (r"x\operatorname{arccot}(x)", x * sympy.acot(x))):
        assert _reads_back(text, f), text


def test_tree_weights_add_operators_and_refuse_bad_names():
    w = sampling.tree_weights({"asin": 0.5, "root": 0.5, "pow": 0.2, "sin": 0})
    assert "asin" in w.unary and "sin" in w.unary and w.unary_weights[w.unary.index("sin")] == 0
    assert w.binary_weights[w.binary.index("pow")] == 0.2
    seen = set()
    for i in range(300):
        e = sampling.random_tree(random.Random(i), weights=w)
        seen |= {type(n).__name__ for n in sympy.preorder_traversal(e)}
        assert not e.has(sympy.sin)   # weight 0 removes the step
    assert {"asin", "Pow"} <= seen
    with pytest.raises(ValueError, match="unknown step 'arcsin'"):
        sampling.tree_weights({"arcsin": 1.0})
    with pytest.raises(ValueError, match="weight >= 0"):
        sampling.tree_weights({"asin": -1})
    with pytest.raises(ValueError, match="course_share"):
        DifferentiationTask(course_share=1.5)


def test_course_draws_cover_every_kind_and_are_valid_problems():
    task = DifferentiationTask(course_share=1.0, max_length=200, drop_constants=True)
    kinds, n_ok = set(), 0
    for i in range(400):
        rng = random.Random(i)
        try:
            problem = task.sample(rng)
        except Rejected:
            continue
        n_ok += 1
        assert problem.function_type == sampling.COURSE_TYPE
        drawn = sampling.course_function(random.Random(i))
        kinds.add(drawn.template)
        assert equal(problem.derivative, sympy.diff(problem.function, x)) is True
        assert score(_boxed(problem.derivative_latex), problem.derivative_sympy).correct
    assert kinds == set(sampling.COURSE_KINDS) and n_ok > 300


def test_course_kinds_weight_the_kinds_and_default_to_the_uniform_draw():
    uniform = [sampling.course_function(random.Random(i)) for i in range(300)]
    same = sampling.course_kind_weights({})
    assert same is None and [sampling.course_function(random.Random(i), same) for i in range(300)] == uniform
    # a kind left out weighs 1.0; 0 removes a kind; a weight of 9 makes it the most drawn
    w = sampling.course_kind_weights({"nested-quotient": 9, "chain": 0})
    drawn = [sampling.course_function(random.Random(i), w).template for i in range(2000)]
    counts = {k: drawn.count(k) for k in sampling.COURSE_KINDS}
    assert counts["chain"] == 0
    share = counts["nested-quotient"] / len(drawn)   # 9 / (9 + 7 kinds x 1) = 0.5625
    assert 0.52 < share < 0.61, counts
    assert all(counts[k] > 0 for k in sampling.COURSE_KINDS if k != "chain")
    # through the task (a Hydra mapping or the builder's sorted pairs): the same draws as the sampler's
    for kinds in ({"product": 5}, (("product", 5),)):
        task = DifferentiationTask(course_share=1.0, course_kinds=kinds, max_length=300)
        w5 = sampling.course_kind_weights({"product": 5})
        for i in range(40):
            try:
                problem = task.sample(random.Random(i))
            except Rejected:
                continue
            rng = random.Random(i)
            rng.random()   # the course_share coin
            assert problem.function == sampling.course_function(rng, w5).expr
    for bad, msg in (({"products": 2}, "unknown kind"), ({"product": -1}, ">= 0"),
                     ({"product": "a"}, ">= 0"), (dict.fromkeys(sampling.COURSE_KINDS, 0), "sum to 0")):
        with pytest.raises(ValueError, match=msg) as err:
            DifferentiationTask(course_kinds=bad)
        assert str(err.value).count("course_kinds") == 1   # the key named once, in one line
    with pytest.raises(ValueError, match="course_kinds must map course kinds to weights"):
        DifferentiationTask(course_kinds=[1, 2])


def test_course_composed_builds_the_kinds_to_depth_and_is_off_by_default():
    """course_composed: the composers' share of their kinds; 0 draws exactly the template stream.
    Every composed problem is valid, its prompt (all surface variations) reads back as f, the reward
    accepts its derivative and refuses f itself."""
    assert [sampling.course_function(random.Random(i), None, 0.0) for i in range(200)] == \
        [sampling.course_function(random.Random(i)) for i in range(200)]
    only = {k: (1 if k in sampling.COURSE_COMPOSERS else 0) for k in sampling.COURSE_KINDS}
    task = DifferentiationTask(course_share=1.0, course_composed=1.0, course_kinds=only, max_length=200)
    kinds, n_ok = {}, 0
    for i in range(300):
        try:
            problem = task.sample(random.Random(i))
        except Rejected:
            continue
        n_ok += 1
        assert problem.function_type == sampling.COURSE_TYPE and problem.kind.endswith("-composed")
        kinds.setdefault(problem.kind, []).append(problem.function)
        assert equal(problem.derivative, sympy.diff(problem.function, x)) is True
        assert score(_boxed(problem.derivative_latex), problem.derivative_sympy).correct
        assert not score(_boxed(problem.function_latex), problem.derivative_sympy).correct
        _, shown = task.pose(problem, random.Random(i))
        assert _reads_back(shown, problem.function), shown
    assert set(kinds) == {f"{k}-composed" for k in sampling.COURSE_COMPOSERS} and n_ok > 150
    # to depth: continued fractions nest reciprocals three deep, chains three functions
    def reciprocals(f: sympy.Expr) -> int:
        return sum(isinstance(n, sympy.Pow) and n.exp == -1 for n in sympy.preorder_traversal(f))

    assert max(reciprocals(f) for f in kinds["nested-quotient-composed"]) >= 3
    assert any(isinstance(f, sympy.Function) and isinstance(f.args[0], sympy.Function)
               and isinstance(f.args[0].args[0], sympy.Function) for f in kinds["chain-composed"])
    with pytest.raises(ValueError, match="course_composed"):
        DifferentiationTask(course_composed=2.0)


def test_exclude_ood_refuses_every_ood_function():
    keys = {ood.make_problem(text, kind).key for kind, text in ood.load_functions(ood.DEFAULT_SOURCE)}
    on, off = (DifferentiationTask(course_share=1.0, exclude_ood=flag, max_length=1000) for flag in (True, False))
    assert on.ood_keys == keys
    refused = 0
    for i in range(3000):
        try:
            p = on.sample(random.Random(i))
            assert p.key not in keys
        except Rejected as exc:
            if exc.reason == "ood":
                refused += 1
                assert off.sample(random.Random(i)).key in keys   # the same draw without the knob
    assert refused > 0


def test_inverse_notation_varies_prompts_only_for_inverse_functions():
    task = DifferentiationTask(inverse_notation=True)
    plain = DifferentiationTask()
    f = sympy.atan(2 * x)
    problem = ood.pose_function(f)[0]
    shown = {task.pose(problem, random.Random(i))[1] for i in range(200)}
    assert any("^{-1}" in s or "**{-1}" in s or "^(-1)" in s or "**(-1)" in s for s in shown)
    assert any("arctan" in s for s in shown) and any("atan" in s and "arctan" not in s for s in shown)
    assert all(_reads_back(s, f) for s in shown)
    other = ood.pose_function(sympy.sin(2 * x))[0]   # no inverse: the same draws as without the knob
    for i in range(50):
        assert task.pose(other, random.Random(i)) == plain.pose(other, random.Random(i))


def test_knobs_come_from_a_hydra_data_config():
    """task_options from OmegaConf (a nested mapping) hash, pickle into task args, and build rows."""
    node = OmegaConf.create({"course_share": 0.5, "tree_weights": {"atan": 0.1, "root": 0.1},
                             "inverse_notation": True, "exclude_ood": True})
    spec = DatasetSpec(n_train=4, n_test=6, seed=3, task_options=node, max_length=160)
    assert spec.task_options["tree_weights"] == {"atan": 0.1, "root": 0.1}
    hash(task_args(spec))
    assert spec.config_hash() != DatasetSpec(n_train=4, n_test=6, seed=3, max_length=160).config_hash()
    rows = first_test_rows(spec)
    assert len(rows) == 6
    with pytest.raises(ValueError, match="task_options"):
        DatasetSpec(task_options={"tree_weights": {"arcsin": 1}})


def _what_changed(v: sympy.Expr, f: sympy.Expr) -> str | None:
    """Which robustness change turns f into v (checked by the one identity test), or None."""
    if v == f:
        return None
    if any(equal(v, c * f) for c in range(2, 10)):
        return "scale"
    if any(equal(v, f + c) for c in range(1, 10)):
        return "plus_constant"
    if any(equal(v, f.xreplace({x: k * x})) for k in range(2, 6)):
        return "inner_scale"
    if any(v == f.xreplace({n: n * 10}) for n in f.atoms(sympy.Integer) if abs(int(n)) >= 2):
        return "bigger_coefficient"
    if (v - f).has(x):   # f + g with g a second draw
        return "sum"
    return None


def test_variant_share_changes_draws_as_the_robustness_suite_does():
    """variant_share=1: every problem is the plain draw (the same first rng use) changed by one of
    the suite's changes, verified symbolically; at 0 the task's problems are the default's."""
    on, off = DifferentiationTask(variant_share=1.0, max_length=1000), DifferentiationTask(max_length=1000)
    seen: dict[str, int] = {}
    for i in range(100):
        base = off._draw(random.Random(i)).expr
        try:
            p = on.sample(random.Random(i))
        except Rejected as exc:
            assert exc.reason != "error", exc
            continue
        assert p.function_type == sampling.VARIANT_TYPE
        kind = _what_changed(p.function, base)
        assert kind is not None, (base, p.function)
        seen[kind] = seen.get(kind, 0) + 1
        assert equal(p.derivative, sympy.diff(p.function, x)) is True
    assert set(seen) == set(sampling.VARIANT_KINDS), seen
    zero = DifferentiationTask(variant_share=0.0, max_length=1000)
    for i in range(40):
        try:
            a = off.sample(random.Random(i)).key
        except Rejected as exc:
            a = exc.reason
        try:
            b = zero.sample(random.Random(i)).key
        except Rejected as exc:
            b = exc.reason
        assert a == b
    with pytest.raises(ValueError, match="variant_share"):
        DifferentiationTask(variant_share=1.5)


def test_variant_kinds_weight_the_training_variants_and_default_to_the_uniform_draw():
    # no weights: exactly the uniform rng.choice the stage-2/3 course recipes drew with
    assert sampling.variant_kind_weights({}) is None and sampling.variant_kind_weights(None) is None
    for i in range(50):
        assert sampling.variant_kind(random.Random(i)) == random.Random(i).choice(sampling.VARIANT_KINDS)
    plain = DifferentiationTask(variant_share=1.0, max_length=300)
    same = DifferentiationTask(variant_share=1.0, variant_kinds={}, max_length=300)

    def draws(task, n):
        out = []
        for i in range(n):
            try:
                out.append(task.sample(random.Random(i)))
            except Rejected:
                out.append(None)
        return out
    assert [p and p.function for p in draws(plain, 40)] == [p and p.function for p in draws(same, 40)]
    # sum weighted 6 (6 / (6 + 3) = 0.67 of draws), scale removed
    w = sampling.variant_kind_weights({"sum": 6, "scale": 0})
    kinds = [sampling.variant_kind(random.Random(i), w) for i in range(2000)]
    assert kinds.count("scale") == 0
    assert 0.62 < kinds.count("sum") / len(kinds) < 0.71
    assert all(kinds.count(k) > 0 for k in sampling.VARIANT_KINDS if k != "scale")
    # through the task: every accepted draw is a variant
    only = DifferentiationTask(variant_share=1.0, variant_kinds={"sum": 1, "scale": 0, "plus_constant": 0,
                                                                 "inner_scale": 0, "bigger_coefficient": 0},
                               max_length=300)
    got = [p for p in draws(only, 60) if p is not None]
    assert got and all(p.function_type == sampling.VARIANT_TYPE for p in got)
    # the changes the task makes are of the allowed kind only (a rejected change is no evidence,
    # so the accepted ones are counted)
    made = []
    for i in range(30):
        rng = random.Random(i)
        drawn = only._draw(rng)
        try:
            made.append(only._vary(drawn, rng).template)
        except Rejected:
            continue
    assert len(made) >= 10 and set(made) == {"sum"}, made
    for bad, msg in (({"sums": 2}, "unknown kind"), ({"sum": -1}, ">= 0"), ({"sum": True}, ">= 0"),
                     (dict.fromkeys(sampling.VARIANT_KINDS, 0), "sum to 0")):
        with pytest.raises(ValueError, match=msg) as err:
            DifferentiationTask(variant_kinds=bad)
        assert str(err.value).count("variant_kinds") == 1
    with pytest.raises(ValueError, match="variant_kinds must map variant kinds to weights"):
        DifferentiationTask(variant_kinds=[1, 2])
