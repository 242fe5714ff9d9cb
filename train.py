"""Train: ``python train.py experiment=quickstart`` (see conf/train.yaml). All logic lives in tsm/.

Returns the test Accuracy@1 after training: the objective of ``-m hparams_search=...`` (Optuna).
Whatever happens, the job's W&B run is finished and its output folder printed, so one failed
multirun job does not break the next.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

log = logging.getLogger("tsm")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from tsm.pipeline import run
    from tsm.tracking import log_summary, wandb_run

    try:
        with wandb_run(cfg) as wb:
            metrics = run(cfg)
            log_summary(wb, metrics)
    finally:
        log.info("Output dir: %s", cfg.paths.output_dir)
    return (metrics.get("after") or {}).get("accuracy@1")  # what sweeps optimize


if __name__ == "__main__":
    main()
