"""Rollout engines: token ids in, sampled completions with per-token logprobs out.

- `tsm.rollout.base`: `SamplingParams`, `Rollouts`, the `RolloutEngine` protocol.
- `tsm.rollout.hf`: `HFEngine`, sampling from the live policy (``conf/rollout/hf.yaml``).
- `tsm.rollout.vllm`: `VLLMEngine`, a colocated vLLM engine (``conf/rollout/vllm.yaml``; vllm is
  imported only when one is built).
- `tsm.rollout.sync`: `WeightSync`, the Lightning callback that pushes the policy into an engine
  after every optimizer step (imported from there: it needs Lightning).

Every engine is a context manager with ``close()`` and says whether it samples from the policy's
own parameters (``shares_policy_weights``: True for HF, so syncing is a no-op; False for vLLM).
"""

from tsm.rollout.base import RolloutEngine, Rollouts, SamplingParams
from tsm.rollout.hf import HFEngine
from tsm.rollout.vllm import VLLMEngine

__all__ = ["HFEngine", "RolloutEngine", "Rollouts", "SamplingParams", "VLLMEngine"]
