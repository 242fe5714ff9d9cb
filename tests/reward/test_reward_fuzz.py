"""Hostile inputs: nothing raises, every verdict is a known reason, and each is bounded in time."""
from __future__ import annotations

import string

from tests.fuzz import assert_handled, hostile_tests
from tsm.reward import score

LIMIT_S = 1.0
ALPHABET = string.printable + "πθ√²∞−·×{}{}{}\\\\^^"
LATEX_BITS = [r"\frac", r"\sqrt", "{", "}", "(", ")", "^", "_", "x", "2", r"\sin", r"\log", "e",
              "+", "-", "*", "/", "|", r"\left(", r"\right)", "=", r"\cdot", " ", "[", "]", ".",
              "**", r"\pi", "10", "'", r"\boxed{", r"\int", "!", "&", r"\\"]


def check(response: str, gold: str = "2*x") -> None:
    assert_handled(lambda r: score(r, gold), response, LIMIT_S)


test_random_strings, test_random_latex_soup, test_byte_soup = hostile_tests(check, ALPHABET, LATEX_BITS, 150)


def test_deep_nesting_and_huge_answers():
    for n in (10, 50, 200, 5000):
        check(r"\boxed{" + "(" * n + "x" + ")" * n + "}")
        check(r"\boxed{" + r"\sin(" * n + "x" + ")" * n + "}")
        check(r"\boxed{" + "-" * n + "x}")
        check(r"\boxed{" + "x^{" * n + "2" + "}" * n + "}")
        check(r"\boxed{" + r"\frac{1}{" * n + "x" + "}" * n + "}")
    check(r"\boxed{" + "{" * 1_000_000)
    check(r"\boxed{" + "}" * 1_000_000)
    check("x" * 1_000_000 + r"\boxed{2x}")
    check(r"\boxed{" + "x+" * 500_000 + "x}")


def test_power_towers_and_big_numbers():
    for ans in (r"10^{10^{10}}", r"2^{2^{2^{2^{2^{2}}}}}", "9**9**9**9", r"x^{10^{10}}",
                r"e^{e^{e^{x}}}", r"e^{10^{5} x}", r"\sin(10^{90} x)", "1" * 99 + "^" + "9" * 99,
                r"(10^{100})^{(10^{100})}", r"\sqrt[100]{10^{1000}}", r"x^{-10^{6}}",
                r"\exp(\exp(\exp(\exp(x))))", r"\frac{1}{0}", r"0^{-1}", r"\log(0)", r"(-8)^{1/3}",
                r"\sinh(\cosh(\pi(9x - 11)))", r"\tanh(\cosh(9x))", r"2^{2^{2^{x}}}",
                r"\operatorname{sech}(e^{x^2})"):
        check(r"\boxed{" + ans + "}")
        check(r"\boxed{" + ans + "}", ans.replace("{", "(").replace("}", ")").replace("\\", ""))
