"""Expert iteration as a stage: the response selection, rounds that sample, keep and fine-tune,
the records, and a rerun that continues at the first unfinished round."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import open_dict

from tests.helpers import TINY_RUN, compose_cfg
from tests.test_train import params
from tsm.algorithms.expert_iteration import select_responses
from tsm.reward.batch import BatchScores
from tsm.reward.scoring import Score


def test_select_responses_keeps_the_shortest_distinct_correct_in_the_band():
    texts = ["aaaa", "bb", "cc", "bb", "d"]
    toks = [4, 2, 2, 2, 1]
    correct = [True, True, True, True, False]
    assert select_responses(texts, toks, correct, 0.0, 1.0, 2) == (["bb", "cc"], 0.8)
    assert select_responses(texts, toks, correct, 0.0, 1.0, 5) == (["bb", "cc", "aaaa"], 0.8)
    assert select_responses(texts, toks, correct, 0.0, 0.75, 1) == ([], 0.8)  # too easy for the band
    assert select_responses(texts, toks, [False] * 5, 0.0, 1.0, 1) == ([], 0.0)  # nothing verified
    assert select_responses(texts, toks, correct, 0.9, 1.0, 1) == ([], 0.8)


class EvenLength:
    """A stand-in verifier a random tiny model can satisfy: a response is correct when its text
    has an even number of characters."""

    def __init__(self, **_):
        pass

    def __call__(self, texts, gts):
        return BatchScores([Score(1.0, True, "correct") if len(t) % 2 == 0 else Score(0.0, False, "wrong")
                            for t in texts], 0, 0)


EI = [
    "stages=[ei]",
    "evaluate.before=false",
    "evaluate.after=false",
    "ei.rounds=2",
    "ei.prompts_per_round=12",
    "ei.samples_per_prompt=4",
    "ei.max_pass_rate=0.75",
    "ei.sampling.max_new_tokens=12",
    "ei.generation_batch_size=16",
    "ei.sft.max_steps=2",
    "ei.sft.val_check_interval=2",
    "ei.sft.module.warmup_steps=1",
    "ei.sft.module.val_max_new_tokens=8",
    "ei.sft.module.optimizer.lr=1e-2",
    "ei.sft.data_module.batch_size=4",
    "ei.sft.data_module.micro_batch_size=4",
    "ei.sft.data_module.n_val=8",
    "ei.sft.data_module.n_val_generate=4",
]


def ei_cfg(tmp_path: Path, data_dir: Path, *extra: str):
    cfg = compose_cfg("train", [*TINY_RUN, *EI, *extra], tmp_path)
    with open_dict(cfg):
        cfg.data.output_dir = str(data_dir)
        cfg.reward = {"_target_": "tests.test_expert_iteration.EvenLength"}
    return cfg


def test_rounds_sample_keep_finetune_and_a_rerun_continues(tmp_path):
    import pyarrow.parquet as pq

    from tsm.models import load_checkpoint
    from tsm.pipeline import load_policy, run

    cfg = ei_cfg(tmp_path / "run", tmp_path / "data")
    start, _ = load_policy(cfg)  # seeded: the same random init the run starts from
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    rounds = json.loads((out / "ei" / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1]
    for r in rounds:
        assert r["prompts"] == 12 and r["samples"] == 48
        assert 4 <= r["prompts_kept"] <= 12 and r["responses_kept"] == r["prompts_kept"]
        table = pq.read_table(out / "ei" / f"round{r['round']}" / "samples.parquet").to_pylist()
        assert len(table) == r["prompts_kept"]
        for row in table:  # one verified response each, in the builder's row layout
            assert len(row["responses"]) == 1 and len(row["responses"][0]) % 2 == 0
            assert row["reward_model"]["ground_truth"] and row["prompt"][-1]["role"] == "user"
    assert (out / "ei" / "round1" / "sft" / "hf" / "config.json").exists()
    assert (out / "ei" / "hf").resolve() == (out / "ei" / "round1" / "sft" / "hf").resolve()
    assert metrics["ei/hf"] == str(out / "ei" / "hf")
    trained, _ = load_checkpoint(str(out / "ei" / "hf"))
    assert not torch.allclose(params(start), params(trained))
    # rerun in the same folder: both rounds are done, so it loads the last round's weights and stops
    first = (out / "ei" / "round0" / "samples.parquet").stat().st_mtime_ns
    run(cfg)
    assert (out / "ei" / "round0" / "samples.parquet").stat().st_mtime_ns == first
    again, _ = load_checkpoint(str(out / "ei" / "hf"))
    assert torch.equal(params(trained), params(again))


def test_a_band_that_keeps_nothing_fails_clearly(tmp_path):
    import pytest

    from tsm.pipeline import run

    # pass rate <= 0 with a correct sample is impossible: every round keeps nothing
    cfg = ei_cfg(tmp_path / "run", tmp_path / "data", "ei.max_pass_rate=0.0", "ei.rounds=1")
    with pytest.raises(RuntimeError, match="no round kept a prompt"):
        run(cfg)
    rounds = json.loads((Path(cfg.paths.output_dir) / "ei" / "rounds.json").read_text())
    assert rounds[0]["prompts_kept"] == 0 and rounds[0]["pass_rate/mean"] > 0
