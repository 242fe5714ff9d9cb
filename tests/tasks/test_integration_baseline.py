"""The sympy.integrate baseline (tsm.tasks.integration.baseline) and its CLI
(experiments/integration/sympy_baseline.py): verdicts, the timeout path, the CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sympy

from tests.helpers import load_script
from tsm.tasks.integration.baseline import is_special, run_baseline, sympy_item

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "integration" / "sympy_baseline.py"
SLOW = "exp(sin(x))*cos(x)**3*x"  # sympy.integrate runs > 20 s on it (sympy 1.14)


@pytest.fixture(scope="module")
def cli():
    return load_script(SCRIPT)


@pytest.mark.parametrize("integrand", ["x*exp(x)", "sin(x)*cos(x)", "1/x"])
def test_elementary_integrands_are_solved(integrand):
    r = sympy_item((integrand, 1.0))
    assert r["solved"] and r["reason"] == "correct", r
    assert 0 < r["seconds"] < 10 and r["answer"]


@pytest.mark.parametrize(("integrand", "reason"), [
    ("exp(x**2)", "special"),        # sqrt(pi)*erfi(x)/2
    ("exp(x)/x", "special"),         # Ei(x)
    ("1/(x**5 - x + 1)", "special"),  # RootSum: no explicit closed form
    ("x**x", "unevaluated"),         # Integral(x**x, x)
    ("x*y", "error"),                # the parser knows no y
    ("x +* 2", "error"),
])
def test_unsolved_integrands_give_their_reason(integrand, reason):
    r = sympy_item((integrand, 1.0))
    assert not r["solved"] and r["reason"] == reason, r


def test_special_detection():
    x = sympy.Symbol("x")
    assert is_special(sympy.erfi(x) + x)
    assert is_special(sympy.Piecewise((x, x > 0), (0, True)))
    assert is_special(sympy.LambertW(x))
    assert is_special(sympy.gamma(x))
    assert not is_special(sympy.exp(x) * sympy.atan(x) + sympy.log(sympy.Abs(x)) + sympy.sqrt(x))


def test_pool_keeps_order_and_times_out_a_slow_integrand():
    results = run_baseline(["x*exp(x)", SLOW, "sin(x)*cos(x)", "exp(x**2)"], limit_s=0.5, workers=1)
    assert [r["reason"] for r in results] == ["correct", "timeout", "correct", "special"]
    assert results[1] == {"solved": False, "seconds": 0.5, "reason": "timeout", "answer": ""}
    assert all(r["seconds"] < 0.5 for r in results if r["reason"] != "timeout")


def test_cli_writes_one_csv_row_per_problem(cli, tmp_path, capsys):
    integrands = ["x*exp(x)", "exp(x**2)", "sin(x)*cos(x)", "cos(x)"]
    data = tmp_path / "test.parquet"
    pq.write_table(pa.table({
        "extra_info": [{"index": i, "function_sympy": f, "integrand": f} for i, f in enumerate(integrands)],
        "prompt": ["..." for _ in integrands],
    }), data)
    out = tmp_path / "out" / "baseline.csv"
    cli.main(["--data", str(data), "--limit", "5", "--workers", "0", "--n-rows", "3", "--out", str(out)])
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["index"] for r in rows] == ["0", "1", "2"]
    assert [r["integrand"] for r in rows] == integrands[:3]
    assert [r["solved"] for r in rows] == ["True", "False", "True"]
    assert [r["reason"] for r in rows] == ["correct", "special", "correct"]
    assert all(float(r["seconds"]) >= 0 for r in rows)
    printed = capsys.readouterr().out
    assert "rows: 3" in printed and "66.67%" in printed and "special 1" in printed
