"""Score one response against one gold derivative: ``score(response, ground_truth) -> Score``.

Pipeline: last box (``extract``) -> optional derivative prefix -> safe parse (``tsm.math.parse``)
-> numeric equivalence with the gold (``tsm.math.equivalence``). Model text is never run as code.

Reasons (``Score.reason``), a small closed set:

====================  =====  ===============================================================
reason                value  meaning
====================  =====  ===============================================================
``correct``           1.0    equals the gold on its real domain (``correct_score``, shaped)
``wrong``             0.1    parsed as a function of x but not equal (``format_score``)
``no_box``            0      no ``\\boxed{}``/``\\fbox{}``
``empty``             0      the box (or the right side of its ``=``) is empty
``unbalanced``        0      the last box is never closed
``too_long``          0      over a size cap: characters, tokens, digits, numeric magnitude
``too_deep``          0      braces or parentheses nested deeper than the cap
``unparsable``        0      not an expression in this language (syntax)
``invalid``           0      an expression, but not an answer: another symbol (``+ C``, ``y``),
                             a leftover ``\\frac{d}{dx}``, ``\\int``, ``\\lim``, an extra ``=``
``timeout``           0      the batch form's per-item wall-clock limit ran out
``error``             0      an unexpected exception (a bug; ``Score.detail`` has it)
``bad_gold``          0      the ground truth itself does not parse
====================  =====  ===============================================================

An answer may start with one derivative prefix, ``f'(x) =``, ``y' =``, ``\\frac{dy}{dx} =``,
``\\frac{d}{dx}(...) =`` or ``dy/dx =``; anything else left of an ``=`` makes it ``invalid``.

Shaping (off by default): with ``shortness_weight`` w > 0 a correct answer scores
``correct_score - w * min(1, max(0, n_answer / n_gold - 1))`` where n counts parser tokens, so an
equivalent answer no longer than the gold keeps the full score and one twice as long loses w.

Parsed golds (with their values at the sample points) are cached per ground-truth string, and
verdicts per (answer, ground truth), because RL scores many responses against one gold.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tsm.math.equivalence import GoldValues, equivalent, gold_values
from tsm.math.parse import ParseError, parse_expression, tokenize
from tsm.reward.extract import extract_boxed

__all__ = ["REASONS", "RewardConfig", "Score", "score"]

REASONS = ("correct", "wrong", "no_box", "empty", "unbalanced", "too_long", "too_deep",
           "unparsable", "invalid", "timeout", "error", "bad_gold")
_KIND_TO_REASON = {"syntax": "unparsable", "symbol": "invalid", "construct": "invalid",
                   "too_long": "too_long", "too_deep": "too_deep", "too_big": "too_long"}


@dataclass(frozen=True)
class RewardConfig:
    """Scoring options; every field is a key of ``conf/reward/default.yaml``."""

    correct_score: float = 1.0
    format_score: float = 0.1
    max_answer_chars: int = 1000
    max_depth: int = 20
    shortness_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.format_score <= self.correct_score:
            raise ValueError("need 0 <= format_score <= correct_score")
        if self.max_answer_chars < 1 or self.max_depth < 1:
            raise ValueError("max_answer_chars and max_depth must be positive")
        if not 0.0 <= self.shortness_weight <= self.correct_score:
            raise ValueError("need 0 <= shortness_weight <= correct_score")


@dataclass(frozen=True)
class Score:
    """One verdict: ``value`` is the reward, ``reason`` one of ``REASONS``."""

    value: float
    correct: bool
    reason: str
    answer: str | None = None   # the boxed text that was judged, when there was one
    detail: str | None = None   # why it was refused (parser message), for logs

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown reason {self.reason!r}")
        if self.correct != (self.reason == "correct"):
            raise ValueError("correct must be True exactly when reason is 'correct'")


_PREFIX_CLEAN = [
    (re.compile(r"\\(?:left|right|[Bb]igg?[lr]?)(?![A-Za-z])|\\[,;:! ]|\s+|\$"), ""),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\mathrm\{d\}|\\operatorname\{d\}"), "d"),
    (re.compile(r"\^\{?(?:\\prime|')\}?|\\prime"), "'"),
]
_PREFIX_OK = re.compile(
    r"[fygh]'(?:\(x\))?"                                   # f'(x), y'
    r"|\\frac\{d[fy]?(?:\(x\))?\}\{dx\}.*"                 # \frac{dy}{dx}, \frac{d}{dx}(...)
    r"|\(?d[fy]?(?:\(x\))?\)?/\(?dx\)?.*"                  # dy/dx, d/dx(...)
)


def _is_derivative_prefix(lhs: str) -> bool:
    for pat, rep in _PREFIX_CLEAN:
        lhs = pat.sub(rep, lhs)
    return _PREFIX_OK.fullmatch(lhs) is not None


@functools.lru_cache(maxsize=256)
def _gold(ground_truth: str) -> tuple[GoldValues | None, int, str | None]:
    """(gold values, token count, error) for a ground-truth string; cached."""
    try:
        expr = parse_expression(ground_truth)
        return gold_values(expr), len(tokenize(ground_truth)), None
    except ParseError as exc:
        return None, 0, str(exc)


@functools.lru_cache(maxsize=4096)
def _verdict(answer: str, ground_truth: str, max_chars: int) -> tuple[str, str | None]:
    """(reason, detail) for an answer without prefix; cached."""
    gold, _, err = _gold(ground_truth)
    if gold is None:
        return "bad_gold", err
    try:
        expr = parse_expression(answer, max_chars=max_chars)
    except ParseError as exc:
        return _KIND_TO_REASON[exc.kind], str(exc)
    return ("correct" if equivalent(expr, gold) else "wrong"), None


def _value(reason: str, answer: str, ground_truth: str, cfg: RewardConfig) -> float:
    if reason == "wrong":
        return cfg.format_score
    if reason != "correct":
        return 0.0
    n_gold = _gold(ground_truth)[1]
    if cfg.shortness_weight == 0.0 or n_gold == 0:
        return cfg.correct_score
    excess = min(1.0, max(0.0, len(tokenize(answer)) / n_gold - 1.0))
    return cfg.correct_score - cfg.shortness_weight * excess


def boxed_answer(response: str, cfg: RewardConfig, is_prefix: Callable[[str], bool], prefix_name: str
                 ) -> tuple[str | None, str, Score | None]:
    """The last box of ``response`` and the expression to judge (right of an allowed ``lhs =``
    prefix), or a refusal ``Score`` (no box, too long/deep, unbalanced, two '=', a bad prefix, empty).
    Shared by every task's answer check so that all extract and refuse alike."""
    box = extract_boxed(response, max_chars=cfg.max_answer_chars, max_depth=cfg.max_depth)
    if box.answer is None:
        return None, "", Score(0.0, False, box.reason or "no_box")
    answer = box.answer
    parts = answer.split("=")
    if len(parts) > 2:
        return answer, "", Score(0.0, False, "invalid", answer, "more than one '='")
    if len(parts) == 2:
        if not is_prefix(parts[0]):
            return answer, "", Score(0.0, False, "invalid", answer, f"an '=' that is not {prefix_name}")
        if not parts[1].strip():
            return answer, "", Score(0.0, False, "empty", answer)
    return answer, parts[-1].strip(), None


def score(response: str, ground_truth: str, config: RewardConfig | None = None,
          **options: float) -> Score:
    """Judge ``response`` against the gold derivative ``ground_truth`` (plain sympy or LaTeX).

    Options are ``RewardConfig`` fields, given either as ``config`` or as keywords. Never raises
    on any response text; a broken gold gives reason ``bad_gold``.
    """
    cfg = RewardConfig(**{**(asdict(config) if config else {}), **options})
    try:
        answer, rhs, refused = boxed_answer(response, cfg, _is_derivative_prefix, "a derivative prefix")
        if refused is not None:
            return refused
        reason, detail = _verdict(rhs, ground_truth, cfg.max_answer_chars)
        return Score(_value(reason, rhs, ground_truth, cfg), reason == "correct", reason, answer,
                     detail)
    except Exception as exc:  # noqa: BLE001 - a reward must not crash training; logged via detail
        return Score(0.0, False, "error", None, f"{type(exc).__name__}: {exc}"[:300])
