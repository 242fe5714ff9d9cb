"""Hostile answers for an answer check's fuzz tests (the derivative reward, the integration check):
every verdict must be a known reason, never "error", and come within a time limit."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable

from tsm.reward import REASONS, Score


def assert_handled(verdict: Callable[[str], Score], response: str, limit_s: float,
                   clock: Callable[[], float] = time.perf_counter) -> None:
    """``verdict(response)`` is a known reason other than "error", within ``limit_s`` of ``clock``."""
    t0 = clock()
    s = verdict(response)
    assert s.reason in REASONS and s.reason != "error", (response[:200], s)
    assert clock() - t0 < limit_s, response[:200]


def string_responses(text: str) -> list[str]:
    """A random string inside a box and bare."""
    return [r"\boxed{" + text + "}", text]


def soup_response(bits: Iterable[str]) -> str:
    """LaTeX fragments glued together, inside a box."""
    return r"\boxed{" + "".join(bits) + "}"


def byte_soup(n: int = 100, seed: int = 0) -> list[str]:
    """``n`` boxes of random bytes (read as latin-1), 1 to 299 each, seeded."""
    rng = random.Random(seed)
    return [r"\boxed{" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))).decode("latin-1") + "}"
            for _ in range(n)]


def hostile_tests(check: Callable[[str], None], alphabet: str, latex_bits: list[str], max_examples: int):
    """The three fuzz tests every answer check gets, bound to its own ``check``: random strings of
    ``alphabet`` (boxed and bare), soups of ``latex_bits``, byte soup. A test module assigns them
    to module-level ``test_*`` names so pytest collects them."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=max_examples, deadline=None)
    @given(st.text(alphabet=alphabet, max_size=200))
    def test_random_strings(text):
        for response in string_responses(text):
            check(response)

    @settings(max_examples=max_examples, deadline=None)
    @given(st.lists(st.sampled_from(latex_bits), max_size=60))
    def test_random_latex_soup(bits):
        check(soup_response(bits))

    def test_byte_soup():
        for response in byte_soup():
            check(response)

    return test_random_strings, test_random_latex_soup, test_byte_soup
