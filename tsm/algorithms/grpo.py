"""Group-relative policy optimization (GRPO and its Dr. GRPO / DAPO variants) as a LightningModule.

One training step (one batch of prompts from ``tsm.data.prompts.PromptDataModule``):

1. **rollout**: ``group_size`` completions per prompt from the rollout engine (``conf/rollout``:
   ``hf`` samples from the live policy, ``vllm`` from an engine the ``WeightSync`` callback keeps
   in sync after every step); sampling is seeded by (seed, step, rank), so a resumed run samples
   what an uninterrupted one would;
2. **reward**: the reward pool scores every completion against the prompt's gold derivative;
3. **advantages**: reward minus the group mean, divided by the group std unless
   ``normalize_std=false`` (Dr. GRPO); groups whose rewards are all equal carry no signal and can be
   dropped (``drop_equal_groups``); truncated completions can be masked (``mask_truncated``);
4. **update**: ``ppo_epochs`` (μ) optimizer steps over the same rollouts, each accumulating
   gradients over micro-batches of ``micro_batch_size`` sequences, with PPO's clipped surrogate
   (``epsilon_low``/``epsilon_high``), an optional KL penalty to a frozen copy of the initial policy
   (``beta`` > 0 loads it; ``kl_estimator`` k1 or k3), and the loss aggregated per
   ``loss_aggregation`` over the whole step (``tsm.algorithms.losses``).

Log-probabilities are ``log_softmax(logits / temperature)``, the same convention as the engines'
sampler logprobs, so ``rollout/logprob_diff`` (mean |policy − sampler| on the sampled tokens,
before the update) is ~0 when the engine is in sync, and jumps when it serves stale weights.
With μ = 1 the "old" policy is the current one (ratio 1: plain policy gradient, no clipping);
with μ > 1 the old logprobs come from one no-grad pass before the first update.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import lightning as L
import torch

from tsm.algorithms import losses
from tsm.algorithms.dynamic_sampling import DynamicSampling, ReplayBuffer, keep_groups
from tsm.algorithms.schedules import optimizer_with_schedule
from tsm.algorithms.steps import global_sum, micro_batch, optimizer_step
from tsm.data.prompts import Prompt, StepPrompts
from tsm.evaluation import PARSED_REASONS
from tsm.rollout.base import Rollouts, SamplingParams


def _mean(xs) -> float:
    xs = list(xs)
    return sum(float(x) for x in xs) / max(1, len(xs))


class GRPOModule(L.LightningModule):
    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        max_steps: int,
        sampling: SamplingParams,
        engine: Any = None,
        reward: Any = None,
        group_size: int = 8,
        ppo_epochs: int = 1,
        micro_batch_size: int = 8,
        normalize_std: bool = True,
        loss_aggregation: str = "seq_mean",
        epsilon_low: float = 0.2,
        epsilon_high: float = 0.2,
        beta: float = 0.0,
        kl_estimator: str = "k3",
        mask_truncated: bool = False,
        drop_equal_groups: bool = False,
        dynamic_sampling: Any = None,
        warmup_steps: int = 0,
        min_lr_ratio: float = 1.0,
        grad_clip: float = 1.0,
        val_generate_every: int = 0,
        val_max_new_tokens: int = 64,
        seed: int = 0,
    ):
        super().__init__()
        if max_steps < 1 or group_size < 1 or ppo_epochs < 1 or micro_batch_size < 1:
            raise ValueError("grpo: max_steps, group_size, ppo_epochs and micro_batch_size must be >= 1")
        if sampling.greedy:
            raise ValueError("grpo: sampling.temperature must be > 0 (greedy groups have no variance)")
        if loss_aggregation not in losses.AGGREGATIONS:
            raise ValueError(f"grpo.loss_aggregation must be one of {losses.AGGREGATIONS}, got {loss_aggregation!r}")
        if kl_estimator not in losses.KL_ESTIMATORS:
            raise ValueError(f"grpo.kl_estimator must be one of {losses.KL_ESTIMATORS}, got {kl_estimator!r}")
        if not (0 <= epsilon_low < 1 and epsilon_high >= 0) or beta < 0:
            raise ValueError("grpo: need 0 <= epsilon_low < 1, epsilon_high >= 0, beta >= 0")
        self.automatic_optimization = False
        self.model, self.tokenizer, self.engine, self.reward = model, tokenizer, engine, reward
        self.optimizer_factory = optimizer
        self.max_steps, self.sampling, self.group_size = max_steps, sampling, group_size
        self.ppo_epochs, self.micro_batch_size = ppo_epochs, micro_batch_size
        self.normalize_std, self.loss_aggregation = normalize_std, loss_aggregation
        self.epsilon_low, self.epsilon_high = epsilon_low, epsilon_high
        self.beta, self.kl_estimator = beta, kl_estimator
        self.mask_truncated, self.drop_equal_groups = mask_truncated, drop_equal_groups
        self.dynamic_sampling = DynamicSampling.of(dynamic_sampling)
        self.replay = ReplayBuffer(self.dynamic_sampling.replay)
        self.warmup_steps, self.min_lr_ratio, self.grad_clip = warmup_steps, min_lr_ratio, grad_clip
        self.val_generate_every, self.val_max_new_tokens = val_generate_every, val_max_new_tokens
        self.seed = seed
        # beta == 0: no reference model at all (no memory, no forward passes)
        self.ref_model = None
        if beta > 0:
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else tokenizer.eos_token_id

    @property
    def optimizer_steps_per_batch(self) -> int:
        return self.ppo_epochs

    @property
    def total_optimizer_steps(self) -> int:
        return self.max_steps * self.ppo_epochs

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["grpo_replay"] = self.replay.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "grpo_replay" in checkpoint:
            self.replay.load_state_dict(checkpoint["grpo_replay"], Prompt)

    def on_fit_start(self) -> None:
        self.model.train()
        if self.engine is None:
            from tsm.rollout.hf import HFEngine

            self.engine = HFEngine(self.model, self.tokenizer)

    def configure_optimizers(self):
        return optimizer_with_schedule(self.model, self.optimizer_factory, self.warmup_steps,
                                       self.total_optimizer_steps, self.min_lr_ratio)

    # -- helpers ---------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self._trainer is not None else (0, 1)

    def _global_sum(self, value: float) -> float:
        return float(global_sum(self, float(value)))

    def _micro_batch(self, prompts: list[list[int]], completions: list[list[int]]) -> dict[str, torch.Tensor]:
        """Right-padded prompt+completion; ``target_mask[b, t]``: position t predicts a completion token."""
        seqs = [p + c for p, c in zip(prompts, completions)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        target = torch.zeros((len(seqs), width - 1), dtype=torch.bool)
        comp = torch.zeros((len(seqs), max(len(c) for c in completions)), dtype=torch.bool)
        for b, (p, c) in enumerate(zip(prompts, completions)):
            ids[b, : len(p) + len(c)] = torch.tensor(p + c)
            attn[b, : len(p) + len(c)] = 1
            target[b, len(p) - 1 : len(p) + len(c) - 1] = True
            comp[b, : len(c)] = True
        dev = self.device
        return {"input_ids": ids.to(dev), "attention_mask": attn.to(dev), "target_mask": target.to(dev),
                "completion_mask": comp.to(dev)}

    def _token_logprobs(self, model: torch.nn.Module, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logp of each completion token, log_softmax rows) flattened in sequence-major token order.

        Only positions that predict a completion token go through the output projection.
        """
        keep = mb["target_mask"]
        targets = mb["input_ids"][:, 1:][keep]
        decoder, head = model.get_decoder(), model.get_output_embeddings()
        if decoder is None or head is None:
            logits = model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"], use_cache=False).logits
            logits = logits[:, :-1][keep]
        else:
            hidden = decoder(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"], use_cache=False).last_hidden_state
            logits = head(hidden[:, :-1][keep])
        logp_all = torch.log_softmax(logits.float() / self.sampling.temperature, dim=-1)
        return logp_all.gather(-1, targets[:, None]).squeeze(-1), logp_all

    # -- the step ----------------------------------------------------------------------------------
    def _sample(self, prompts: list[Prompt], step: int, rank: int, round_: int = 0) -> tuple[Rollouts, Any, float, float]:
        """``group_size`` samples for each prompt and their scores, seeded by (seed, step, rank, round);
        with the seconds spent generating and scoring."""
        seed = (self.seed * 1_000_003 + step) * 1009 + rank
        if round_:
            seed = seed * 101 + round_
        t0 = time.perf_counter()
        ro: Rollouts = self.engine.generate([p.token_ids for p in prompts], self.group_size,
                                            replace(self.sampling, seed=seed))
        t1 = time.perf_counter()
        scores = self.reward(ro.texts, [prompts[i].ground_truth for i in ro.prompt_index])
        return ro, scores, t1 - t0, time.perf_counter() - t1

    def _dynamic_rollouts(self, batch: StepPrompts, step: int, rank: int) -> tuple[list[Prompt], Rollouts, list, dict]:
        """Rollout rounds until ``len(batch)`` groups are kept (or ``max_rounds``): returns the kept
        prompts, their groups (prompt-major), their scores, and the rounds' statistics (``sampled``:
        every round's scores; ``rollout_s``/``reward_s``: their seconds)."""
        ds, G, target = self.dynamic_sampling, self.group_size, len(batch)
        replayed, uses = self.replay.take(round(ds.replay.fraction * target)) if ds.replay.fraction > 0 else ([], [])
        want = ds.n_draw(target)
        fresh = list(batch.prompts[: max(0, want - len(replayed))])
        if len(replayed) + len(fresh) < want and batch.draw is not None:
            fresh += batch.draw(want - len(replayed) - len(fresh))
        cands, cand_uses = replayed + fresh, uses + [0] * len(fresh)
        kept: list[tuple[Prompt, int, int]] = []  # (prompt, its index in its round, the round)
        rounds: list[tuple[Rollouts, Any, list[Prompt]]] = []
        drawn, rollout_s, reward_s = 0, 0.0, 0.0
        for r in range(ds.max_rounds):
            if not cands:
                break
            ro, scores, gen_s, rew_s = self._sample(cands, step, rank, r)
            drawn, rollout_s, reward_s = drawn + len(cands), rollout_s + gen_s, reward_s + rew_s
            values = torch.tensor([s.value for s in scores], dtype=torch.float32).view(len(cands), G)
            correct = torch.tensor([s.correct for s in scores]).view(len(cands), G)
            if ds.replay.fraction > 0:
                self.replay.add(cands, correct.float().mean(dim=1).tolist(), cand_uses)
            for i in keep_groups(values, correct, ds.min_pass_rate, ds.max_pass_rate).nonzero().flatten().tolist():
                if len(kept) < target:
                    kept.append((cands[i], i, len(rounds)))
            rounds.append((ro, scores, cands))
            if len(kept) >= target or batch.draw is None:
                break
            cands = batch.draw(ds.n_draw(target - len(kept)))
            cand_uses = [0] * len(cands)
        n_kept = len(kept)
        if not kept and rounds:  # nothing informative: one zero-weight group keeps the update (and DDP's sync) aligned
            kept.append((rounds[-1][2][0], 0, len(rounds) - 1))
        ids, texts, lps, fins, sc = [], [], [], [], []
        for _, i, r in kept:
            ro, scores, _ = rounds[r]
            for k in range(i * G, (i + 1) * G):
                ids.append(ro.token_ids[k])
                texts.append(ro.texts[k])
                lps.append(ro.logprobs[k])
                fins.append(ro.finish_reasons[k])
                sc.append(scores[k])
        merged = Rollouts([g for g in range(len(kept)) for _ in range(G)], ids, texts, lps, fins, n=G,
                          stats={"tokens_per_s": rounds[0][0].stats.get("tokens_per_s", 0.0) if rounds else 0.0})
        stats = {
            "prompts_drawn": float(drawn), "rounds": float(len(rounds)), "kept_groups": float(n_kept),
            "prompts_per_kept_group": drawn / max(1, n_kept), "replayed": float(len(replayed)),
            "replay_size": float(len(self.replay)),
            "sampled": [scores for _, scores, _ in rounds], "dummy": n_kept == 0 and bool(rounds),
            "rollout_s": rollout_s, "reward_s": reward_s,
        }
        return [p for p, _, _ in kept], merged, sc, stats

    def training_step(self, batch: StepPrompts | list[Prompt], batch_idx: int) -> torch.Tensor:
        rank, world = self._world()
        step = self.global_step // self.ppo_epochs  # rollout steps taken so far
        G = self.group_size
        if not isinstance(batch, StepPrompts):
            batch = StepPrompts(step, list(batch))

        sampling_stats: dict = {}
        if self.dynamic_sampling.enabled:
            prompts, ro, scores, sampling_stats = self._dynamic_rollouts(batch, step, rank)
            rollout_s, reward_s = sampling_stats["rollout_s"], sampling_stats["reward_s"]
        else:
            prompts = batch.prompts
            ro, scores, rollout_s, reward_s = self._sample(prompts, step, rank)
        t2 = time.perf_counter()

        rewards = torch.tensor([s.value for s in scores], dtype=torch.float32).view(len(prompts), G)
        adv = losses.group_advantages(rewards, self.normalize_std).flatten()
        zero_std = losses.zero_std_groups(rewards)
        truncated = torch.tensor([r == "length" for r in ro.finish_reasons], dtype=torch.bool)
        keep = torch.ones(len(ro), dtype=torch.bool)
        if self.drop_equal_groups:
            keep &= ~zero_std.repeat_interleave(G)
        if self.mask_truncated:
            keep &= ~truncated
        idx = keep.nonzero().flatten().tolist() if not sampling_stats.get("dummy") else []
        n_seq = self._global_sum(len(idx))
        n_tok = self._global_sum(sum(len(ro.token_ids[k]) for k in idx))
        # every rank runs at least one (zero-weight) micro-batch, so DDP's gradient sync stays aligned
        dummy = not idx
        order = sorted(idx or [0], key=lambda k: len(ro.token_ids[k]) + len(prompts[ro.prompt_index[k]].token_ids))
        chunks = [order[s : s + self.micro_batch_size] for s in range(0, len(order), self.micro_batch_size)]
        mbs = []
        for ks in chunks:
            mb = self._micro_batch([prompts[ro.prompt_index[k]].token_ids for k in ks], [ro.token_ids[k] for k in ks])
            w = losses.token_weights(mb["completion_mask"], self.loss_aggregation, int(n_seq), int(n_tok),
                                     self.sampling.max_new_tokens)
            mb["weights"] = (w[mb["completion_mask"]] * (0.0 if dummy else 1.0))
            n_k = [len(ro.token_ids[k]) for k in ks]
            mb["advantages"] = torch.repeat_interleave(adv[ks], torch.tensor(n_k)).to(self.device)
            mb["sampler_logp"] = torch.tensor([lp for k in ks for lp in ro.logprobs[k]], device=self.device)
            mbs.append(mb)

        # old / reference logprobs: one no-grad pass each, only when needed
        with torch.no_grad():
            for mb in mbs:
                if self.ppo_epochs > 1:
                    mb["old_logp"] = self._token_logprobs(self.model, mb)[0]
                if self.ref_model is not None:
                    mb["ref_logp"] = self._token_logprobs(self.ref_model, mb)[0]

        opt, sched = self.optimizers(), self.lr_schedulers()
        stats = {"clipped": 0.0, "kl": 0.0, "entropy": 0.0, "diff": 0.0, "tokens": 0.0, "loss": 0.0}
        for epoch in range(self.ppo_epochs):
            stats["loss"] = 0.0
            for i, mb in enumerate(mbs):
                with micro_batch(self, last=i == len(mbs) - 1):
                    logp, logp_all = self._token_logprobs(self.model, mb)
                    old = mb["old_logp"] if self.ppo_epochs > 1 else logp.detach()
                    terms = losses.clipped_pg_per_token(logp, old, mb["advantages"], self.epsilon_low, self.epsilon_high)
                    per_token = terms.loss
                    if self.ref_model is not None:
                        kl = losses.kl_penalty(logp, mb["ref_logp"], self.kl_estimator)
                        per_token = per_token + self.beta * kl
                    else:  # no reference: report the drift from the rollout policy (0 while μ = 1)
                        kl = losses.kl_penalty(logp.detach(), old, "k3")
                    loss = (mb["weights"] * per_token).sum()
                    # DDP averages gradients over ranks; the weights already normalize over all ranks
                    self.manual_backward(loss * world)
                stats["loss"] += float(loss.detach())
                n = float(logp.numel())
                stats["clipped"] += float(terms.clipped.float().sum())
                if epoch == self.ppo_epochs - 1:
                    stats["kl"] += float(kl.detach().sum())
                if epoch == 0:
                    with torch.no_grad():
                        stats["entropy"] += float(-(logp_all.exp() * logp_all).sum(-1).sum())
                        stats["diff"] += float((logp.detach() - mb["sampler_logp"]).abs().sum())
                    stats["tokens"] += n
            optimizer_step(self, opt, sched, self.grad_clip)
        t3 = time.perf_counter()

        tok = max(stats["tokens"], 1.0)
        lens = [len(t) for t in ro.token_ids]
        # the policy on everything sampled this step (with dynamic sampling: every round, kept or not)
        sampled = [x for part in sampling_stats.get("sampled", [scores]) for x in part]
        values = [x.value for x in sampled]
        sampled_zero_std = losses.zero_std_groups(torch.tensor(values, dtype=torch.float32).view(-1, G))
        metrics = {
            "train/loss": self._global_sum(stats["loss"]),
            "train/lr": sched.get_last_lr()[0],
            "train/reward/mean": _mean(values),
            "train/reward/correct_frac": _mean(x.correct for x in sampled),
            "train/reward/parse_rate": _mean(x.reason in PARSED_REASONS for x in sampled),
            "train/reward/timeouts": float(sum(part.n_timeouts for part in sampling_stats.get("sampled", [scores]))),
            "train/groups_zero_std_frac": _mean(sampled_zero_std.tolist()),
            "train/clip_frac": stats["clipped"] / (tok * self.ppo_epochs),
            "train/kl": stats["kl"] / tok,
            "train/entropy": stats["entropy"] / tok,
            "train/response_len/mean": sum(lens) / len(lens),
            "train/response_len/max": float(max(lens)),
            "train/truncated_frac": float(truncated.float().mean()),
            "train/sequences_trained": n_seq,
            "rollout/tokens_per_s": ro.stats.get("tokens_per_s", 0.0),
            "rollout/logprob_diff": stats["diff"] / tok,
            "time/rollout_s": rollout_s,
            "time/reward_s": reward_s,
            "time/update_s": t3 - t2,
        }
        for k in ("prompts_drawn", "rounds", "kept_groups", "prompts_per_kept_group", "replayed", "replay_size"):
            if k in sampling_stats:
                metrics[f"train/sampling/{k}"] = sampling_stats[k]
        self.log_dict(metrics, prog_bar=False, on_step=True, on_epoch=False, batch_size=1, rank_zero_only=True)
        self.log("reward", metrics["train/reward/mean"], prog_bar=True, on_step=True, batch_size=1, rank_zero_only=True)
        self.last_metrics = metrics
        return torch.tensor(metrics["train/loss"])

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # callbacks (WeightSync) run before this hook, so a vLLM engine already has the new weights
        step = self.global_step // self.ppo_epochs
        due = self.val_generate_every > 0 and (step % self.val_generate_every == 0 or step >= self.max_steps)
        if due:
            from tsm.algorithms.validation import generation_accuracy

            acc = generation_accuracy(self, self.engine, self.reward, self.val_max_new_tokens)
            if acc is not None:
                # straight to the loggers: self.log from this hook keeps re-logging the stale value at
                # every later step; step - 1 is the row of this rollout step's train/* metrics
                for logger in self.loggers:
                    logger.log_metrics({"val/accuracy@1": acc}, step=step - 1)
                self.last_metrics["val/accuracy@1"] = acc
