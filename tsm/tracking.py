"""The W&B run of one ``train.py`` job: when it is online, what it is called, and that it always ends.

Conventions:

- Mode: ``WANDB_MODE`` when set; otherwise online when ``WANDB_API_KEY`` is set or a sweep agent
  started the job (``WANDB_SWEEP_ID``), else offline (this machine has no W&B server; ``wandb sync``
  uploads an offline run later). ``offline: true|false`` in ``conf/logger/wandb.yaml`` forces it.
- One W&B run per job: :func:`wandb_run` opens it before the first stage with the resolved config,
  and Lightning's ``WandbLogger`` of every stage logs into that same run. It is finished on the way
  out, with exit code 1 after an exception, so the next job of a multirun (same process with
  Hydra's basic launcher) starts a fresh run instead of writing into a dead one.
- Names: project and group from the logger node (group = the experiment's ``task_name``); the run
  name adds the job's command-line overrides (``tiny_sft model=tiny_5m data.simplicity=0.5``);
  tags name the experiment and the model.
- The test metrics of ``metrics.json`` go to the run summary as ``test/before/<metric>`` and
  ``test/after/<metric>`` (``test/after/accuracy@1`` is what the W&B sweeps optimize).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("tsm")

# overrides that say nothing about the run beyond the group and tags (they pick the composition)
_NAME_SKIP = ("experiment=", "logger=", "hparams_search=", "hydra.", "paths.", "data.output_dir=")
_MAX_NAME = 128


def wandb_mode(offline: bool | None = None) -> str:
    """``"online"`` or ``"offline"`` (or whatever ``WANDB_MODE`` says) for a new W&B run."""
    if offline is not None:
        return "offline" if offline else "online"
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_SWEEP_ID"):
        return "online"
    return "offline"


def run_name(name: str) -> str:
    """``name`` plus the Hydra job's overrides: all of them, or in a multirun the swept ones."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return name
    task = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(_NAME_SKIP)]
    swept = _swept_keys()
    if swept is not None:
        task = [o for o in task if o.lstrip("+~").partition("=")[0] in swept]
    full = " ".join([name, *task])
    return full if len(full) <= _MAX_NAME else full[: _MAX_NAME - 1] + "…"


def _swept_keys() -> set[str] | None:
    """In a multirun job: the keys its sweep varies (``a=1,2`` on the command line, or the sweeper's params)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    keys = set(OmegaConf.select(hc, "sweeper.params", default=None) or {})
    primary = os.path.join(hc.sweep.dir, "multirun.yaml")  # the sweep's own command line
    if os.path.exists(primary):
        overrides = OverridesParser.create().parse_overrides(list(OmegaConf.load(primary).hydra.overrides.task))
        keys |= {o.key_or_group for o in overrides if o.is_sweep_override()}
    return keys


def init_kwargs(node: Mapping[str, Any]) -> dict[str, Any]:
    """``wandb.init`` arguments from a ``conf/logger/wandb.yaml`` node (shared by both openers)."""
    return {
        "project": node["project"],
        "group": node["group"],
        "tags": [str(t) for t in node["tags"]],
        "name": run_name(str(node["name"])),
        "dir": str(node["save_dir"]),
        "mode": wandb_mode(node.get("offline")),
        "job_type": "train",
    }


def wandb_logger(
    project: str,
    name: str,
    group: str,
    tags: Sequence[str],
    save_dir: str,
    offline: bool | None = None,
    log_model: bool | str = False,
):
    """Lightning's ``WandbLogger`` (the ``_target_`` of conf/logger/wandb.yaml).

    Inside ``train.py`` a run is already open (:func:`wandb_run`) and the logger writes into it;
    called on its own (``tsm.pipeline.run`` from a notebook) it opens one with the same names.
    """
    from lightning.pytorch.loggers import WandbLogger

    kwargs = init_kwargs({"project": project, "name": name, "group": group, "tags": tags,
                          "save_dir": save_dir, "offline": offline})
    kwargs.pop("dir")  # WandbLogger takes it as save_dir
    return WandbLogger(save_dir=save_dir, log_model=log_model, **kwargs)


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


@contextmanager
def wandb_run(cfg: DictConfig) -> Iterator[Any | None]:
    """Opens the job's W&B run when ``cfg.logger`` has a ``wandb`` node (rank 0 only); always finishes it.

    Yields the ``wandb`` run, or None when W&B is off. Any run still open on the way out, also one
    that a stage's ``WandbLogger`` opened itself, is finished, with exit code 1 after an exception.
    """
    node = (cfg.get("logger") or {}).get("wandb")
    run = None
    if node is not None and _is_rank_zero():
        import wandb

        if wandb.run is not None:  # left over by a caller: never log into someone else's run
            wandb.finish()
        kwargs = init_kwargs(OmegaConf.to_container(node, resolve=True))
        os.makedirs(kwargs["dir"], exist_ok=True)
        run = wandb.init(config=OmegaConf.to_container(cfg, resolve=True), **kwargs)
        # the same step axis as a WandbLogger that opens its own run
        run.define_metric("trainer/global_step")
        run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        log.info("W&B run %s (%s) in %s", run.name, kwargs["mode"], run.dir)
    failed = True
    try:
        with warnings.catch_warnings():
            # every stage's WandbLogger reuses this run on purpose
            warnings.filterwarnings("ignore", message="There is a wandb run already in progress")
            yield run
        failed = False
    finally:
        finish_wandb(exit_code=1 if failed else 0)


def finish_wandb(exit_code: int = 0) -> None:
    """Finishes the current W&B run, if any (safe to call when wandb is not installed)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def summary_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics.json`` as W&B summary keys: ``test/before/…``, ``test/after/…``, other numbers as is."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key in ("before", "after") and isinstance(value, Mapping):
            out.update({f"test/{key}/{k}": float(v) for k, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def log_summary(run: Any | None, metrics: Mapping[str, Any]) -> None:
    if run is not None:
        run.summary.update(summary_metrics(metrics))
