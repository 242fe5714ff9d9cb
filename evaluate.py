"""Evaluate: ``python evaluate.py checkpoint=<HF folder | .ckpt | hub id | embedded>`` or ``responses=<parquet>``.

``data=ood`` for the out-of-distribution set, ``rollout=vllm`` for vLLM's batching, ``wandb.enabled=false``
for no W&B run (offline by default). All logic lives in ``tsm.evaluation``; see conf/evaluate.yaml.
"""

from __future__ import annotations

import logging
import os

import hydra
from omegaconf import DictConfig

from tsm.validate import exit_on_user_error

os.environ.setdefault("WANDB_MODE", "offline")
log = logging.getLogger("tsm")


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@exit_on_user_error  # a config, path or file mistake: one line on stderr, exit 2, before any work
def main(cfg: DictConfig) -> float:
    from tsm.evaluation import run_evaluation
    from tsm.validate import check_evaluate

    check_evaluate(cfg)
    try:
        metrics = run_evaluation(cfg)
    finally:
        log.info("Output dir: %s", cfg.paths.output_dir)
    return metrics["accuracy@1"]


if __name__ == "__main__":
    main()
