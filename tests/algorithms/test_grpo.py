"""GRPOModule: it learns a toy reward, its logprobs match the sampler's, micro-batching and the options behave."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import LlamaConfig, LlamaForCausalLM

from tsm.algorithms.grpo import GRPOModule
from tsm.data.prompts import Prompt, PromptBatches, _as_is
from tsm.models.math_tokenizer import build_math_tokenizer
from tsm.reward.batch import BatchScores
from tsm.reward.scoring import Score
from tsm.rollout.base import SamplingParams


@pytest.fixture(scope="module")
def tok():
    return build_math_tokenizer()


def tiny_model(vocab: int, seed: int = 0, eos_bias: float | None = None, eos_id: int = 4) -> LlamaForCausalLM:
    """A random tiny Llama; ``eos_bias`` adds an output bias on EOS so completions end at varied lengths."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=eos_bias is None)
    model = LlamaForCausalLM(cfg).float()
    if eos_bias is not None:
        head = torch.nn.Linear(32, vocab, bias=True)
        with torch.no_grad():
            head.weight.copy_(model.model.embed_tokens.weight)
            head.bias.zero_()
            head.bias[eos_id] = eos_bias
        model.lm_head = head
    return model


class LetterReward:
    """Toy verifiable reward: the fraction of the completion's tokens that are words (random text: ~0.4)."""

    tok = build_math_tokenizer()

    def __call__(self, texts, gts):
        vals = []
        for t in texts:
            ids = self.tok(t, add_special_tokens=False)["input_ids"] or [0]
            vals.append(sum(self.tok.decode([i]).isalpha() for i in ids) / len(ids))
        return BatchScores([Score(v, False, "wrong") for v in vals], n_timeouts=0, n_errors=0)


def prompts(tok, n: int = 8) -> list[Prompt]:
    return [Prompt(tok(f"<|im_start|>user\nx^{i}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"],
                   f"{i}*x**{i - 1}") for i in range(2, 2 + n)]


class Record(L.Callback):
    """Collects one metric per rollout step."""

    def __init__(self, key: str):
        self.key, self.values = key, []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.values.append(module.last_metrics[self.key])


def fit(module: GRPOModule, tok, steps: int, tmp_path, n_prompts: int = 8, batch: int = 4,
        callbacks=()) -> L.Trainer:
    loader = DataLoader(PromptBatches(prompts(tok, n_prompts), batch, seed=0), batch_size=None, collate_fn=_as_is)
    trainer = L.Trainer(max_steps=steps * module.ppo_epochs, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path), limit_val_batches=0, callbacks=list(callbacks))
    trainer.fit(module, train_dataloaders=loader)
    return trainer


def make(tok, reward=None, lr=3e-2, optimizer=None, **kw) -> GRPOModule:
    sampling = kw.pop("sampling", SamplingParams(max_new_tokens=8, temperature=1.0))
    return GRPOModule(
        model=tiny_model(len(tok), eos_bias=kw.pop("eos_bias", None), eos_id=tok.eos_token_id), tokenizer=tok,
        optimizer=optimizer or partial(torch.optim.Adam, lr=lr), max_steps=kw.pop("max_steps", 1),
        sampling=sampling, reward=reward or LetterReward(), **kw,
    )


def test_learns_toy_reward(tok, tmp_path):
    """Fails if the gradient sign or the advantages are wrong: mean reward must rise clearly."""
    module = make(tok, group_size=8, max_steps=30, micro_batch_size=16)
    rec = Record("train/reward/mean")
    fit(module, tok, 30, tmp_path, callbacks=[rec])
    history = rec.values
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert first < 0.6, first  # random text: ~0.4
    assert last > first + 0.2, (first, last)


def test_sign_flip_unlearns(tok, tmp_path):
    """The same run with the reward negated must push the reward *down* (the advantage sign matters)."""

    class Negated(LetterReward):
        def __call__(self, texts, gts):
            s = super().__call__(texts, gts)
            return BatchScores([Score(1 - x.value, False, "wrong") for x in s.scores], 0, 0)

    module = make(tok, reward=Negated(), group_size=8, max_steps=30, micro_batch_size=16)
    rec = Record("train/reward/mean")  # 1 - letter fraction: rising means fewer letters
    fit(module, tok, 30, tmp_path, callbacks=[rec])
    letters = [1 - v for v in rec.values]
    assert sum(letters[-5:]) / 5 < sum(letters[:5]) / 5 - 0.2, letters


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_policy_logprobs_match_sampler(tok, tmp_path, temperature):
    """HF engine samples from the policy itself: rollout/logprob_diff must be ~0 (same temperature convention)."""
    module = make(tok, group_size=4, sampling=SamplingParams(max_new_tokens=8, temperature=temperature, top_k=20))
    fit(module, tok, 1, tmp_path)
    assert module.last_metrics["rollout/logprob_diff"] < 1e-4


@pytest.mark.parametrize("aggregation", ["seq_mean", "token_mean", "constant"])
def test_micro_batch_size_does_not_change_the_update(tok, tmp_path, aggregation):
    """Same rollouts (seeded by step), same loss normalizer: micro-batches of 2 or 32 give the same weights."""
    params = []
    for mbs in (2, 32):
        module = make(tok, group_size=4, micro_batch_size=mbs, loss_aggregation=aggregation, grad_clip=0.0,
                      optimizer=partial(torch.optim.SGD, lr=1.0), eos_bias=5.0)
        fit(module, tok, 1, tmp_path)
        lens = module.last_metrics["train/response_len/mean"], module.last_metrics["train/response_len/max"]
        assert lens[0] < lens[1]  # varied lengths: the per-sequence normalizers matter
        params.append(torch.cat([p.detach().flatten() for p in module.model.parameters()]))
    start = torch.cat([p.flatten() for p in tiny_model(len(tok), eos_bias=5.0, eos_id=tok.eos_token_id).parameters()])
    assert not torch.allclose(params[0], start)
    assert torch.allclose(params[0], params[1], atol=1e-6)


def test_aggregations_differ(tok, tmp_path):
    out = {}
    for agg in ("seq_mean", "token_mean", "constant"):
        module = make(tok, group_size=4, loss_aggregation=agg, grad_clip=0.0, optimizer=partial(torch.optim.SGD, lr=1.0),
                      eos_bias=5.0)
        fit(module, tok, 1, tmp_path)
        out[agg] = torch.cat([p.detach().flatten() for p in module.model.parameters()])
    assert not torch.allclose(out["seq_mean"], out["constant"])
    assert not torch.allclose(out["seq_mean"], out["token_mean"])
    assert not torch.allclose(out["token_mean"], out["constant"])


def test_drop_equal_groups_and_mask_truncated(tok, tmp_path):
    class Constant(LetterReward):
        def __call__(self, texts, gts):
            return BatchScores([Score(0.1, False, "wrong") for _ in texts], 0, 0)

    # constant reward: every group has zero std; dropping them leaves nothing to train on
    module = make(tok, reward=Constant(), group_size=4, drop_equal_groups=True)
    before = [p.detach().clone() for p in module.model.parameters()]
    fit(module, tok, 1, tmp_path)
    m = module.last_metrics
    assert m["train/groups_zero_std_frac"] == 1.0 and m["train/sequences_trained"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, module.model.parameters()))  # zero-weight step

    # a random tiny model never emits EOS in 8 tokens: every completion is truncated, so masking drops all
    module = make(tok, group_size=4, mask_truncated=True)
    fit(module, tok, 1, tmp_path)
    assert module.last_metrics["train/truncated_frac"] == 1.0
    assert module.last_metrics["train/sequences_trained"] == 0
    module = make(tok, group_size=4)
    fit(module, tok, 1, tmp_path)
    assert module.last_metrics["train/sequences_trained"] == 16


def test_reference_model_only_with_beta(tok, tmp_path):
    assert make(tok).ref_model is None
    module = make(tok, beta=0.5, kl_estimator="k3", group_size=4, max_steps=3)
    assert module.ref_model is not None
    assert all(not p.requires_grad for p in module.ref_model.parameters())
    fit(module, tok, 3, tmp_path)
    # the policy moved away from the frozen reference, and the reported KL (k3 >= 0) says so
    assert module.last_metrics["train/kl"] > 0
    ref = torch.cat([p.flatten() for p in module.ref_model.parameters()])
    assert torch.allclose(ref, torch.cat([p.flatten() for p in tiny_model(len(tok)).parameters()]))


def test_ppo_epochs_take_several_optimizer_steps_and_clip(tok, tmp_path):
    module = make(tok, group_size=4, ppo_epochs=3, lr=5e-2, epsilon_low=0.05, epsilon_high=0.05, max_steps=2)
    trainer = fit(module, tok, 2, tmp_path)
    assert trainer.global_step == 6
    m = module.last_metrics
    assert m["train/clip_frac"] > 0  # later epochs move the ratio outside 1 ± 0.05
    assert m["train/kl"] > 0         # without a reference: drift from the rollout policy


def test_all_metrics_logged(tok, tmp_path):
    module = make(tok, group_size=4)
    fit(module, tok, 1, tmp_path)
    expected = {
        "train/reward/mean", "train/reward/correct_frac", "train/reward/parse_rate", "train/reward/timeouts",
        "train/groups_zero_std_frac", "train/clip_frac", "train/kl", "train/entropy", "train/response_len/mean",
        "train/response_len/max", "train/truncated_frac", "rollout/tokens_per_s", "rollout/logprob_diff",
        "time/rollout_s", "time/reward_s", "time/update_s",
    }
    assert expected <= set(module.last_metrics)
    assert 0 < module.last_metrics["train/entropy"] <= torch.log(torch.tensor(float(len(tok)))).item() + 1e-4


def test_bad_options_are_refused(tok):
    with pytest.raises(ValueError, match="temperature"):
        make(tok, sampling=SamplingParams(max_new_tokens=4, temperature=0.0))
    with pytest.raises(ValueError, match="loss_aggregation"):
        make(tok, loss_aggregation="sum")
    with pytest.raises(ValueError, match="kl_estimator"):
        make(tok, kl_estimator="k2")
