"""The shipped model (models/tsm-diff-5m): plain transformers loads it and answers a prompt right;
tsm's own entry points accept it by short name; a recipe can start from it (init_from)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
NAME = "tsm-diff-5m"
FOLDER = ROOT / "models" / NAME
# Diff-TSM's system prompt and the fixed phrasing (tsm.tasks.differentiation.FIXED_PROMPT)
PROMPT = [
    {"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
    {"role": "user", "content": "Find the derivative of the following function with respect to x: \\sin{\\left(x^{2} \\right)}"},
]


SHIPPED = [NAME, "tsm-diff-5m-stage2", "tsm-diff-5m-stage3", "tsm-diff-5m-stage4", "tsm-diff-5m-stage5", "tsm-diff-5m-select", "tsm-diff-5m-course", "tsm-diff-5m-course2", "tsm-diff-5m-course3", "tsm-diff-5m-course4", "tsm-diff-5m-course5"]  # differentiation; tsm-int-5m has its own test below


def diff_prompt(latex: str) -> list[dict]:
    """PROMPT with f written as ``latex`` instead of sympy.latex's sin(x^2)."""
    content = PROMPT[1]["content"].replace(r"\sin{\left(x^{2} \right)}", latex)
    assert latex in content
    return [PROMPT[0], {"role": "user", "content": content}]


def greedy_answer(folder: Path, messages: list[dict], max_new_tokens: int) -> str:
    """Plain transformers: load ``folder``, apply its chat template, decode greedily."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("name", SHIPPED)
def test_folder_is_complete_and_small(name):
    folder = ROOT / "models" / name
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= names
    assert "chat_template.jinja" in names or "chat_template" in (folder / "tokenizer_config.json").read_text()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 21 * 2**20
    assert "**Headline**" in (folder / "README.md").read_text()


# sin(x^2) as tsm's prompts write it (tsm.math.render: `\sin{(x^{2} )}`) for every shipped model; the
# first three also answer sympy.latex's `\sin{\left(x^{2} \right)}` spelling, which no tsm prompt
# produces and the later models (stage 4, the course models) get wrong (their cards say so)
LEFT_RIGHT_OK = {NAME, "tsm-diff-5m-stage2", "tsm-diff-5m-stage3", "tsm-diff-5m-stage5"}


@pytest.mark.parametrize("name, latex", [(n, r"\sin{(x^{2} )}") for n in SHIPPED]
                         + [(n, r"\sin{\left(x^{2} \right)}") for n in SHIPPED if n in LEFT_RIGHT_OK])
def test_plain_transformers_loads_it_and_the_greedy_answer_scores_correct(name, latex):
    from tsm.reward import score

    answer = greedy_answer(ROOT / "models" / name, diff_prompt(latex), 64)
    assert "\\boxed{" in answer
    assert score(answer, "2*x*cos(x**2)").correct, answer


def test_plain_generate_without_arguments_gives_the_whole_answer():
    # generation_config.json carries max_new_tokens, so transformers' 20-token default never cuts it
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(FOLDER)
    model = AutoModelForCausalLM.from_pretrained(FOLDER).eval()
    assert model.generation_config.max_new_tokens >= 128
    ids = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.count("{") == answer.count("}") and "\\boxed{" in answer and answer.rstrip().endswith("$"), answer


def test_tsm_entry_points_take_the_short_name(tmp_path):
    from omegaconf import open_dict

    from tests.helpers import compose_cfg
    from tsm.models import load_checkpoint
    from tsm.models.loading import spec_from_checkpoint
    from tsm.pipeline import load_policy

    spec = spec_from_checkpoint(NAME)
    assert spec.source == "local" and Path(spec.path).resolve() == FOLDER.resolve()
    model, _ = load_checkpoint(NAME)
    # a recipe starts from it with the explicit init_from key (no outputs/ path in any experiment)
    cfg = compose_cfg("train", ["experiment=smallest", f"init_from={NAME}"], tmp_path)
    with open_dict(cfg):
        assert cfg.init_from == NAME
    start, _ = load_policy(cfg, cfg.init_from)
    a = torch.cat([p.flatten() for p in model.parameters()])
    b = torch.cat([p.flatten() for p in start.parameters()])
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="shipped model"):
        spec_from_checkpoint("no-such-model")


INTEGRAND_LATEX, INTEGRAND_SYMPY = r"2 x \cos{(x^{2} )}", "2*x*cos(x**2)"  # answered sin(x^2)


@pytest.mark.parametrize("name", ["tsm-int-5m", "tsm-int-5m-stage2"])
def test_the_integration_model_answers_an_integral_plain_transformers(name):
    """models/tsm-int-5m[-stage2] (issue 21): the integration task's prompt, greedy, checked by
    differentiating."""
    from tsm.tasks.base import SYSTEM_PROMPT
    from tsm.tasks.integration import FIXED_PROMPT, verify

    folder = ROOT / "models" / name
    assert "**Headline**" in (folder / "README.md").read_text()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 21 * 2**20
    prompt = [{"role": "system", "content": SYSTEM_PROMPT},
              {"role": "user", "content": FIXED_PROMPT.format(function=INTEGRAND_LATEX)}]
    answer = greedy_answer(folder, prompt, 64)
    assert verify(answer, INTEGRAND_SYMPY).correct, answer


@pytest.mark.parametrize("latex, gold", [
    (r"\arcsin{(3 x )}", "3/sqrt(1 - 9*x**2)"),
    (r"2^{\sin{(x )}}", "2**sin(x)*log(2)*cos(x)"),
    (r"x^{x}", "x**x*(log(x) + 1)"),
    (r"\sin{(x^{2} )}", "2*x*cos(x**2)"),
])
@pytest.mark.parametrize("name", ["tsm-diff-5m-course", "tsm-diff-5m-course2", "tsm-diff-5m-course3"])
def test_the_course_models_differentiate_what_the_first_models_never_saw(name, latex, gold):
    """models/tsm-diff-5m-course{,2,3} (issue 22): inverse trig, b^f and f^g, greedy, plain transformers."""
    from tsm.reward import score

    answer = greedy_answer(ROOT / "models" / name, diff_prompt(latex), 96)
    assert score(answer, gold).correct, answer
