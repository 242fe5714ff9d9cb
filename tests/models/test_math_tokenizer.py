"""The math tokenizer: exact round trips, single tokens where it matters, chat template, saving."""

from __future__ import annotations

import random

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tsm.models.math_tokenizer import (
    IM_END,
    IM_START,
    LATEX_COMMANDS,
    PAD,
    WORDS,
    build_backend,
    pieces,
)
from tsm.tasks.base import Rejected

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
LATEX_BITS = list(LATEX_COMMANDS) + [
    "{",
    "}",
    "(",
    ")",
    "^",
    "_",
    " ",
    "  ",
    "\n",
    "x",
    "e",
    "-",
    "+",
    "*",
    "/",
    "=",
    "$",
    "0",
    "1",
    "7",
    "42",
    "ü",
    "∂",
    "数",
    "🙂",
    "\t",
    "\r",
    "\\",
    "'",
    "\\boxed{}",
    IM_END,
]


def roundtrip(tokenizer, text: str) -> str:
    return tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=False)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_roundtrips(math_tokenizer, text):
    assert roundtrip(math_tokenizer, text) == text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(LATEX_BITS), max_size=40).map("".join))
def test_latex_like_text_roundtrips(math_tokenizer, text):
    assert roundtrip(math_tokenizer, text) == text


def test_sympy_rendered_functions_roundtrip(math_tokenizer):
    # The surface forms the data builder shows: LaTeX, str(sympy) and its ^ variant.
    x = sympy.Symbol("x")
    rng = random.Random(0)
    atoms = [x, sympy.sin(x), sympy.exp(3 * x), sympy.log(x + 2), sympy.sqrt(x), sympy.tanh(x)]
    for _ in range(200):
        a, b = rng.sample(atoms, 2)
        f = rng.randint(-40, 40) * a * b + rng.choice(atoms) ** rng.randint(1, 5)
        df = sympy.diff(f, x)
        for text in (sympy.latex(f), str(f), str(df).replace("**", "^"), sympy.latex(df)):
            prompt = (
                f"{SYSTEM}\nDifferentiate $f(x) = {text}$.\nThe final answer is $\\boxed{{{text}}}$"
            )
            assert roundtrip(math_tokenizer, prompt) == prompt


SINGLE_TOKENS = [
    "\\frac",
    "\\sin",
    "\\cdot",
    "\\sqrt",
    "\\boxed",
    "\\left",
    "\\,",
    " exp",
    "^{",
    " )}",
]


@pytest.mark.parametrize("piece", SINGLE_TOKENS)
def test_latex_commands_and_functions_are_single_tokens(math_tokenizer, piece):
    assert len(math_tokenizer(piece)["input_ids"]) == 1


def test_words_are_whole_tokens(math_tokenizer):
    tokens = math_tokenizer.convert_ids_to_tokens(
        math_tokenizer("Find the quotient rule")["input_ids"]
    )
    assert tokens == ["Find", " the", " quotient", " rule"]
    assert all(len(math_tokenizer(" " + w)["input_ids"]) == 1 for w in WORDS)


def test_every_piece_is_reachable():
    # A piece the pre-tokenizer can never produce as one chunk would be dead vocabulary.
    pre = build_backend().pre_tokenizer
    dead = [p for p in pieces() if [chunk for chunk, _ in pre.pre_tokenize_str(p)] != [p]]
    assert dead == []


@pytest.mark.parametrize("part", ["\\sin{(2 x )}", "e^{x}", "x^{2}", "\\frac{1}{x}", "x**2 + 3*x"])
def test_tokens_do_not_depend_on_surroundings(math_tokenizer, part):
    def tokens(text):
        return math_tokenizer.convert_ids_to_tokens(math_tokenizer(text)["input_ids"])

    alone = tokens(part)
    for text in (f"f(x) = {part}", f"({part})'", f"$\\boxed{{{part}}}$", f"{part}\n"):
        inside = tokens(text)
        assert any(inside[i : i + len(alone)] == alone for i in range(len(inside))), text


def test_dataset_strings_roundtrip(math_tokenizer):
    # Real rows: the task's prompts (surface variations of f) rendered with the chat template,
    # the gold f' in both forms, and the `steps` derivation an SFT target would hold.
    differentiation = pytest.importorskip("tsm.tasks.differentiation")
    derivation = pytest.importorskip("tsm.tasks.differentiation.steps")
    task = differentiation.DifferentiationTask(simplicity=0.5)
    rng = random.Random(1)
    checked = 0
    while checked < 40:
        try:
            problem = task.sample(rng)
        except Rejected:
            continue
        chat = math_tokenizer.apply_chat_template(
            task.messages(problem, rng), tokenize=False, add_generation_prompt=True
        )
        steps = derivation.derivation_steps(
            problem.function, derivative_latex=problem.derivative_latex
        )
        for text in (chat, problem.derivative_latex, task.ground_truth(problem), steps):
            assert roundtrip(math_tokenizer, text) == text
        checked += 1


def test_integration_strings_roundtrip(math_tokenizer):
    """The second task's prompts (words outside the vocabulary, split into pieces) and answers."""
    from tsm.tasks.integration import IntegrationTask

    task, rng, checked = IntegrationTask(simplicity=0.5), random.Random(2), 0
    while checked < 30:
        try:
            problem = task.sample(rng)
        except Rejected:
            continue
        chat = math_tokenizer.apply_chat_template(task.messages(problem, rng), tokenize=False,
                                                  add_generation_prompt=True)
        for text in (chat, problem.answer_latex, task.ground_truth(problem)):
            assert roundtrip(math_tokenizer, text) == text
        checked += 1


def test_digits_are_one_token_each(math_tokenizer):
    tokens = math_tokenizer.convert_ids_to_tokens(math_tokenizer("x^{123} + 4056")["input_ids"])
    assert [t for t in tokens if any(ch.isdigit() for ch in t)] == list("1234056")


def test_unknown_characters_fall_back_to_bytes(math_tokenizer):
    tokens = math_tokenizer.convert_ids_to_tokens(math_tokenizer("é")["input_ids"])
    assert tokens == ["<0xC3>", "<0xA9>"]
    assert math_tokenizer.unk_token_id not in math_tokenizer("é ∫ 🙂 \x00")["input_ids"]


def test_vocab_is_small_and_specials_are_set(math_tokenizer):
    assert 300 <= len(math_tokenizer) <= 1100
    assert math_tokenizer.pad_token == PAD
    assert math_tokenizer.eos_token == IM_END
    assert math_tokenizer.bos_token is not None
    assert (
        len({math_tokenizer.pad_token_id, math_tokenizer.eos_token_id, math_tokenizer.bos_token_id})
        == 3
    )
    # Specials written in text are single tokens (the chat template relies on it).
    assert math_tokenizer(IM_START)["input_ids"] == [math_tokenizer.convert_tokens_to_ids(IM_START)]


def test_chat_template_renders_chatml(math_tokenizer):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "d/dx x^2"}]
    text = math_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nd/dx x^2<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_prompt = math_tokenizer.apply_chat_template(messages, tokenize=False)
    assert not no_prompt.endswith("assistant\n") and no_prompt.endswith("<|im_end|>\n")
    ids = math_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=False
    )
    assert ids[-3:] == math_tokenizer("<|im_start|>assistant\n")["input_ids"]


def test_save_and_autotokenizer_reload(math_tokenizer, tmp_path):
    math_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "Differentiate \\sin{(x )} ü\n\n  d/dx = 12"
    assert reloaded(text)["input_ids"] == math_tokenizer(text)["input_ids"]
    assert reloaded.decode(reloaded(text)["input_ids"]) == text
    assert reloaded.chat_template == math_tokenizer.chat_template
    assert (reloaded.pad_token_id, reloaded.eos_token_id) == (
        math_tokenizer.pad_token_id,
        math_tokenizer.eos_token_id,
    )
    assert len(reloaded) == len(math_tokenizer)


def test_build_is_deterministic():
    from tsm.models.math_tokenizer import build_math_tokenizer

    assert build_math_tokenizer().get_vocab() == build_math_tokenizer().get_vocab()
