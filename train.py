"""Train: ``python train.py experiment=quickstart`` (see conf/train.yaml). All logic lives in tsm/."""

from __future__ import annotations

import logging
import os

import hydra
from omegaconf import DictConfig

os.environ.setdefault("WANDB_MODE", "offline")  # no W&B server here; `wandb sync` later
log = logging.getLogger("tsm")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from tsm.pipeline import run

    try:
        metrics = run(cfg)
    finally:
        # one failed multirun job must not leave a W&B run open for the next
        try:
            import wandb

            if wandb.run is not None:
                wandb.finish()
        except ImportError:
            pass
        log.info("Output dir: %s", cfg.paths.output_dir)
    after = metrics.get("after") or {}
    return after.get("accuracy@1")  # what sweeps optimize


if __name__ == "__main__":
    main()
