"""The reward: boxed-answer extraction, a sound derivative check, and batch scoring in a pool.

``score(response, ground_truth) -> Score`` (value, correct, reason); ``RewardScorer`` /
``score_batch`` for lists with a worker pool and per-item timeouts. See ``scoring`` for reasons.
"""
from tsm.reward.batch import BatchScores, RewardScorer, score_batch
from tsm.reward.extract import Extraction, extract_boxed
from tsm.reward.scoring import REASONS, RewardConfig, Score, score

__all__ = ["REASONS", "BatchScores", "Extraction", "RewardConfig", "RewardScorer", "Score",
           "extract_boxed", "score", "score_batch"]
