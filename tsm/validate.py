"""Checks a composed config before any work, so a user error costs one line and seconds, not a
traceback after a dataset build or a "before" evaluation.

``check_train(cfg)`` and ``check_evaluate(cfg)`` raise ``UserError`` (a ``ValueError``) naming the
key, the value and what would be accepted; ``train.py`` / ``evaluate.py`` print it as one line
(``error: ...``) and exit with status 2. Every problem found is reported, not only the first.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["UserError", "check_evaluate", "check_train", "exit_on_user_error"]


class UserError(ValueError):
    """A mistake in the user's config, paths or files: shown as one line, without a traceback."""


def _get(cfg: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(cfg, key, default=default)


def _positive(problems: list[str], cfg: DictConfig, key: str, *, integer: bool = False,
              zero_ok: bool = False, why: str = "") -> None:
    value = _get(cfg, key)
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if zero_ok else value > 0) and (not integer or float(value).is_integer())
    if not ok:
        want = ("an integer " if integer else "a number ") + (">= 0" if zero_ok else "> 0")
        problems.append(f"{key}={value!r}: must be {want}{why}")


def _writable(problems: list[str], key: str, folder: str | None) -> None:
    if not folder:
        return
    path = Path(str(folder)).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".tsm-write-probe.tmp-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        problems.append(f"{key}={folder}: not a writable folder ({exc.strerror or exc})")


def _data_spec(problems: list[str], cfg: DictConfig, key: str = "data") -> None:
    from hydra.utils import instantiate

    node = _get(cfg, key)
    if node is None:
        return
    try:
        instantiate(node)
    except Exception as exc:  # noqa: BLE001 - the spec's own message, without Hydra's wrapping
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        problems.append(f"{key}: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__}")
        return
    _writable(problems, f"{key}.output_dir", _get(cfg, f"{key}.output_dir"))


def _model_source(problems: list[str], key: str, value: str | None) -> None:
    from tsm.models.loading import _HUB_ID, EMBEDDED_NAMES, shipped_model

    if not value:
        return
    value = str(value)
    if value in EMBEDDED_NAMES or Path(value).expanduser().is_dir() or shipped_model(value) is not None:
        return
    if value.endswith(".ckpt"):
        if not Path(value).is_file():
            problems.append(f"{key}={value}: no such .ckpt file")
        return
    if _HUB_ID.fullmatch(value) and not Path(value).expanduser().exists() and not value.startswith((".", "/", "~")):
        return  # a hub id: its availability is checked (offline-aware) when it is loaded
    from tsm.models.loading import SHIPPED_MODELS_DIR

    shipped = sorted(p.name for p in SHIPPED_MODELS_DIR.iterdir() if (p / "config.json").is_file()) \
        if SHIPPED_MODELS_DIR.is_dir() else []
    problems.append(f"{key}={value}: no such folder, shipped model ({', '.join(shipped) or 'none'}), "
                    f"'embedded' or hub id")


def _grow(problems: list[str], grow, init_from) -> None:
    if grow is None:
        return
    mapping = isinstance(grow, (dict, DictConfig))
    n = grow.get("num_layers") if mapping else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or (mapping and set(grow) - {"num_layers"}):
        problems.append(f"grow={OmegaConf.to_container(grow) if isinstance(grow, DictConfig) else grow!r}: "
                        f"must be {{num_layers: <int>}} (the depth to grow init_from's model to)")
    elif not init_from:
        problems.append("grow needs init_from: it deepens a trained model (a random one gains nothing from it)")
    else:  # a local or shipped model's depth is known without loading it
        from tsm.models.loading import shipped_model

        folder = Path(str(init_from)).expanduser()
        config = (folder if folder.is_dir() else shipped_model(str(init_from)) or folder) / "config.json"
        layers = json.loads(config.read_text()).get("num_hidden_layers") if config.is_file() else None
        if isinstance(layers, int) and n < layers:
            problems.append(f"grow.num_layers={n}: fewer than {init_from}'s {layers} layers (grow only adds layers)")


def _raise(problems: list[str]) -> None:
    if problems:
        raise UserError("; ".join(problems))


def _task_choice(problems: list[str], cfg: DictConfig) -> None:
    """``task=<name>`` picked a task whose data an experiment then replaced with another task's."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choice = HydraConfig.get().runtime.choices.get("task")
    except (ValueError, AttributeError):  # composed outside hydra.main (tests, notebooks)
        return
    data_task = _get(cfg, "data.task", "differentiation")
    if choice and choice != "differentiation" and choice != data_task:
        problems.append(f"task={choice} but data.task={data_task!r}: the experiment's data config is "
                        f"for another task; add data={choice} (or an experiment made for {choice})")


def check_train(cfg: DictConfig) -> None:
    """Everything train.py can check before it builds data or loads a model."""
    from tsm.pipeline import STAGE_RUNNERS, resolve_ckpt_path

    problems: list[str] = []
    stages = list(_get(cfg, "stages", []) or [])
    unknown = [s for s in stages if s not in STAGE_RUNNERS]
    if not stages or unknown:
        problems.append(f"stages={stages}: each must be one of {sorted(STAGE_RUNNERS)}")
    if "ei" in stages:  # expert iteration: its own knobs, then the SFT each round runs (ei.sft)
        for knob in ("rounds", "prompts_per_round", "samples_per_prompt", "keep_per_prompt", "generation_batch_size"):
            _positive(problems, cfg, f"ei.{knob}", integer=True)
        lo, hi = _get(cfg, "ei.min_pass_rate"), _get(cfg, "ei.max_pass_rate")
        if not (isinstance(lo, int | float) and isinstance(hi, int | float) and 0 <= lo <= hi <= 1):
            problems.append(f"ei.min_pass_rate={lo!r}, ei.max_pass_rate={hi!r}: need 0 <= min <= max <= 1")
    for stage in (s for s in stages if s in STAGE_RUNNERS):
        stage = "ei.sft" if stage == "ei" else stage
        _positive(problems, cfg, f"{stage}.max_steps", integer=True)
        _positive(problems, cfg, f"{stage}.save_every_n_steps", integer=True, zero_ok=True)
        _positive(problems, cfg, f"{stage}.module.optimizer.lr")
        _positive(problems, cfg, f"{stage}.module.optimizer.weight_decay", zero_ok=True)
        _positive(problems, cfg, f"{stage}.module.warmup_steps", integer=True, zero_ok=True)
        _positive(problems, cfg, f"{stage}.data_module.batch_size", integer=True)
        _positive(problems, cfg, f"{stage}.data_module.micro_batch_size", integer=True)
        bs, mbs = _get(cfg, f"{stage}.data_module.batch_size"), _get(cfg, f"{stage}.data_module.micro_batch_size")
        if isinstance(bs, int) and isinstance(mbs, int) and bs > 0 and mbs > 0 and bs % mbs:
            problems.append(f"{stage}.data_module.batch_size={bs}: must be a multiple of micro_batch_size={mbs}")
    if "grpo" in stages:
        g = _get(cfg, "grpo.module.group_size")
        if not isinstance(g, int) or g < 2:
            problems.append(f"grpo.module.group_size={g!r}: must be an integer >= 2 (advantages are relative "
                            f"to the group: one sample per prompt gives no learning signal)")
        _positive(problems, cfg, "grpo.module.sampling.temperature", why=" (GRPO samples)")
    _positive(problems, cfg, "evaluate.n_rows", integer=True)
    _positive(problems, cfg, "evaluate.max_new_tokens", integer=True)
    _model_source(problems, "init_from", _get(cfg, "init_from"))
    _grow(problems, _get(cfg, "grow"), _get(cfg, "init_from"))
    if _get(cfg, "ckpt_path"):
        try:
            resolve_ckpt_path(cfg)
        except FileNotFoundError as exc:
            problems.append(str(exc))
    out = _get(cfg, "paths.output_dir")
    if out and (Path(out) / "metrics.json").exists():
        problems.append(f"run folder {out} already holds a finished run; nothing is overwritten: choose another "
                        f"hydra.run.dir, or resume with ckpt_path={out}")
    elif out and any(Path(out).glob("*/checkpoints/*.ckpt")):
        problems.append(f"run folder {out} already holds checkpoints; nothing is overwritten: resume them with "
                        f"ckpt_path={out} (a new run folder) or choose another hydra.run.dir")
    if not problems:
        _data_spec(problems, cfg, "data")
        if _get(cfg, "evaluate.data") is not None:
            _data_spec(problems, cfg, "evaluate.data")
            tasks = (_get(cfg, "data.task", "differentiation"), _get(cfg, "evaluate.data.task", "differentiation"))
            if tasks[0] != tasks[1]:
                problems.append(f"evaluate.data.task={tasks[1]!r} but data.task={tasks[0]!r}: a run is "
                                "tested on its own task (the reward follows data.task)")
        _task_choice(problems, cfg)
        reward_task = _get(cfg, "reward.task", "differentiation")
        if reward_task != _get(cfg, "data.task", "differentiation"):
            problems.append(f"reward.task={reward_task!r} but data.task={_get(cfg, 'data.task')!r}: "
                            "the reward must judge the data's task (leave reward.task to follow data.task)")
    _raise(problems)


def check_evaluate(cfg: DictConfig) -> None:
    """Everything evaluate.py can check before it builds data or loads a model."""
    problems: list[str] = []
    responses = _get(cfg, "responses")
    if responses:
        _responses_file(problems, str(responses))
    else:
        _model_source(problems, "checkpoint", _get(cfg, "checkpoint"))
        _positive(problems, cfg, "sampling.max_new_tokens", integer=True)
        _positive(problems, cfg, "sampling.temperature", zero_ok=True)
        _positive(problems, cfg, "n_samples", integer=True)
    _positive(problems, cfg, "n_rows", integer=True)
    if not problems and not responses:
        _data_spec(problems, cfg, "data")
        if not _get(cfg, "data_path"):
            _task_choice(problems, cfg)
    _raise(problems)


def _responses_file(problems: list[str], path: str) -> None:
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        problems.append(f"responses={path}: no such file")
        return
    try:
        names = set(pq.read_schema(path).names)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        problems.append(f"responses={path}: not a readable parquet file ({type(exc).__name__}: {str(exc)[:120]})")
        return
    missing = sorted({"prompt", "responses", "reward_model"} - names)
    if missing:
        problems.append(f"responses={path}: missing column(s) {missing} (write it with evaluate.py, or "
                        f"give each row prompt, responses (a list) and reward_model.ground_truth)")


def exit_on_user_error(main: Callable[[], Any]) -> Callable[[], Any]:
    """Entry-point wrapper: a ``UserError`` anywhere becomes ``error: <message>`` on stderr, exit 2."""
    import functools
    import sys

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper
