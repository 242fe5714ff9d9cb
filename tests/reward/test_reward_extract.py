from __future__ import annotations

import time

import pytest

from tsm.reward import Extraction, extract_boxed


@pytest.mark.parametrize("text,answer", [
    (r"so \boxed{2x}", "2x"),
    (r"\boxed{1} then \boxed{2x + 1}", "2x + 1"),
    (r"\fbox{3}", "3"),
    (r"\boxed {\frac{1}{x}}", r"\frac{1}{x}"),
    (r"\boxed{\{x\}}", r"\{x\}"),
    (r"\boxed{ 2x }.", "2x"),
])
def test_last_box_content(text, answer):
    assert extract_boxed(text) == Extraction(answer, None)


@pytest.mark.parametrize("text,reason", [
    ("2x", "no_box"),
    (r"\boxed 2", "no_box"),
    (r"\boxed{}", "empty"),
    (r"\boxed{  }", "empty"),
    (r"\boxed{2x} and \boxed{3x", "unbalanced"),
    (r"\boxed{" + "x+" * 2000 + "x}", "too_long"),
    (r"\boxed{" + "{" * 30 + "x" + "}" * 30 + "}", "too_deep"),
])
def test_refusals(text, reason):
    assert extract_boxed(text) == Extraction(None, reason)


def test_megabyte_of_braces_is_cheap():
    text = r"\boxed{" + "{" * 1_000_000
    t0 = time.perf_counter()
    assert extract_boxed(text, max_depth=10**7).reason == "too_long"
    assert extract_boxed(text).reason == "too_deep"
    assert time.perf_counter() - t0 < 0.5


def test_extraction_record_validates():
    with pytest.raises(ValueError):
        Extraction("x", "empty")
    with pytest.raises(ValueError):
        Extraction(None, "nope")
