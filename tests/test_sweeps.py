"""Sweep files: W&B sweeps (sweeps/*.yaml) and their offline twins (conf/hparams_search/*.yaml).

Each W&B file is checked against W&B's sweep-config schema (the ``sweeps`` package when installed,
and always against the structural schema below, written from W&B's documented sweep keys), then
turned into train.py command lines exactly as ``wandb agent`` does (wandb's own argument builder)
and composed with Hydra: every grid point, or a sample of the space for bayes/random.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tests.helpers import CONF_DIR, compose_cfg

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
SEARCHES = sorted((ROOT / "conf" / "hparams_search").glob("*.yaml"))

_NUMBER = {"type": "number"}
_PARAM = {
    "oneOf": [
        {"type": "object", "required": ["value"], "additionalProperties": False,
         "properties": {"value": {}, "distribution": {"const": "constant"}}},
        {"type": "object", "required": ["values"], "additionalProperties": False,
         "properties": {"values": {"type": "array", "minItems": 1}, "distribution": {"const": "categorical"},
                        "probabilities": {"type": "array", "items": {"type": "number", "minimum": 0}}}},
        {"type": "object", "required": ["min", "max"], "additionalProperties": False,
         "properties": {"min": _NUMBER, "max": _NUMBER, "q": {"type": "number", "exclusiveMinimum": 0},
                        "distribution": {"enum": ["uniform", "int_uniform", "q_uniform", "log_uniform",
                                                  "log_uniform_values", "inv_log_uniform",
                                                  "inv_log_uniform_values", "q_log_uniform",
                                                  "q_log_uniform_values"]}}},
        {"type": "object", "required": ["distribution"], "additionalProperties": False,
         "properties": {"distribution": {"enum": ["normal", "log_normal", "q_normal", "q_log_normal"]},
                        "mu": _NUMBER, "sigma": {"type": "number", "minimum": 0}, "q": _NUMBER}},
        {"type": "object", "required": ["parameters"], "additionalProperties": False,
         "properties": {"parameters": {"$ref": "#/definitions/parameters"}}},
    ]
}
# W&B's documented top-level sweep keys and parameter forms (docs: "Sweep configuration options")
SWEEP_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {
        "parameters": {"type": "object", "minProperties": 1,
                       "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_.\-]*$"},
                       "additionalProperties": _PARAM},
    },
    "type": "object",
    "required": ["method", "parameters"],
    "additionalProperties": False,
    "properties": {
        "program": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
        "project": {"type": "string"}, "entity": {"type": "string"},
        "method": {"enum": ["grid", "random", "bayes"]},
        "metric": {"type": "object", "required": ["name"], "additionalProperties": False,
                   "properties": {"name": {"type": "string"}, "goal": {"enum": ["minimize", "maximize"]},
                                  "target": _NUMBER}},
        "parameters": {"$ref": "#/definitions/parameters"},
        "command": {"type": "array", "items": {"type": "string"}},
        "run_cap": {"type": "integer", "exclusiveMinimum": 0},
        "early_terminate": {"type": "object", "required": ["type"],
                            "properties": {"type": {"const": "hyperband"}}},
    },
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # PyYAML, as `wandb sweep` reads the file


def missing_grpo_configs() -> list[str]:
    need = [ROOT / "conf" / "algorithm" / "grpo.yaml", ROOT / "conf" / "experiment" / "tiny_rl.yaml"]
    return [str(p.relative_to(ROOT)) for p in need if not p.exists()]


def skip_without(experiment: str) -> None:
    missing = missing_grpo_configs() if experiment == "tiny_rl" else []
    if missing:
        pytest.skip(f"experiment {experiment} needs {', '.join(missing)} (the GRPO stage is not in yet)")


def agent_argv(sweep: dict[str, Any], point: dict[str, Any]) -> list[str]:
    """The command ``wandb agent`` runs for one parameter point (wandb's own argument builder)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in point.items()}})
    sweep_vars.update(env=["/usr/bin/env"], interpreter=["python"], program=[sweep["program"]])
    argv: list[str] = []
    for chunk in sweep["command"]:
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += sweep_vars[chunk[2:-1]]
        else:
            argv.append(chunk)
    return argv


def sample_points(sweep: dict[str, Any], n_random: int = 3) -> list[dict[str, Any]]:
    """Grid: every point. Otherwise the corners of the space plus a few random draws."""
    params = sweep["parameters"]

    def choices(spec: dict[str, Any], rng: random.Random | None) -> list[Any]:
        if "value" in spec:
            return [spec["value"]]
        if "values" in spec:
            return list(spec["values"]) if rng is None else [rng.choice(spec["values"])]
        lo, hi = spec["min"], spec["max"]
        if rng is None:
            return [lo, hi]
        if spec.get("distribution", "uniform").startswith("log_uniform"):
            return [math.exp(rng.uniform(math.log(lo), math.log(hi)))]
        return [rng.randint(lo, hi) if spec.get("distribution") == "int_uniform" else rng.uniform(lo, hi)]

    keys = list(params)
    if sweep["method"] == "grid":
        return [dict(zip(keys, combo)) for combo in itertools.product(*(choices(params[k], None) for k in keys))]
    corners = [{k: choices(params[k], None)[end] for k in keys} for end in (0, -1)]
    rng = random.Random(0)
    return corners + [{k: choices(params[k], rng)[0] for k in keys} for _ in range(n_random)]


def check_composed(cfg: DictConfig, key: str, value: Any) -> None:
    """The composed config carries ``key=value`` (a group choice names the node it selected)."""
    if key == "experiment":
        assert cfg.task_name == value  # every experiment names its task after itself
        return
    got = OmegaConf.select(cfg, key)
    if isinstance(got, DictConfig):
        assert got.get("name") == value, (key, value)
    elif value == "null":
        assert got is None, (key, got)
    elif isinstance(value, float):
        assert got == pytest.approx(value, rel=1e-6), (key, got, value)
    else:
        assert got == value, (key, got, value)


def test_there_are_sweeps_and_searches():
    assert {p.stem for p in SWEEPS} >= {"size_simplicity", "grpo_hparams"}
    assert {p.stem for p in SWEEPS} == {p.stem for p in SEARCHES}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_file_matches_wandb_schema_and_runs_train_with_hydra_overrides(path):
    from tsm.tracking import summary_metrics

    sweep = load(path)
    jsonschema.validate(sweep, SWEEP_SCHEMA)
    try:  # W&B's own validator (pip install wandb[sweeps]), when present
        from sweeps import schema_violations_from_proposed_config
    except ImportError:  # (this repository's sweeps/ folder is no such package)
        pass
    else:
        assert schema_violations_from_proposed_config(sweep) == []
    assert sweep["program"] == "train.py" and (ROOT / sweep["program"]).exists()
    # the parameters arrive as Hydra overrides: no --flags, program run by the interpreter
    assert "${args_no_hyphens}" in sweep["command"] and "${args}" not in sweep["command"]
    assert sweep["command"][:3] == ["${env}", "${interpreter}", "${program}"]
    # W&B would pass a YAML null as the string "None"; Hydra's null must be spelt "null"
    for key, spec in sweep["parameters"].items():
        values = spec.get("values", [spec.get("value", "")])
        assert None not in values, f"{path.name}: {key} has a YAML null; write \"null\""
    # the metric is one that train.py puts in the W&B run summary
    assert sweep["metric"]["name"] in summary_metrics({"after": {"accuracy@1": 0.5}})
    assert sweep["metric"]["goal"] == "maximize"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_points_compose_as_hydra_overrides(path, tmp_path):
    sweep = load(path)
    skip_without(sweep["parameters"]["experiment"]["value"])
    points = sample_points(sweep)
    if sweep["method"] == "grid":
        assert len(points) == math.prod(len(s.get("values", [0])) for s in sweep["parameters"].values())
    for point in points:
        argv = agent_argv(sweep, point)
        assert argv[:3] == ["/usr/bin/env", "python", "train.py"]
        overrides = argv[3:]
        assert all(not o.startswith("-") for o in overrides)
        cfg = compose_cfg("train", overrides, tmp_path)
        for key, value in point.items():
            check_composed(cfg, key, value)
        assert "wandb" in cfg.logger  # the sweep's runs report to W&B
        instantiate(cfg.model)  # the model node builds (a ModelSpec: no weights)


def compose_search(name: str, overrides: list[str] = ()) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[f"hparams_search={name}", *overrides], return_hydra_config=True)


def search_space(cfg: DictConfig) -> dict[str, Any]:
    """hydra.sweeper.params parsed as Hydra overrides: key -> list of choices or (low, high, log)."""
    parser = OverridesParser.create()
    space = {}
    for key, text in cfg.hydra.sweeper.params.items():
        override = parser.parse_override(f"{key}={text}")
        value = override.value()
        if isinstance(value, ChoiceSweep):
            space[key] = list(value.list)
        elif isinstance(value, IntervalSweep):  # maybe tag(log, ...)
            space[key] = (value.start, value.end, "log" in value.tags)
        else:  # a fixed value
            space[key] = value
    return space


@pytest.mark.parametrize("path", SEARCHES, ids=lambda p: p.stem)
def test_hparams_search_is_the_wandb_sweep_offline(path, tmp_path):
    text = path.read_text().splitlines()
    assert text[0] == "# @package _global_" and text[1] == f"# python train.py -m hparams_search={path.stem}"
    experiment = yaml.safe_load(path.read_text())["defaults"][0]["override /experiment"]
    skip_without(experiment)
    cfg = compose_search(path.stem)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("optuna_sweeper.OptunaSweeper")
    assert sweeper.direction == "maximize" and sweeper.n_trials >= 1 and sweeper.n_jobs >= 1
    assert cfg.task_name == experiment
    space = search_space(cfg)
    wandb_sweep = load(ROOT / "sweeps" / path.name)
    assert wandb_sweep["parameters"]["experiment"]["value"] == experiment
    wb = {k: v for k, v in wandb_sweep["parameters"].items() if k != "experiment"}
    assert set(space) == set(wb), "the offline search and the W&B sweep search the same keys"
    for key, spec in wb.items():
        if "value" in spec:
            assert space[key] == spec["value"], key
        elif "values" in spec:
            assert space[key] == spec["values"], key
        else:
            low, high, log = space[key]
            assert (low, high) == pytest.approx((spec["min"], spec["max"])), key
            assert log == spec["distribution"].startswith("log"), key
    if sweeper.sampler._target_.endswith("GridSampler"):
        assert sweeper.n_trials >= math.prod(len(v) for v in space.values() if isinstance(v, list))  # whole grid
    # compose the search's corners: the lowest and highest choice of every key
    for end in (0, -1):
        corner = {k: v[end] if isinstance(v, list) else v[:2][end] if isinstance(v, tuple) else v
                  for k, v in space.items()}
        overrides = [f"hparams_search={path.stem}", *(f"{k}={v}" for k, v in corner.items())]
        job = compose_cfg("train", overrides, tmp_path)
        for key, value in corner.items():
            check_composed(job, key, value)


@pytest.mark.parametrize("mutate", [
    lambda s: s.update(method="gridsearch"),
    # PyYAML reads 1e-6 (no dot) as a string
    lambda s: s["parameters"].update(lr={"distribution": "log_uniform_values", "min": "1e-6", "max": 1.0}),
    lambda s: s["parameters"].update(lr={"vals": [1, 2]}),
    lambda s: s.update(metric={"name": "x", "goal": "up"}),
    lambda s: s.update(commands=["${args_no_hyphens}"]),
], ids=["method", "string-bound", "unknown-key", "goal", "top-level-key"])
def test_schema_rejects_broken_sweeps(mutate):
    sweep = load(ROOT / "sweeps" / "size_simplicity.yaml")
    mutate(sweep)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sweep, SWEEP_SCHEMA)
