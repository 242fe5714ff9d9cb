from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from tsm.reward import RewardScorer, score, score_batch

RESPONSES = [r"\boxed{2x}", r"\boxed{3x}", "nothing", r"\boxed{2x"]
GOLDS = ["2*x"] * 4


def test_inline_batch_keeps_order_and_matches_score():
    out = score_batch(RESPONSES, GOLDS, workers=0)
    assert [s.reason for s in out.scores] == ["correct", "wrong", "no_box", "unbalanced"]
    assert out.scores == [score(r, g) for r, g in zip(RESPONSES, GOLDS)]
    assert out.values == [1.0, 0.1, 0.0, 0.0] and out.n_timeouts == 0 and out.correct_frac == 0.25


def test_pool_batch_matches_inline_and_counts_timeouts():
    with RewardScorer(workers=2, timeout_s=5.0) as scorer:
        out = scorer(RESPONSES * 3, GOLDS * 3)
        assert [s.reason for s in out.scores] == ["correct", "wrong", "no_box", "unbalanced"] * 3
    # A limit far below one item's cost: every item times out, is counted, and scores 0.
    big = r"\boxed{" + " + ".join(f"\\sin({k}x)" for k in range(60)) + "}"
    with RewardScorer(workers=1, timeout_s=1e-4) as scorer:
        out = scorer([big, big], ["cos(x)", "sin(x)"])
        assert [s.reason for s in out.scores] == ["timeout", "timeout"]
        assert out.n_timeouts == 2 and scorer.n_timeouts == 2 and out.values == [0.0, 0.0]


def hanging_score_item(item):
    """score_item, but an answer of \\boxed{HANG} never returns (a stand-in for a parser hang)."""
    import time

    from tsm.reward.batch import score_item
    if item[0] == r"\boxed{HANG}":
        time.sleep(600)
    return score_item(item)


class _HangingScorer(RewardScorer):
    @property
    def pool(self):
        from tsm.parallel import TimeoutPool
        if self._pool is None:
            self._pool = TimeoutPool(f"{__name__}:hanging_score_item", self.workers, self.timeout_s)
        return self._pool


def test_one_hung_answer_in_64_costs_one_score_with_the_shipped_chunk_size():
    cfg = OmegaConf.load(Path(__file__).parents[2] / "conf" / "reward" / "default.yaml")
    assert cfg.chunk_size > 1  # the shipped setting is the one under test
    responses = [r"\boxed{2x}"] * 64
    responses[13] = r"\boxed{HANG}"
    with _HangingScorer(workers=2, timeout_s=1.0, chunk_size=cfg.chunk_size) as scorer:
        out = scorer(responses, ["2*x"] * 64)
    reasons = [s.reason for s in out.scores]
    assert reasons[13] == "timeout" and reasons.count("correct") == 63 and out.n_timeouts == 1


def test_scorer_pickles_without_its_pool():
    import pickle

    with RewardScorer(workers=1, timeout_s=5.0) as scorer:
        assert scorer([r"\boxed{2x}"], ["2*x"]).values == [1.0]
        clone = pickle.loads(pickle.dumps(scorer))
        assert clone._pool is None and clone.config == scorer.config
        assert clone([r"\boxed{3x}"], ["2*x"]).values == [0.1]
        clone.close()


def test_shipped_config_instantiates_with_every_key_used():
    cfg = OmegaConf.load(Path(__file__).parents[2] / "conf" / "reward" / "default.yaml")
    cfg.workers = 0
    scorer = instantiate(cfg)
    try:
        assert isinstance(scorer, RewardScorer)
        assert scorer.config.format_score == cfg.format_score
        assert scorer.chunk_size == cfg.chunk_size
        assert scorer([r"\boxed{2x}"], ["2*x"]).values == [cfg.correct_score]
    finally:
        scorer.close()
