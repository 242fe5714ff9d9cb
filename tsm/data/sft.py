"""SFT examples: which assistant text to train on, and how it becomes (input_ids, labels).

``sft_target`` chooses the assistant text for a dataset row:

- ``answer``: "The final answer is $\\boxed{<answer>}$" (Diff-TSM's format, shortest sequences;
  the row's reference answer, any task);
- ``steps``: the task's step-by-step text (``TaskPlugin.steps``; differentiation: a short
  rule-based derivation, ``tsm.tasks.differentiation.steps``, correct by construction);
- ``responses``: the responses of a responses parquet (``evaluate.py`` output) whose score is 1,
  for rejection sampling or distillation from a stronger model.

Tokenization goes through the model's own chat template: the prompt is rendered with
``add_generation_prompt=True``; the completion is the rest of the rendered conversation up to and
including the end-of-turn token. Prompt tokens get label -100, so they carry no loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100
SFT_TARGETS = ("answer", "steps", "responses")


@dataclass(frozen=True)
class SFTExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError("input_ids and labels differ in length")
        if all(label == IGNORE_INDEX for label in self.labels):
            raise ValueError("an SFT example needs at least one target token")

    @property
    def n_target_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def answer_only(answer_latex: str) -> str:
    r"""The ``sft_target=answer`` text: ``The final answer is $\boxed{<answer>}$`` (any task)."""
    return f"The final answer is $\\boxed{{{answer_latex}}}$"


def target_texts(row: dict[str, Any], mode: str) -> list[str]:
    """Assistant texts to train on for one dataset row (``responses`` may give several or none)."""
    if mode == "answer":
        return [answer_only(row["extra_info"]["answer"])]
    if mode == "steps":
        from tsm.tasks.base import task_of_row

        task = task_of_row(row)
        if task.steps is None:
            raise ValueError(f"sft_target=steps: task {task.name!r} has no step-by-step targets "
                             "(use sft_target=answer or responses)")
        return [task.steps(row)]
    if mode == "responses":
        responses = row.get("responses")
        scores = row.get("scores")
        if responses is None or scores is None:
            raise ValueError("sft_target=responses needs a parquet with 'responses' and 'scores' columns")
        return [r for r, s in zip(responses, scores) if float(s) >= 1.0]
    raise ValueError(f"sft_target must be one of {SFT_TARGETS}, got {mode!r}")


def render_prompt(tokenizer, messages: Sequence[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt, ending with the assistant header (what generation starts from)."""
    return tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]


def encode_example(tokenizer, messages: Sequence[dict[str, str]], completion: str) -> SFTExample:
    prompt_text = render_prompt(tokenizer, messages)
    full_text = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": completion}], tokenize=False
    )
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template does not extend the generation prompt with the answer")
    rest = full_text[len(prompt_text) :]
    eos = tokenizer.eos_token
    if eos and eos in rest:  # drop what the template adds after end-of-turn (a newline)
        rest = rest[: rest.rindex(eos) + len(eos)]
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(rest, add_special_tokens=False)["input_ids"]
    if eos and not rest.endswith(eos):
        target_ids.append(tokenizer.eos_token_id)
    return SFTExample(prompt_ids + target_ids, [IGNORE_INDEX] * len(prompt_ids) + target_ids)


def iter_examples(
    tokenizer, rows: Sequence[dict[str, Any]], mode: str, max_length: int
) -> Iterator[tuple[int, SFTExample]]:
    """(row index, example) for every target of every row that fits in ``max_length`` tokens."""
    for i, row in enumerate(rows):
        for text in target_texts(row, mode):
            ex = encode_example(tokenizer, row["prompt"], text)
            if len(ex.input_ids) <= max_length:
                yield i, ex
