"""The integration answer check (tsm.tasks.integration.verify): the labelled suite
(integration_cases.jsonl, made by make_integration_cases.py) with no false positives and <= 1%
false negatives, the reward's conventions, hostile inputs, and speed."""
from __future__ import annotations

import importlib
import json
import string
import time
from pathlib import Path

import pytest
import sympy

from tests.fuzz import assert_handled, hostile_tests
from tsm.math.parse import ParseError, parse_expression
from tsm.reward import REASONS, RewardConfig, score
from tsm.tasks.integration import antiderivative_check, verify
from tsm.tasks.integration.verify import MAX_DERIVATIVE_NODES, derivative, strip_constant

CASES = [json.loads(line) for line in
         (Path(__file__).parent / "integration_cases.jsonl").read_text().splitlines()]
# the package's ``verify`` attribute is the function; the module is reached by its full name
verify_module = importlib.import_module("tsm.tasks.integration.verify")
LIMIT_S = 1.0  # per hostile answer (process time); typical answers take about a millisecond


def test_suite_is_big_and_covers_the_kinds():
    assert len(CASES) >= 200
    n_right = sum(c["correct"] for c in CASES)
    assert n_right >= 100 and len(CASES) - n_right >= 100
    assert len({c["integrand"] for c in CASES}) >= 30
    kinds = {c["kind"] for c in CASES}
    for k in ("latex", "plain", "other_constant", "prefix", "other_form", "other_form_latex",
              "double", "sign_flip", "plus_x", "off_by_one", "derivative_given",
              "integrand_given", "missing_chain_or_near_miss", "unevaluated", "free_symbol"):
        assert k in kinds, k


def test_no_false_positives_and_few_false_negatives():
    false_pos, false_neg = [], []
    for c in CASES:
        s = verify(c["response"], c["integrand"])
        assert s.reason in REASONS and s.reason != "error", (c, s)
        if s.correct and not c["correct"]:
            false_pos.append((c, s))
        if c["correct"] and not s.correct:
            false_neg.append((c, s))
    n_right = sum(c["correct"] for c in CASES)
    counts = (f"{len(CASES)} cases: {len(false_pos)} false positives of {len(CASES) - n_right} "
              f"wrong, {len(false_neg)} false negatives of {n_right} right")
    assert false_pos == [], (counts, false_pos)
    assert len(false_neg) <= 0.01 * n_right, (counts, false_neg)


@pytest.mark.parametrize("c", [c for c in CASES if c["kind"] in ("unevaluated", "free_symbol")],
                         ids=lambda c: c["kind"])
def test_not_closed_forms_are_invalid_with_their_own_detail(c):
    s = verify(c["response"], c["integrand"])
    assert (s.reason, s.value) == ("invalid", 0.0)
    assert s.detail.startswith(c["kind"] + ":"), s


@pytest.mark.parametrize(("answer", "integrand"), [
    ("x^2 + C", "2*x"), ("x^2 + c", "2*x"), ("x^2 + K", "2*x"), ("x^2 + C_1", "2*x"),
    ("x^2 + C_{1}", "2*x"), (r"x^2 + \text{const}", "2*x"), ("x^2 + constant", "2*x"),
    (r"x^2 + \mathrm{C}", "2*x"), ("x^2 - C", "2*x"), ("C + x^2", "2*x"), ("x^2 + C.", "2*x"),
    ("x^2 + 5", "2*x"), ("x^2", "2*x"),
    (r"\ln(2x)", "1/x"), (r"\ln|x| + C", "1/x"), (r"\ln|3x| - 7", "1/x"),
    (r"-\frac{\cos^2 x}{2}", "sin(x)*cos(x)"), (r"\frac{\sin^2 x}{2} + C", "sin(x)*cos(x)"),
    (r"-\frac{1}{4}\cos 2x", "sin(x)*cos(x)"), (r"-\ln|\cos x| + C", "tan(x)"),
    (r"x e^x - e^x + C", "x*exp(x)"), (r"(x - 1)e^{x}", "x*exp(x)"),
    (r"\arcsin x", "1/sqrt(1 - x**2)"), (r"-\arccos x + \pi", "1/sqrt(1 - x**2)"),
    (r"F(x) = \frac{x^3}{3} + C", "x**2"), (r"y = \frac{x^3}{3}", "x**2"),
    (r"\int x^2 \, dx = \frac{x^3}{3} + C", "x**2"), ("x**3/3 + C", r"x^{2}"),
])
def test_right_answers_in_other_forms(answer, integrand):
    s = verify(rf"So \boxed{{{answer}}}", integrand)
    assert s.correct and s.value == 1.0, s


@pytest.mark.parametrize(("answer", "integrand", "reason"), [
    ("2x^2 + C", "2*x", "wrong"),                     # off by a constant factor
    ("2", "2*x", "wrong"),                            # the derivative instead
    (r"e^{3x} + C", "exp(3*x)", "wrong"),             # missing chain factor
    (r"\cos x + C", "sin(x)", "wrong"),               # sign error
    (r"x \ln(2x) - x", "log(x)", "wrong"),            # a constant inside that does not vanish
    (r"\int 2x \, dx", "2*x", "invalid"),
    ("Integral(2*x, x)", "2*x", "invalid"),
    (r"\frac{d}{dx}(x^2)", "2*x", "invalid"),
    ("x^2 + y", "2*x", "invalid"),
    ("x^2 + Cx", "2*x", "invalid"),                   # C x is no constant
    ("C", "2*x", "invalid"),
    ("+ C", "2*x", "empty"),
    ("G(z) = x^2", "2*x", "invalid"),                 # not an antiderivative prefix
    ("x^2 = x^2 = x^2", "2*x", "invalid"),
])
def test_wrong_and_refused_answers(answer, integrand, reason):
    s = verify(rf"\boxed{{{answer}}}", integrand)
    assert s.reason == reason and not s.correct, s


def test_values_follow_the_reward_config():
    cfg = RewardConfig(correct_score=2.0, format_score=0.5)
    assert verify(r"\boxed{x^2 + C}", "2*x", cfg).value == 2.0
    assert verify(r"\boxed{x^3}", "2*x", cfg).value == 0.5
    assert verify(r"\boxed{\int 2x\,dx}", "2*x", cfg).value == 0.0
    assert verify("x^2", "2*x", cfg).value == 0.0
    assert verify(r"\boxed{x^2}", "2*x+", cfg).reason == "bad_gold"


@pytest.mark.parametrize("response", [
    "no box at all", r"\boxed{}", r"\boxed{x^2", r"\boxed{" + "x" * 2000 + "}",
    r"\boxed{" + "{" * 30 + "x" + "}" * 30 + "}", r"\boxed {x^2} then \boxed{x^3",
    r"\fbox{x^2}", r"\boxed{x^2 + C} and finally \boxed{}",
])
def test_extraction_reasons_match_the_derivative_reward(response):
    s, d = verify(response, "2*x"), score(response, "2*x")
    if d.reason in ("correct", "wrong"):
        assert s.reason in ("correct", "wrong")
    else:
        assert s.reason == d.reason, (s, d)


def test_antiderivative_check_on_sympy_trees():
    x = sympy.Symbol("x")
    f = x * sympy.exp(x)
    assert antiderivative_check((x - 1) * sympy.exp(x) + 3, f)
    assert not antiderivative_check(x * sympy.exp(x), f)
    assert not antiderivative_check((x - 1) * sympy.exp(x) + sympy.Symbol("C"), f)
    assert antiderivative_check(sympy.log(sympy.Abs(x)), 1 / x)
    assert antiderivative_check(parse_expression(r"\ln|\sec x|"), sympy.tan(x))


def test_strip_constant_touches_only_a_constant_term():
    assert strip_constant("x^2 + C") == "x^2"
    assert strip_constant(r"x^2 + \text{const}") == "x^2"
    assert strip_constant("C - x") == "- x"
    for keep in (r"x + \sec x", r"\csc x - \sec x", r"\cos x + 1", "x^{2+C}", "2C + x", "x + 2c",
                 r"e^{x+C}", "Cx"):
        assert strip_constant(keep) == keep


def test_derivative_size_guard():
    big = parse_expression("".join(rf"\sin({k}x)" for k in range(1, 90)))
    with pytest.raises(ParseError) as err:
        derivative(big)
    assert err.value.kind == "too_long"
    assert verify(r"\boxed{" + "".join(rf"\ln({k}x)" for k in range(1, 80)) + "}",
                  "x").reason == "too_long"
    small = derivative(parse_expression(r"x^2 \sin x e^{x}"))
    assert sum(1 for _ in sympy.preorder_traversal(small)) < MAX_DERIVATIVE_NODES


# -- hostile inputs: never raise, always a known reason, bounded time --------------------------
ALPHABET = string.printable + "πθ√²∞−·×∫{}{}{}\\\\^^"
LATEX_BITS = [r"\frac", r"\sqrt", "{", "}", "(", ")", "^", "_", "x", "2", r"\sin", r"\ln", "e",
              "+", "-", "*", "/", "|", r"\left(", r"\right)", "=", r"\cdot", " ", "[", "]",
              "**", r"\pi", "10", "'", r"\boxed{", r"\int", "dx", "C", "+ C", r"\text{const}",
              r"\,", "|x|", r"\operatorname{sgn}"]


def check(response: str, integrand: str = "x*exp(x)") -> None:
    """A known verdict within LIMIT_S of process time. An answer over the limit is timed once more
    with both caches cold (the verdict's and sympy's): the limit guards against unbounded work, and
    one slow measurement on a slow machine is not that (fresh-clone CI, 2026-12-08: a 20-level power
    tower took over 1 s once; 0.12-0.15 s on the same machine in a fresh process)."""
    try:
        assert_handled(lambda r: verify(r, integrand), response, LIMIT_S, clock=time.process_time)
    except AssertionError:
        verify_module._verdict.cache_clear()
        sympy.core.cache.clear_cache()
        assert_handled(lambda r: verify(r, integrand), response, LIMIT_S, clock=time.process_time)


test_random_strings, test_random_latex_soup, test_byte_soup = hostile_tests(check, ALPHABET, LATEX_BITS, 100)


def test_deep_nesting_huge_answers_and_costly_derivatives():
    for n in (10, 19, 50, 5000):
        check(r"\boxed{" + "(" * n + "x" + ")" * n + " + C}")
        check(r"\boxed{" + r"\sin(" * n + "x" + ")" * n + "}")
        check(r"\boxed{" + "x^{" * n + "x" + "}" * n + "}")
        check(r"\boxed{" + "|x-" * n + "x" + "|" * n + "}")
        check(r"\boxed{" + r"\frac{1}{" * n + "x" + "}" * n + "}")
    check(r"\boxed{" + "{" * 1_000_000)
    check("x" * 1_000_000 + r"\boxed{x^2 + C}")
    check(r"\boxed{" + "x+" * 500_000 + "x}")
    check(r"\boxed{" + "+".join(f"(x+{k})^{{{k}}}" for k in range(1, 80)) + "}")
    check(r"\boxed{" + "".join(f"(x+{k})^{{x}}" for k in range(1, 60)) + "}")
    check(r"\boxed{" + r"\operatorname{asec}(" * 19 + "x" + ")" * 19 + "}")
    check(r"\boxed{" + "+".join(rf"\ln(x+{k})^{{x}}" for k in range(1, 40)) + "}")
    for ans in (r"e^{e^{e^{e^{x}}}}", r"10^{10^{10}} x", r"x^{10^{5}}", r"\sin(10^{90} x)",
                r"e^{10^{5} x}", r"\frac{1}{0}", r"\ln(0)", r"(-8)^{1/3} x"):
        check(r"\boxed{" + ans + " + C}")
        check(r"\boxed{x}", ans.replace("{", "(").replace("}", ")").replace("\\", ""))


def test_median_time_per_answer_is_milliseconds():
    verify_module._verdict.cache_clear()  # time the check, not the verdict cache
    times = []
    for c in CASES:
        t0 = time.process_time()
        verify(c["response"], c["integrand"])
        times.append(time.process_time() - t0)
    times.sort()
    median, p99 = times[len(times) // 2], times[int(0.99 * len(times))]
    assert median < 0.010, f"median {median * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"
