from __future__ import annotations

import pytest

from tsm.reward import RewardConfig, Score, score


@pytest.mark.parametrize("prefix", [
    "f'(x) = ", "y' = ", r"\frac{dy}{dx} = ", r"\dfrac{d y}{d x} = ", r"\frac{d}{dx}(x^2 + 1) = ",
    r"\frac{d}{dx}\left[x^2\right] = ", "dy/dx = ", r"f^{\prime}(x) = ", r"\frac{df}{dx} = ",
])
def test_derivative_prefixes_are_accepted(prefix):
    assert score(rf"\boxed{{{prefix}2x}}", "2*x").reason == "correct"


@pytest.mark.parametrize("answer,reason", [
    ("x^2 = 2x", "invalid"),           # Diff-TSM keeps the text after the last '='
    ("f'(x) = 2x = 2x", "invalid"),
    ("f''(x) = 2x", "invalid"),
    (r"\frac{d}{dx} x^2", "invalid"),
    (r"\int 2x\,dx", "invalid"),
    ("2x + C", "invalid"),
    ("2t", "invalid"),
    ("2x +", "unparsable"),
    (r"\foo{x}", "unparsable"),
    ("f'(x) = ", "empty"),
    ("10^{10^{10}}", "too_long"),
])
def test_reasons(answer, reason):
    s = score(rf"\boxed{{{answer}}}", "2*x")
    assert (s.reason, s.value, s.correct) == (reason, 0.0, False)


def test_values_follow_config():
    assert score(r"\boxed{2x}", "2*x").value == 1.0
    assert score(r"\boxed{3x}", "2*x").value == 0.1
    assert score(r"\boxed{3x}", "2*x", format_score=0.0).value == 0.0
    cfg = RewardConfig(correct_score=2.0, format_score=0.5)
    assert score(r"\boxed{2x}", "2*x", cfg).value == 2.0
    assert score(r"\boxed{3x}", "2*x", cfg).value == 0.5


def test_ground_truth_in_either_form():
    for gt in ("-2/(-2*x - 31)", r"- \frac{2}{- 2 x - 31}"):
        assert score(r"\boxed{\frac{2}{2x+31}}", gt).correct
    assert score(r"\boxed{2x}", "2*y").reason == "bad_gold"


def test_shortness_shaping_prefers_short_answers():
    short = score(r"\boxed{2 x}", "2*x", shortness_weight=0.2)
    long = score(r"\boxed{x + x + x + x - x - x}", "2*x", shortness_weight=0.2)
    assert short.value == 1.0 and long.correct and 0.8 <= long.value < 1.0
    assert score(r"\boxed{x + x + x + x - x - x}", "2*x").value == 1.0  # off by default


def test_config_and_score_validate():
    with pytest.raises(ValueError):
        RewardConfig(format_score=2.0)
    with pytest.raises(ValueError):
        RewardConfig(max_depth=0)
    with pytest.raises(ValueError):
        Score(1.0, True, "wrong")
    with pytest.raises(ValueError):
        Score(0.0, False, "bogus")


def test_never_raises_on_non_strings():
    assert score(None, "2*x").reason == "no_box"  # type: ignore[arg-type]
