"""Policy-gradient pieces of the GRPO family, as pure tensor functions (unit-tested by hand).

Conventions (shapes: G groups of n completions, B = G*n sequences, T completion tokens):

- ``group_advantages(rewards[G, n])``: reward minus its group mean; divided by the group's
  standard deviation (unbiased, as GRPO) + ``eps`` when ``normalize_std`` (Dr. GRPO turns it off:
  the division up-weights groups that are nearly solved or nearly hopeless).
- ``kl_penalty(logp, ref_logp, estimator)``: per-token estimate of KL(policy || reference) from
  tokens sampled by the policy: ``k1 = logp - ref`` (unbiased, high variance, can go negative) or
  ``k3 = exp(ref - logp) - (ref - logp) - 1`` (Schulman's, >= 0, what GRPO uses).
- ``clipped_pg_per_token``: PPO's pessimistic surrogate ``-min(r A, clip(r, 1-eps_low, 1+eps_high) A)``
  with ``r = exp(logp - old_logp)``; ``epsilon_high > epsilon_low`` is DAPO's clip-higher.
- ``token_weights`` turns the per-token loss into one number for the whole optimizer step, so that
  micro-batching changes nothing (each micro-batch adds ``sum(weight * loss)``):

  ==================  ==================================================  =================
  aggregation         loss                                                 as in
  ==================  ==================================================  =================
  ``seq_mean``        mean over sequences of (mean over the sequence's     GRPO
                      tokens)
  ``token_mean``      sum over all tokens / number of tokens in the step   DAPO
  ``constant``        sum over all tokens / (sequences x max_new_tokens)   Dr. GRPO
  ==================  ==================================================  =================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AGGREGATIONS = ("seq_mean", "token_mean", "constant")
KL_ESTIMATORS = ("k1", "k3")


def group_advantages(rewards: torch.Tensor, normalize_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages for ``rewards`` of shape [groups, n] (n >= 1)."""
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [groups, n], got shape {tuple(rewards.shape)}")
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize_std:
        return centered
    std = rewards.std(dim=1, keepdim=True, unbiased=True) if rewards.shape[1] > 1 else torch.zeros_like(centered)
    return centered / (std + eps)


def zero_std_groups(rewards: torch.Tensor) -> torch.Tensor:
    """[groups] bool: every completion of the group got the same reward (no learning signal)."""
    return (rewards == rewards[:, :1]).all(dim=1)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k3":
        log_ratio = ref_logp - logp
        return torch.exp(log_ratio) - log_ratio - 1
    raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


@dataclass
class PGTerms:
    """Per-token pieces of the clipped surrogate (all [B, T])."""

    loss: torch.Tensor      # the surrogate to minimize (before the KL term)
    clipped: torch.Tensor   # bool: the clipped branch was the active one (no gradient flows)


def clipped_pg_per_token(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> PGTerms:
    """``logp``/``old_logp`` [B, T] with ``advantages`` per sequence [B] (broadcast over tokens) or
    per token [B, T]; or all three flat [K] (one entry per token)."""
    if advantages.ndim == 1 and logp.ndim == 2:
        advantages = advantages[:, None]
    if advantages.shape != logp.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} do not match logp {tuple(logp.shape)}")
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high) * advantages
    loss = -torch.minimum(unclipped, clipped)
    return PGTerms(loss=loss, clipped=(clipped < unclipped).detach())


def token_weights(
    mask: torch.Tensor, aggregation: str, n_sequences: int, n_tokens: int, max_new_tokens: int
) -> torch.Tensor:
    """[B, T] weights such that ``sum(weights * per_token_loss)`` over all micro-batches is the step loss.

    ``mask`` [B, T] marks the completion tokens that carry loss; ``n_sequences`` / ``n_tokens`` are
    the counts over the *whole* optimizer step (all micro-batches, all ranks).
    """
    mask = mask.float()
    if aggregation == "seq_mean":
        lengths = mask.sum(dim=1, keepdim=True).clamp(min=1)
        return mask / lengths / max(n_sequences, 1)
    if aggregation == "token_mean":
        return mask / max(n_tokens, 1)
    if aggregation == "constant":
        return mask / (max(n_sequences, 1) * max_new_tokens)
    raise ValueError(f"loss aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy (nats) of softmax(logits) over the last dimension."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
