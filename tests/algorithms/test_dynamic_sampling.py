"""Dynamic sampling: the group filter, the refill rounds, the replay buffer and their checkpoint."""

from __future__ import annotations

import pytest
import torch

from tests.algorithms.test_grpo import Record, fit, make, prompts
from tsm.algorithms.dynamic_sampling import DynamicSampling, ReplayBuffer, ReplayConfig, keep_groups
from tsm.data.prompts import Prompt, PromptBatches, StepPrompts
from tsm.reward.batch import BatchScores
from tsm.reward.scoring import Score


@pytest.fixture(scope="module")
def tok():
    from tsm.models.math_tokenizer import build_math_tokenizer

    return build_math_tokenizer()


def test_keep_groups_band_and_equal_rewards():
    rewards = torch.tensor([[1.0, 1, 1, 1], [0.1, 0.1, 0.1, 0.1], [1, 0.1, 0.1, 0.1], [1, 1, 1, 0.1],
                            [0.0, 0.1, 0.0, 0.1]])
    correct = rewards == 1
    # all-correct and all-equal groups are never kept; a wrong-only group whose rewards differ
    # (format reward vs none) is kept by the default band but not by a band starting above 0
    assert keep_groups(rewards, correct).tolist() == [False, False, True, True, True]
    assert keep_groups(rewards, correct, 0.1, 0.7).tolist() == [False, False, True, False, False]
    assert keep_groups(rewards, correct, 0.5, 1.0).tolist() == [False, False, False, True, False]


def test_bad_knobs_are_refused():
    with pytest.raises(ValueError, match="oversample"):
        DynamicSampling(oversample=0.5)
    with pytest.raises(ValueError, match="max_rounds"):
        DynamicSampling(max_rounds=0)
    with pytest.raises(ValueError, match="min_pass_rate"):
        DynamicSampling(min_pass_rate=0.8, max_pass_rate=0.2)
    with pytest.raises(ValueError, match="fraction"):
        DynamicSampling(replay={"fraction": 2})
    assert DynamicSampling.of({"enabled": True, "replay": {"fraction": 0.25}}).replay.fraction == 0.25


def test_replay_buffer_fifo_uses_capacity_and_state():
    buf = ReplayBuffer(ReplayConfig(fraction=0.5, size=3, max_pass_rate=0.25, max_uses=2))
    ps = [Prompt([i], str(i)) for i in range(5)]
    assert buf.add(ps, [0.0, 0.5, 0.25, 0.0, 0.0]) == 4  # prompt 1 (pass rate 0.5) is too easy
    assert [p.ground_truth for p, _ in buf.items] == ["2", "3", "4"]  # capacity 3: the oldest fell out
    state = buf.state_dict()
    got, uses = buf.take(2)
    assert [p.ground_truth for p in got] == ["2", "3"] and uses == [1, 1]
    buf.add(got, [0.0, 0.0], [2, 1])  # prompt 2 reached max_uses: not stored again
    assert [p.ground_truth for p, _ in buf.items] == ["4", "3"]
    again = ReplayBuffer(buf.cfg)
    again.load_state_dict(state, Prompt)
    assert [(p.token_ids, p.ground_truth, u) for p, u in again.items] == [([2], "2", 0), ([3], "3", 0), ([4], "4", 0)]


class ByPrompt:
    """Reward by prompt: prompts whose gold ends in an odd digit are always solved (all-correct
    groups, no signal); even ones are solved by completions of even token length only."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts, gts):
        out = []
        for t, g in zip(texts, gts):
            self.seen.append(g)
            ok = int(g[-1]) % 2 == 1 or len(t) % 2 == 0
            out.append(Score(1.0, True, "correct") if ok else Score(0.0, False, "wrong"))
        return BatchScores(out, 0, 0)


def test_refill_rounds_until_the_batch_is_informative(tok, tmp_path):
    """Half the prompts carry no signal: one round keeps too few, so the step draws more prompts
    (refill) until it has its 4 informative groups; plain GRPO trains on all 4 sampled groups."""
    reward = ByPrompt()
    ds = {"enabled": True, "oversample": 1.0, "max_rounds": 8}
    module = make(tok, reward=reward, group_size=8, dynamic_sampling=ds, eos_bias=2.0)
    rec = Record("train/sampling/kept_groups")
    fit(module, tok, 2, tmp_path, n_prompts=32, batch=4, callbacks=[rec])
    m = module.last_metrics
    assert rec.values == [4.0, 4.0]
    assert m["train/sampling/rounds"] >= 2 and m["train/sampling/prompts_drawn"] > 4
    assert m["train/sampling/prompts_per_kept_group"] == m["train/sampling/prompts_drawn"] / 4
    assert m["train/sequences_trained"] == 32  # 4 kept groups x 8
    # the reported reward is the policy's on everything sampled (the all-correct groups included)
    assert 0.5 < m["train/reward/correct_frac"] < 1.0

    plain = make(tok, reward=ByPrompt(), group_size=8, eos_bias=2.0)
    fit(plain, tok, 1, tmp_path, n_prompts=32, batch=4)
    assert plain.last_metrics["train/sequences_trained"] == 32 and "train/sampling/rounds" not in plain.last_metrics


def test_nothing_informative_is_a_zero_weight_step(tok, tmp_path):
    class AllRight(ByPrompt):
        def __call__(self, texts, gts):
            return BatchScores([Score(1.0, True, "correct") for _ in texts], 0, 0)

    module = make(tok, reward=AllRight(), group_size=4, dynamic_sampling={"enabled": True, "max_rounds": 3})
    before = [p.detach().clone() for p in module.model.parameters()]
    fit(module, tok, 1, tmp_path, n_prompts=32, batch=4)
    m = module.last_metrics
    assert m["train/sampling/kept_groups"] == 0 and m["train/sampling/rounds"] == 3
    assert m["train/sequences_trained"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, module.model.parameters()))


def test_failed_prompts_are_replayed_in_later_steps(tok, tmp_path):
    class NeverRight(ByPrompt):
        def __call__(self, texts, gts):
            self.seen.extend(gts)
            return BatchScores([Score(0.1 if len(t) % 2 else 0.0, False, "wrong") for t in texts], 0, 0)

    reward = NeverRight()
    ds = {"enabled": True, "replay": {"fraction": 0.5, "size": 8, "max_pass_rate": 0.0, "max_uses": 1}}
    module = make(tok, reward=reward, group_size=2, dynamic_sampling=ds, eos_bias=2.0)
    fit(module, tok, 2, tmp_path, n_prompts=32, batch=4)
    first, second = reward.seen[:8], reward.seen[8:16]
    step1 = list(dict.fromkeys(first))
    replayed = list(dict.fromkeys(second))[:2]
    assert replayed == step1[:2]  # the oldest two failures of step 1 open step 2
    assert module.last_metrics["train/sampling/replayed"] == 2
    # the buffer rides in the checkpoint
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    fresh = make(tok, reward=reward, group_size=2, dynamic_sampling=ds)
    fresh.on_load_checkpoint(ckpt)
    assert [p.ground_truth for p, _ in fresh.replay.items] == [p.ground_truth for p, _ in module.replay.items]


def test_step_prompts_refill_is_deterministic_and_disjoint(tok):
    ps = prompts(tok, 12)
    a = PromptBatches(ps, 4, seed=3)[1]
    b = PromptBatches(ps, 4, seed=3)[1]
    assert isinstance(a, StepPrompts) and a.step == 1 and len(a) == 4
    more_a, more_b = a.draw(5), b.draw(5)
    assert [p.ground_truth for p in more_a] == [p.ground_truth for p in more_b]
    assert not {p.ground_truth for p in more_a} & {p.ground_truth for p in a.prompts}
    assert len(a.draw(100)) == 12 - 4 - 5  # a step never repeats a prompt
