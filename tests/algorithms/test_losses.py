"""GRPO-family loss pieces against values computed by hand, one test per option."""

from __future__ import annotations

import math

import pytest
import torch

from tsm.algorithms import losses


def test_group_advantages_std_normalized():
    # group 1: rewards 1, 0, 0, 1 -> mean 0.5, unbiased std sqrt(1/3)
    # group 2: all 0.1 -> zero advantages (std 0, eps keeps it finite)
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 0.1]])
    adv = losses.group_advantages(r, normalize_std=True, eps=0.0 + 1e-8)
    s = math.sqrt(1 / 3)
    assert torch.allclose(adv[0], torch.tensor([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s]), atol=1e-5)
    assert torch.equal(adv[1], torch.zeros(4))


def test_group_advantages_dr_grpo_no_std():
    r = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])
    adv = losses.group_advantages(r, normalize_std=False)
    assert torch.allclose(adv, torch.tensor([[1 - 1.1 / 3, 0.1 - 1.1 / 3, -1.1 / 3], [-1 / 3, -1 / 3, 2 / 3]]))


def test_group_advantages_eps_and_shape_checks():
    r = torch.tensor([[2.0, 0.0]])  # unbiased std = sqrt(2)
    adv = losses.group_advantages(r, normalize_std=True, eps=0.5)
    assert torch.allclose(adv, torch.tensor([[1 / (math.sqrt(2) + 0.5), -1 / (math.sqrt(2) + 0.5)]]))
    assert torch.equal(losses.group_advantages(torch.tensor([[3.0]])), torch.zeros(1, 1))  # n = 1: no signal
    with pytest.raises(ValueError):
        losses.group_advantages(torch.ones(4))


def test_zero_std_groups():
    r = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.1, 0.1]])
    assert losses.zero_std_groups(r).tolist() == [True, False, True]


def test_kl_estimators():
    logp = torch.tensor([-1.0, -2.0])
    ref = torch.tensor([-1.5, -1.0])
    assert torch.allclose(losses.kl_penalty(logp, ref, "k1"), torch.tensor([0.5, -1.0]))
    # k3 = e^(ref-logp) - (ref-logp) - 1
    expected = torch.tensor([math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1])
    assert torch.allclose(losses.kl_penalty(logp, ref, "k3"), expected)
    assert torch.all(losses.kl_penalty(logp, ref, "k3") >= 0)
    assert torch.equal(losses.kl_penalty(logp, logp, "k3"), torch.zeros(2))
    with pytest.raises(ValueError):
        losses.kl_penalty(logp, ref, "k2")


def test_clipped_surrogate_symmetric_and_clip_higher():
    # ratios e^0.5 = 1.6487 and e^-0.5 = 0.6065, advantages +1 and -1
    logp = torch.tensor([[0.5, -0.5, 0.5, -0.5]])
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    t = losses.clipped_pg_per_token(logp, old, adv, epsilon_low=0.2, epsilon_high=0.2)
    r_hi, r_lo = math.exp(0.5), math.exp(-0.5)
    # A>0, r>1+eps: clipped at 1.2; A>0, r<1: unclipped r; A<0, r>1: unclipped -r; A<0, r<0.8: clipped at 0.8
    assert torch.allclose(t.loss, torch.tensor([[-1.2, -r_lo, r_hi, 0.8]]), atol=1e-6)
    assert t.clipped.tolist() == [[True, False, False, True]]
    # clip-higher: epsilon_high 0.28 lets the positive-advantage ratio go to 1.28
    t2 = losses.clipped_pg_per_token(logp, old, adv, epsilon_low=0.2, epsilon_high=0.28)
    assert torch.allclose(t2.loss[0, 0], torch.tensor(-1.28))
    assert torch.allclose(t2.loss[0, 3], torch.tensor(0.8))  # the low side is unchanged


def test_clipped_surrogate_gradient_at_ratio_one_is_policy_gradient():
    # with old == logp (μ = 1) the loss gradient is -A * d logp: the plain policy gradient
    logp = torch.tensor([-0.3, -1.2], requires_grad=True)
    adv = torch.tensor([2.0, -0.5])
    t = losses.clipped_pg_per_token(logp, logp.detach(), adv)
    t.loss.sum().backward()
    assert torch.allclose(logp.grad, -adv)
    assert not t.clipped.any()


def test_clipped_branch_has_no_gradient():
    logp = torch.tensor([1.0], requires_grad=True)  # ratio e > 1.2 with A > 0: clipped
    t = losses.clipped_pg_per_token(logp, torch.zeros(1), torch.tensor([1.0]))
    t.loss.sum().backward()
    assert logp.grad.item() == 0.0


def test_token_weights_all_aggregations():
    # two sequences, 3 and 1 completion tokens; the step also has a third sequence elsewhere
    # (another micro-batch) with 2 tokens: n_sequences 3, n_tokens 6, max_new_tokens 4
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    w = losses.token_weights(mask, "seq_mean", n_sequences=3, n_tokens=6, max_new_tokens=4)
    assert torch.allclose(w, torch.tensor([[1 / 9, 1 / 9, 1 / 9], [1 / 3, 0, 0]]))
    w = losses.token_weights(mask, "token_mean", n_sequences=3, n_tokens=6, max_new_tokens=4)
    assert torch.allclose(w, torch.tensor([[1 / 6, 1 / 6, 1 / 6], [1 / 6, 0, 0]]))
    w = losses.token_weights(mask, "constant", n_sequences=3, n_tokens=6, max_new_tokens=4)
    assert torch.allclose(w, torch.tensor([[1 / 12, 1 / 12, 1 / 12], [1 / 12, 0, 0]]))
    with pytest.raises(ValueError):
        losses.token_weights(mask, "sum", 3, 6, 4)


def test_aggregations_give_hand_computed_loss():
    # per-token losses of two sequences: [1, 2, 3] and [10]
    per_token = torch.tensor([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)

    def agg(kind):
        return float((losses.token_weights(mask, kind, 2, 4, 5) * per_token).sum())

    assert agg("seq_mean") == pytest.approx((2.0 + 10.0) / 2)  # GRPO: mean of sequence means
    assert agg("token_mean") == pytest.approx(16.0 / 4)        # DAPO: mean over tokens
    assert agg("constant") == pytest.approx(16.0 / (2 * 5))    # Dr. GRPO: / (sequences x max tokens)


def test_micro_batching_does_not_change_the_step_loss():
    torch.manual_seed(0)
    per_token = torch.rand(4, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    n_seq, n_tok = 4, int(mask.sum())
    for kind in losses.AGGREGATIONS:
        whole = (losses.token_weights(mask, kind, n_seq, n_tok, 5) * per_token).sum()
        parts = sum((losses.token_weights(mask[s : s + 2], kind, n_seq, n_tok, 5) * per_token[s : s + 2]).sum()
                    for s in (0, 2))
        assert torch.allclose(whole, parts)


def test_entropy_from_logits():
    uniform = torch.zeros(2, 4)
    assert torch.allclose(losses.entropy_from_logits(uniform), torch.full((2,), math.log(4)))
    peaked = torch.tensor([[100.0, 0.0, 0.0]])
    assert losses.entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
