"""Evaluate: ``python evaluate.py checkpoint=<HF folder | .ckpt | hub id | embedded>`` or ``responses=<parquet>``.

A checkpoint inside a train.py run folder is scored on that run's own test split unless ``data=``
is given; ``data=ood`` for the out-of-distribution set, ``rollout=vllm`` for vLLM's batching, ``wandb.enabled=false``
for no W&B run (offline by default). All logic lives in ``tsm.evaluation_cli`` (over the core ``tsm.evaluation``); see conf/evaluate.yaml.
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
    from hydra.core.hydra_config import HydraConfig

    from tsm.evaluation_cli import adopt_run_data, run_evaluation
    from tsm.validate import check_evaluate

    run = adopt_run_data(cfg, HydraConfig.get().overrides.task)
    if run is not None:
        log.info("Scoring on the run's own test split (data from %s/config.yaml; data=... to choose another)", run)
    check_evaluate(cfg)
    try:
        metrics = run_evaluation(cfg)
    finally:
        log.info("Output dir: %s", cfg.paths.output_dir)
    return metrics["accuracy@1"]


if __name__ == "__main__":
    main()
