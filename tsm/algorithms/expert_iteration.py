"""Expert iteration (ReST-EM, arXiv 2312.06585) as a stage: sample, keep what the verifier accepts, fine-tune.

Each of ``rounds`` rounds (``conf/algorithm/expert_iteration.yaml``, placed at ``ei``):

1. **sample**: ``prompts_per_round`` fresh prompts (``prompts``: a
   :class:`tsm.data.prompts.FreshPromptDataModule`; round ``r`` draws the prompts of its step ``r``,
   so the test splits are excluded and a rerun draws the same), ``samples_per_prompt`` responses
   each from the current policy (HF engine, ``sampling``);
2. **verify**: the run's reward scores them; a prompt is kept when its pass rate (share of correct
   samples) lies in ``[min_pass_rate, max_pass_rate]`` and at least one sample is correct: with
   ``max_pass_rate < 1`` only the prompts the policy does not always solve, the hard ones;
3. **keep**: up to ``keep_per_prompt`` distinct correct responses per kept prompt, shortest first
   (the simplest correct form), written to ``<stage>/round<r>/samples.parquet`` (a responses
   parquet: the builder's row layout plus ``responses``/``scores``);
4. **fine-tune**: the SFT stage (``sft``, the same knobs as the ``sft`` stage) on that parquet with
   ``sft_target=responses``, in ``<stage>/round<r>/sft/``; the next round samples from the result.

No new trainer: step 4 is :func:`tsm.pipeline.run_sft_stage` (the loop is ``tsm.pipeline.run_ei_stage``). A round whose SFT export exists is
not redone, so a rerun of a killed stage continues at the first unfinished round (a round killed
mid-SFT restarts that round). ``<stage>/rounds.json`` records each round's pass rate, kept
prompts and times; ``<stage>/hf`` points at the last round's export.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("tsm")


def select_responses(texts: list[str], n_tokens: list[int], correct: list[bool], min_pass_rate: float,
                     max_pass_rate: float, keep: int) -> tuple[list[str], float]:
    """One prompt's samples -> (the responses to train on, its pass rate).

    Nothing when no sample is correct or the pass rate is outside the band; else up to ``keep``
    distinct correct responses, fewest tokens first (ties: first sampled).
    """
    rate = sum(correct) / max(1, len(correct))
    if not any(correct) or not min_pass_rate - 1e-9 <= rate <= max_pass_rate + 1e-9:
        return [], rate
    out: list[str] = []
    for i in sorted((i for i, c in enumerate(correct) if c), key=lambda i: (n_tokens[i], i)):
        if texts[i] not in out:
            out.append(texts[i])
        if len(out) == keep:
            break
    return out, rate


def sample_round(stage_cfg: DictConfig, prompt_source, model, tokenizer, reward, round_: int,
                 precision: Any = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Step 1-3 of a round: the rows to fine-tune on and the round's statistics."""
    from tsm.data.prompts import _FreshDraw
    from tsm.rollout.base import SamplingParams
    from tsm.rollout.hf import HFEngine, autocast_dtype_for

    t0 = time.perf_counter()
    prompts = _FreshDraw(prompt_source, round_, 0, 1)(int(stage_cfg.prompts_per_round))
    k = int(stage_cfg.samples_per_prompt)
    sampling = SamplingParams(**OmegaConf.to_container(stage_cfg.sampling, resolve=True),
                              seed=int(stage_cfg.seed) * 1009 + round_)
    engine = HFEngine(model, tokenizer, batch_size=int(stage_cfg.generation_batch_size),
                      autocast_dtype=autocast_dtype_for(precision))
    ro = engine.generate([p.token_ids for p in prompts], k, sampling)  # restores the model's train/eval mode
    t1 = time.perf_counter()
    scores = reward(ro.texts, [prompts[i].ground_truth for i in ro.prompt_index])
    t2 = time.perf_counter()
    rows, rates, n_responses = [], [], 0
    for i, p in enumerate(prompts):
        ks = range(i * k, (i + 1) * k)
        kept, rate = select_responses([ro.texts[j] for j in ks], [len(ro.token_ids[j]) for j in ks],
                                      [scores[j].correct for j in ks], float(stage_cfg.min_pass_rate),
                                      float(stage_cfg.max_pass_rate), int(stage_cfg.keep_per_prompt))
        rates.append(rate)
        if kept:
            rows.append({**p.row, "responses": kept, "scores": [1.0] * len(kept)})
            n_responses += len(kept)
    stats = {
        "round": round_, "prompts": len(prompts), "samples": len(ro),
        "pass_rate/mean": sum(rates) / len(rates),
        "prompts_all_correct": sum(r == 1.0 for r in rates) / len(rates),
        "prompts_none_correct": sum(r == 0.0 for r in rates) / len(rates),
        "prompts_kept": len(rows), "responses_kept": n_responses,
        "sample_seconds": t1 - t0, "reward_seconds": t2 - t1,
    }
    return rows, stats


__all__ = ["sample_round", "select_responses"]
