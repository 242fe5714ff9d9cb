"""Train: ``python train.py experiment=quickstart`` (see conf/train.yaml). All logic lives in tsm/.

Returns the test Accuracy@1 after training: the objective of ``-m hparams_search=...`` (Optuna).
The config is checked first (``tsm.validate``): a user error is one line and exit status 2.
Whatever happens, the job's W&B run is finished and its output folder printed, so one failed
multirun job does not break the next.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from tsm.validate import exit_on_user_error

log = logging.getLogger("tsm")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error  # a config or path mistake: one line on stderr, exit 2, before any work
def main(cfg: DictConfig) -> float | None:
    from tsm.pipeline import run
    from tsm.tracking import log_summary, wandb_run
    from tsm.validate import check_train

    check_train(cfg)
    try:
        with wandb_run(cfg) as wb:
            metrics = run(cfg)
            log_summary(wb, metrics)
    finally:
        log.info("Output dir: %s", cfg.paths.output_dir)
    return (metrics.get("after") or {}).get("accuracy@1")  # what sweeps optimize


if __name__ == "__main__":
    main()
