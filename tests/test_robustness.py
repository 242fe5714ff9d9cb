"""tsm.robustness: each variant is what it claims to be, identities are skipped, the consistency
share is counted per variant; evaluate.py reports it for a real model."""

from __future__ import annotations

import pytest
import sympy

from tsm.math.parse import parse_expression
from tsm.robustness import VARIANTS, X, consistency, make_variants

FUNCTIONS = [parse_expression(s) for s in ("sin(x^2)", "3*x^4 - 5*x", "exp(2*x)*cos(14*x)", "log(x)/x")]


def test_each_variant_is_what_it_claims():
    variants = make_variants(FUNCTIONS, seed=1)
    assert {v.kind for v in variants} == set(VARIANTS)
    for v in variants:
        f, g = v.source, v.function
        assert g != f and sympy.diff(g, X) != 0
        if v.kind == "scale":
            c = int(v.detail.split("=")[1])
            assert 2 <= c <= 9 and sympy.simplify(g - c * f) == 0
        elif v.kind == "plus_constant":
            c = int(v.detail.split("=")[1])
            assert sympy.simplify(g - f - c) == 0 and sympy.simplify(sympy.diff(g - f, X)) == 0
        elif v.kind == "inner_scale":
            k = int(v.detail.split("=")[1])
            assert 2 <= k <= 5 and sympy.simplify(g - f.subs(X, k * X)) == 0
        elif v.kind == "bigger_coefficient":
            old, new = (int(t) for t in v.detail.split("->"))
            assert new == 10 * old and abs(old) == max(abs(int(n)) for n in f.atoms(sympy.Integer))
            assert sympy.Integer(new) in g.atoms(sympy.Integer)
        else:
            i = FUNCTIONS.index(f)
            assert sympy.simplify(g - f - FUNCTIONS[(i + 1) % len(FUNCTIONS)]) == 0
    assert make_variants(FUNCTIONS, seed=1) == variants  # seeded


def test_functions_without_a_big_integer_get_no_bigger_coefficient_variant():
    kinds = [v.kind for v in make_variants([parse_expression("sin(x)")], kinds=["bigger_coefficient", "sum"])]
    assert kinds == []  # no integer >= 2, and no second function to add
    with pytest.raises(ValueError, match="unknown robustness variants"):
        make_variants(FUNCTIONS, kinds=["rotate"])


def test_consistency_counts_per_variant():
    variants = make_variants(FUNCTIONS[:2], seed=0, kinds=["scale", "plus_constant"])
    m = consistency(variants, [True, False, True, True])
    assert m["robustness/scale"] == 1.0 and m["robustness/plus_constant"] == 0.5
    assert m["robustness/consistency"] == 0.75 and m["robustness/count"] == 4.0


def test_evaluate_reports_robustness_for_the_shipped_model(tmp_path):
    import torch

    from tests.helpers import compose_cfg
    from tsm.evaluation_cli import run_evaluation

    cfg = compose_cfg("evaluate", ["checkpoint=tsm-diff-5m", "data=ood", "sampling.temperature=0",
                                   "sampling.max_new_tokens=96", "wandb.enabled=false", "reward.workers=0",
                                   "robustness.n_functions=4"], tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 5M model gains nothing from two; on a busy machine two cost 10x
    try:
        m = run_evaluation(cfg)
    finally:
        torch.set_num_threads(threads)
    assert m["accuracy@1"] > 0.05  # the shipped model solves some OOD functions to vary
    assert 0.0 <= m["robustness/consistency"] <= 1.0 and m["robustness/count"] >= 12
    assert {f"robustness/{k}" for k in ("scale", "plus_constant", "inner_scale")} <= set(m)
