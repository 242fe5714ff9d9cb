"""SFT targets: answer, steps and responses modes give the right assistant texts."""

import pytest
import sympy

from tsm.data.sft import target_texts
from tsm.reward import score


def row(f: sympy.Expr) -> dict:
    x = sympy.Symbol("x")
    d = sympy.diff(f, x)
    return {
        "data_source": "tsm/differentiation",
        "prompt": [{"role": "user", "content": f"Differentiate {sympy.latex(f)}"}],
        "reward_model": {"style": "rule", "ground_truth": str(d)},
        "extra_info": {"function": sympy.latex(f), "answer": sympy.latex(d),
                       "function_sympy": str(f), "answer_sympy": str(d)},
    }


X = sympy.Symbol("x")
FUNCS = [3 * X**2 + 5, sympy.sin(5 * X) * X**2, sympy.exp(2 * X) / (X + 1), sympy.log(X**2 + 1)]


@pytest.mark.parametrize("f", FUNCS, ids=str)
@pytest.mark.parametrize("mode", ["answer", "steps"])
def test_targets_box_the_right_derivative(f, mode):
    r = row(f)
    (text,) = target_texts(r, mode)
    assert score(text, r["reward_model"]["ground_truth"]).correct
    if mode == "answer":
        assert text == "The final answer is $\\boxed{" + r["extra_info"]["answer"] + "}$"
    else:
        assert len(text.splitlines()) > 1  # a derivation, not just the answer


def test_responses_mode_keeps_only_correct_responses():
    r = row(X**2) | {"responses": ["\\boxed{2x}", "\\boxed{x}", "no"], "scores": [1.0, 0.1, 0.0]}
    assert target_texts(r, "responses") == ["\\boxed{2x}"]
    with pytest.raises(ValueError, match="responses"):
        target_texts(row(X**2), "responses")
    with pytest.raises(ValueError, match="sft_target"):
        target_texts(row(X**2), "nonsense")


def test_targets_follow_the_rows_task():
    """``answer`` boxes any task's reference answer; ``steps`` asks the row's task, and a task without
    step-by-step targets (integration) says so in one line."""
    from tsm.tasks.integration import verify

    r = row(X**2) | {"data_source": "tsm/integration"}
    r["extra_info"] |= {"answer": "\\frac{x^{3}}{3}", "answer_sympy": "x**3/3"}
    (text,) = target_texts(r, "answer")
    assert verify(text, "x**2").correct
    with pytest.raises(ValueError, match="integration.*no step-by-step"):
        target_texts(r, "steps")
