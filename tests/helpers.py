"""Composing the real Hydra config for tests: tiny models, tiny data, tmp outputs."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# A run that takes seconds: 1M-parameter model, 256 training rows, 4 steps.
TINY_RUN = [
    "experiment=tiny_sft",
    "model=tiny_1m",
    "logger=csv",
    "data.n_train=256",
    "data.n_test=32",
    "data.workers=0",
    "sft.max_steps=4",
    "sft.val_check_interval=2",
    "sft.module.warmup_steps=1",
    "sft.module.val_max_new_tokens=24",
    "sft.data_module.batch_size=16",
    "sft.data_module.micro_batch_size=8",
    "sft.data_module.n_val=16",
    "sft.data_module.n_val_generate=8",
    "evaluate.n_rows=8",
    "evaluate.max_new_tokens=24",
    "reward.workers=0",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


def compose_cfg(config_name: str, overrides: list[str], tmp_path: Path | None = None) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    if tmp_path is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            if "data" in cfg and "output_dir" in cfg.data:
                cfg.data.output_dir = str(tmp_path / "data")
    return cfg


def load_script(path: Path, name: str | None = None):
    """An experiment script (not a package module) imported as a module, for its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name or Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
