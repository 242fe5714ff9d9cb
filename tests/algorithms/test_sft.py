"""SFT: prompt masking, token normalization under accumulation, step batching, schedule."""

from __future__ import annotations

import math
from collections import Counter
from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import LlamaConfig, LlamaForCausalLM

from tsm.algorithms.schedules import warmup_cosine
from tsm.algorithms.sft import (
    SFTModule,
    select_hardest,
    selection_by_type,
    sequence_nll,
    token_loss_sum,
    type_counts,
)
from tsm.data.datamodule import StepBatches, collate
from tsm.data.sft import IGNORE_INDEX, SFTExample, encode_example, encode_prompt
from tsm.models.math_tokenizer import build_math_tokenizer

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.fixture(scope="module")
def tok():
    return build_math_tokenizer()


def tiny_model(vocab: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).float()


def messages(f: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Differentiate {f}"}]


def test_prompt_tokens_carry_no_loss(tok):
    msgs = messages("x^{2}")
    completion = "The final answer is $\\boxed{2 x}$"
    ex = encode_example(tok, msgs, completion)
    prompt_ids = encode_prompt(tok, msgs)
    n_prompt = len(prompt_ids)
    assert ex.input_ids[:n_prompt] == prompt_ids
    assert all(label == IGNORE_INDEX for label in ex.labels[:n_prompt])
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    # the target is exactly the completion plus end-of-turn, nothing of the prompt
    assert tok.decode(ex.input_ids[n_prompt:]) == completion + tok.eos_token
    # and the loss only sees those positions: changing the labels of prompt tokens changes nothing,
    # dropping a target label changes the count
    model = tiny_model(len(tok))
    batch = collate([ex], tok.pad_token_id)
    loss, n = token_loss_sum(model, batch)
    assert int(n) == ex.n_target_tokens == len(ex.input_ids) - n_prompt
    logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
    targets = torch.tensor(ex.input_ids[1:])
    ref = torch.nn.functional.cross_entropy(logits[n_prompt - 1 :], targets[n_prompt - 1 :], reduction="sum")
    assert torch.allclose(loss, ref, atol=1e-5)


def make_examples(tok, n: int) -> list[SFTExample]:
    out = []
    for i in range(n):
        f = f"{i + 1} x^{{{i % 4 + 1}}}" + " + x" * (i % 3)
        out.append(encode_example(tok, messages(f), f"The final answer is $\\boxed{{{i + 2} x}}$" + " ok" * (i % 5)))
    return out


def one_step_params(tok, examples, micro: int, batch: int, select_fraction: float = 1.0) -> torch.Tensor:
    model = tiny_model(len(tok), seed=1)
    module = SFTModule(model, tok, partial(torch.optim.SGD, lr=1.0), max_steps=1, warmup_steps=0,
                       min_lr_ratio=1.0, grad_clip=0.0, select_fraction=select_fraction)
    ds = StepBatches(examples, batch_size=batch, micro_batch_size=micro, pad_id=tok.pad_token_id, seed=3)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(ds, batch_size=None))
    return torch.cat([p.detach().flatten() for p in model.parameters()]), ds


def test_loss_is_normalized_by_target_tokens_across_accumulation(tok):
    examples = make_examples(tok, 8)
    p1, ds = one_step_params(tok, examples, micro=1, batch=8)
    p4, _ = one_step_params(tok, examples, micro=4, batch=8)
    p8, _ = one_step_params(tok, examples, micro=8, batch=8)
    assert torch.allclose(p1, p8, atol=1e-6) and torch.allclose(p4, p8, atol=1e-6)
    # reference: one SGD step (lr 1) on sum(token losses) / total target tokens of the batch
    model = tiny_model(len(tok), seed=1)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    batch = collate([examples[i] for i in ds._plan[0]], tok.pad_token_id)
    loss, n = token_loss_sum(model, batch)
    (loss / n).backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(p8, before - grad, atol=1e-6)
    # a per-micro-batch mean (what naive accumulation does) would differ: lengths are unequal
    assert len({e.n_target_tokens for e in examples}) > 1


def test_sequence_nll_is_each_rows_target_loss(tok):
    examples = make_examples(tok, 6)
    model = tiny_model(len(tok), seed=2)
    scores = sequence_nll(model, collate(examples, tok.pad_token_id))
    for i, ex in enumerate(examples):  # each row alone, no padding: the same summed loss
        loss, _ = token_loss_sum(model, collate([ex], tok.pad_token_id))
        assert torch.allclose(scores[i], loss, atol=1e-4)
    assert len(set(scores.tolist())) == len(examples)


def test_select_hardest_keeps_the_top_rows_trimmed():
    rows = [SFTExample([n] * (n + 1), [IGNORE_INDEX] + [n] * n) for n in range(1, 9)]  # row n: length n + 1
    batch = [collate(rows[:4], 0), collate(rows[4:], 0)]
    scores = torch.tensor([5.0, 0.1, 7.0, 0.2, 0.3, 6.0, 0.0, 0.4])
    out = select_hardest(batch, scores, 3)
    assert len(out) == 1  # 3 rows, micro-batches of 4
    assert out[0]["input_ids"][:, 0].tolist() == [1, 3, 6]  # rows 0, 2, 5 in stream order
    assert out[0]["input_ids"].shape[1] == 7  # trimmed to row 6's length, not the batch's 9
    assert out[0]["attention_mask"].sum(1).tolist() == [2, 4, 7]
    out = select_hardest(batch, scores, 6)  # 6 rows re-batched as 4 + 2
    assert [m["input_ids"].shape[0] for m in out] == [4, 2]
    for mb, names in zip(batch, ("abcd", "efgh")):  # a per-row list (the stream's types) follows its rows
        mb["function_type"] = list(names)
    out = select_hardest(batch, scores, 3)
    assert out[0]["function_type"] == ["a", "c", "f"]
    assert type_counts(batch) == Counter("abcdefgh") and type_counts(out) == Counter("acf")
    with pytest.raises(ValueError):
        select_hardest(batch, scores[:5], 2)


def test_selective_step_trains_on_the_highest_nll_rows(tok):
    examples = make_examples(tok, 8)
    p_sel, ds = one_step_params(tok, examples, micro=4, batch=8, select_fraction=0.5)
    # reference: score the step's 8 rows with the starting model, one plain step on the top 4
    model = tiny_model(len(tok), seed=1)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    step_rows = [examples[i] for i in ds._plan[0]]
    scores = sequence_nll(model, collate(step_rows, tok.pad_token_id))
    top = [step_rows[i] for i in torch.topk(scores, 4).indices.tolist()]
    loss, n = token_loss_sum(model, collate(top, tok.pad_token_id))
    (loss / n).backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(p_sel, before - grad, atol=1e-6)
    p_all, _ = one_step_params(tok, examples, micro=4, batch=8)
    assert not torch.allclose(p_sel, p_all, atol=1e-4)  # the selection changed the step
    with pytest.raises(ValueError, match="select_fraction"):
        SFTModule(model, tok, partial(torch.optim.SGD, lr=1.0), max_steps=1, select_fraction=0.0)


def test_step_batches_partition_and_determinism(tok):
    examples = make_examples(tok, 40)
    ds = StepBatches(examples, batch_size=8, micro_batch_size=2, pad_id=0, seed=7)
    assert len(ds) == 5
    seen = [i for b in ds._plan for i in b]
    assert sorted(seen) == list(range(40))  # every example once per epoch
    again = StepBatches(examples, batch_size=8, micro_batch_size=2, pad_id=0, seed=7)
    assert again._plan == ds._plan
    assert StepBatches(examples, 8, 2, 0, seed=7, epoch=1)._plan != ds._plan
    resumed = StepBatches(examples, 8, 2, 0, seed=7, start_step=2)
    assert len(resumed) == 3 and torch.equal(resumed[0][0]["input_ids"], ds[2][0]["input_ids"])
    # two ranks split each global batch without overlap, two micro-batches of 2 each
    r0 = StepBatches(examples, 8, 2, 0, seed=7, rank=0, world_size=2)
    r1 = StepBatches(examples, 8, 2, 0, seed=7, rank=1, world_size=2)
    assert len(r0[0]) == 2 and all(mb["input_ids"].shape[0] == 2 for mb in r0[0])
    rows0 = {tuple(x.tolist()) for mb in r0[0] for x in mb["input_ids"]}
    rows1 = {tuple(x.tolist()) for mb in r1[0] for x in mb["input_ids"]}
    assert not rows0 & rows1
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        StepBatches(examples, 8, 3, 0)


def test_length_bucketing_reduces_padding(tok):
    examples = make_examples(tok, 64)
    ds = StepBatches(examples, batch_size=8, micro_batch_size=8, pad_id=0, seed=0, bucket_batches=8)
    pad = sum(int((1 - ds[i][0]["attention_mask"]).sum()) for i in range(len(ds)))
    flat = StepBatches(examples, batch_size=8, micro_batch_size=8, pad_id=0, seed=0, bucket_batches=1)
    pad_random = sum(int((1 - flat[i][0]["attention_mask"]).sum()) for i in range(len(flat)))
    assert pad < pad_random


def test_warmup_cosine():
    assert warmup_cosine(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 10, 100, 0.1) == pytest.approx(0.1)


class TypedSteps(torch.utils.data.IterableDataset):
    """Step batches in the stream's shape: micro-batches that name each row's function type."""

    def __init__(self, examples, types_per_step, micro: int, pad_id: int):
        self.examples, self.types_per_step, self.micro, self.pad_id = examples, types_per_step, micro, pad_id

    def __iter__(self):
        for types in self.types_per_step:
            out = []
            for i in range(0, len(self.examples), self.micro):
                mb = collate(self.examples[i : i + self.micro], self.pad_id)
                mb["function_type"] = types[i : i + self.micro]
                out.append(mb)
            yield out


def test_selective_backprop_logs_the_selected_rows_by_type(tok, tmp_path):
    """train/candidates/<type> and train/selected/<type> per step, summed over a run by
    selection_by_type: the types of the rows the starting model scores highest."""
    examples = make_examples(tok, 8)
    # the same rows each step, labelled differently: a family absent from a step counts 0 there
    steps = [["poly", "trig", "poly", "sum", "trig", "poly", "sum", "poly"],
             ["poly"] * 8,
             ["exp", "trig", "exp", "sum", "exp", "exp", "exp", "exp"]]
    model = tiny_model(len(tok), seed=1)
    scores = sequence_nll(model, collate(examples, tok.pad_token_id))
    top = torch.topk(scores, 4).indices.tolist()
    module = SFTModule(model, tok, partial(torch.optim.SGD, lr=0.0), max_steps=3, warmup_steps=0,
                       min_lr_ratio=1.0, grad_clip=0.0, select_fraction=0.5)  # lr 0: the same top 4 each step
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=L.pytorch.loggers.CSVLogger(tmp_path),
                        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(TypedSteps(examples, steps, 4, tok.pad_token_id),
                                                     batch_size=None))
    drawn = sum((Counter(types) for types in steps), Counter())
    chosen = sum((Counter(types[i] for i in top) for types in steps), Counter())
    counts = selection_by_type(next(tmp_path.rglob("metrics.csv")))
    assert counts == {t: (n, chosen[t]) for t, n in drawn.items()}
