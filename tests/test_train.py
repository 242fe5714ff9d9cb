"""train.py end to end on a tiny model: run folder, HF export, exact resume, DDP, every experiment composes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from tests.helpers import TINY_RUN, compose_cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")  # the dataset is built once and reused by every run here


def tiny_cfg(tmp_path: Path, data_dir: Path, *extra: str):
    cfg = compose_cfg("train", [*TINY_RUN, *extra], tmp_path)
    with open_dict(cfg):
        cfg.data.output_dir = str(data_dir)
    return cfg


def csv_metrics(run_dir: Path, stage: str = "sft") -> list[dict[str, str]]:
    files = sorted((run_dir / stage).rglob("metrics.csv"))
    assert files, f"no metrics.csv under {run_dir / stage}"
    with open(files[-1]) as fh:
        return list(csv.DictReader(fh))


def params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_train_run_writes_folder_export_and_metrics(tmp_path, data_dir):
    from tsm.models import load_checkpoint
    from tsm.pipeline import run

    cfg = tiny_cfg(tmp_path, data_dir, "sft.save_every_n_steps=2")
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert (out / "config.yaml").exists() and "CONFIG" in (out / "config_tree.txt").read_text()
    saved = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= saved["before"]["accuracy@1"] <= 1.0 and "after" in saved
    assert saved["after"] == metrics["after"]
    # every test row's response and verdict, before and after (what paired tests between runs read)
    import pyarrow.parquet as pq

    for tag in ("before", "after"):
        table = pq.read_table(out / f"test_{tag}" / "responses.parquet").to_pylist()
        assert len(table) == cfg.evaluate.n_rows
        right = sum(r["scores"][0] >= 1.0 for r in table) / len(table)
        assert right == pytest.approx(saved[tag]["accuracy@1"])
        assert all(len(r["responses"]) == len(r["reasons"]) == 1 for r in table)
    # checkpoints at steps 2 and 4, each with its HF folder; hf -> the last one
    ckpts = out / "sft" / "checkpoints"
    assert (ckpts / "step2.ckpt").exists() and (ckpts / "last.ckpt").exists()
    assert (ckpts / "hf-step2" / "config.json").exists()
    assert (out / "sft" / "hf").resolve() == (ckpts / "hf-step4").resolve()
    rows = csv_metrics(out)
    keys = set().union(*(r.keys() for r in rows))
    assert {"train/loss", "train/lr", "val/loss", "val/accuracy@1"} <= keys
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 4 and all(l > 0 for l in losses)
    # the exported folder reloads with transformers to the same function
    model, tok = load_checkpoint(str(out / "sft" / "hf"))
    ids = torch.tensor([tok("x^{2} + 3 x", add_special_tokens=False)["input_ids"]])
    model2, _ = load_checkpoint(str(ckpts / "hf-step4"))
    assert torch.equal(model(input_ids=ids).logits, model2(input_ids=ids).logits)


# no test evaluation, no generation, batches of 8 (256 rows: 32 steps an epoch), a pinned init
RESUME = ["evaluate.before=false", "evaluate.after=false", "sft.val_check_interval=100",
          "sft.module.val_generate_every=0", "sft.data_module.n_val=8", "sft.data_module.n_val_generate=0",
          "model.init_seed=5", "sft.data_module.batch_size=8", "sft.data_module.micro_batch_size=8"]


def train_losses(cfg) -> dict[int, float]:
    """Step -> logged train/loss of a finished run."""
    rows = csv_metrics(Path(cfg.paths.output_dir))
    return {int(float(r["step"])): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def test_resume_from_ckpt_matches_uninterrupted_run(tmp_path, data_dir):
    from tsm.models import load_checkpoint
    from tsm.pipeline import run

    common = RESUME
    # 256 rows / batch 8 = 32 steps per epoch. The full run saves at step 3 (mid-epoch) and goes
    # on to 6; a second run resumes from that step-3 checkpoint and must land on the same weights.
    full = tiny_cfg(tmp_path / "full", data_dir, *common, "sft.max_steps=6", "sft.save_every_n_steps=3")
    run(full)
    ckpt = Path(full.paths.output_dir) / "sft" / "checkpoints" / "step3.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["global_step"] == 3 and state["optimizer_states"][0]["state"]
    resumed = tiny_cfg(tmp_path / "resumed", data_dir, *common, "sft.max_steps=6", f"ckpt_path={ckpt}")
    run(resumed)
    a, _ = load_checkpoint(str(Path(full.paths.output_dir) / "sft" / "hf"))
    b, _ = load_checkpoint(str(Path(resumed.paths.output_dir) / "sft" / "hf"))
    assert torch.allclose(params(a), params(b), atol=1e-6)
    steps = [int(float(r["step"])) for r in csv_metrics(Path(resumed.paths.output_dir)) if r.get("train/loss")]
    assert steps and min(steps) >= 3  # the resumed run continued the step count


@pytest.mark.parametrize("save_at", [31, 36])
def test_resume_across_the_epoch_end_matches_uninterrupted_run(tmp_path, data_dir, save_at):
    """256 rows / batch 8 = 32 steps an epoch: a run resumed at step 31 (just before the first
    epoch's end) or 36 (4 steps into the second) must log every later step's loss exactly as the
    uninterrupted run, through the next epoch boundary (step 64) and beyond (the old data module
    ended a resumed later epoch early: it skipped the steps already taken and so did Lightning)."""
    from tsm.pipeline import run

    common = [*RESUME, "sft.max_steps=68", "model.arch.num_layers=1", "model.arch.hidden_size=32",
              "model.arch.intermediate_size=64", "model.arch.num_heads=2"]
    full = tiny_cfg(tmp_path / "full", data_dir, *common, f"sft.save_every_n_steps={save_at}")
    run(full)
    ckpt = Path(full.paths.output_dir) / "sft" / "checkpoints" / f"step{save_at}.ckpt"
    resumed = tiny_cfg(tmp_path / "resumed", data_dir, *common, f"ckpt_path={ckpt}")
    run(resumed)

    a, b = train_losses(full), train_losses(resumed)
    assert sorted(b) == list(range(save_at, 68))
    assert all(abs(a[s] - b[s]) < 1e-5 for s in b), {s: (a[s], b[s]) for s in b if abs(a[s] - b[s]) >= 1e-5}


def test_grow_deepens_init_from_and_resumes_exactly(tmp_path, data_dir):
    """`grow: {num_layers: N}` deepens init_from's model before training (tsm/models/grow.py); the
    run exports N layers, and a run resumed from its mid-run checkpoint (grown again, then the
    .ckpt restores the grown weights) ends on the uninterrupted run's weights."""
    from tsm.models import build_math_tokenizer, build_tiny_model, load_checkpoint, save_hf
    from tsm.models.tiny import TINY_PRESETS
    from tsm.pipeline import run

    tok = build_math_tokenizer()
    start = save_hf(build_tiny_model(TINY_PRESETS["tiny_1m"], tok, seed=4), tok, tmp_path / "start")
    layers = TINY_PRESETS["tiny_1m"].num_layers
    common = [*RESUME, f"init_from={start}", f"grow={{num_layers: {2 * layers}}}", "sft.max_steps=4"]
    full = tiny_cfg(tmp_path / "full", data_dir, *common, "sft.save_every_n_steps=2")
    run(full)
    a, _ = load_checkpoint(str(Path(full.paths.output_dir) / "sft" / "hf"))
    assert a.config.num_hidden_layers == len(a.model.layers) == 2 * layers
    ckpt = Path(full.paths.output_dir) / "sft" / "checkpoints" / "step2.ckpt"
    resumed = tiny_cfg(tmp_path / "resumed", data_dir, *common, f"ckpt_path={ckpt}")
    run(resumed)
    b, _ = load_checkpoint(str(Path(resumed.paths.output_dir) / "sft" / "hf"))
    assert torch.allclose(params(a), params(b), atol=1e-6)


STREAM = ["sft.data_module._target_=tsm.data.stream.StreamingSFTDataModule",
          "+sft.data_module.stream={seed: 7, workers: 1, simplicity: 0.3}"]


def test_streaming_run_resumes_exactly(tmp_path, data_dir):
    """The fresh-function stream: a run resumed from a mid-run checkpoint logs the same losses and
    ends on the same weights as an uninterrupted one (the stream restarts at the checkpoint's step
    and its dedup state comes from the checkpoint)."""
    from tsm.models import load_checkpoint
    from tsm.pipeline import run

    common = [*STREAM, *RESUME]
    full = tiny_cfg(tmp_path / "full", data_dir, *common, "sft.max_steps=6", "sft.save_every_n_steps=3")
    run(full)
    ckpt = Path(full.paths.output_dir) / "sft" / "checkpoints" / "step3.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    dm_state = next(v for k, v in state.items() if k.endswith("StreamingSFTDataModule"))
    assert dm_state["stream_steps"].tolist() == [0, 1, 2] and len(dm_state["stream_digests"]) == 24
    resumed = tiny_cfg(tmp_path / "resumed", data_dir, *common, "sft.max_steps=6", f"ckpt_path={ckpt}")
    run(resumed)
    a, _ = load_checkpoint(str(Path(full.paths.output_dir) / "sft" / "hf"))
    b, _ = load_checkpoint(str(Path(resumed.paths.output_dir) / "sft" / "hf"))
    assert torch.allclose(params(a), params(b), atol=1e-6)

    after, before = train_losses(resumed), train_losses(full)
    assert sorted(after) == [3, 4, 5]
    assert all(abs(after[s] - before[s]) < 1e-5 for s in after)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_instantiates(experiment, tmp_path):
    from tsm.models.loading import ModelSpec

    cfg = compose_cfg("train", [f"experiment={experiment}"], tmp_path)
    assert cfg.stages, experiment
    spec = instantiate(cfg.model)
    assert isinstance(spec, ModelSpec)
    reward = instantiate(cfg.reward)
    assert callable(reward)
    for stage in cfg.stages:
        stage_cfg = cfg[stage]
        if stage == "ei":  # expert iteration: a prompt source and the SFT each round runs
            assert callable(instantiate(stage_cfg.prompts).set_tokenizer)
            assert stage_cfg.sft.data_module.sft_target == "responses"
            stage_cfg = stage_cfg.sft
        dm = instantiate(stage_cfg.data_module) if stage != "ei" else None
        if stage == "sft":
            assert dm.batch_size % dm.micro_batch_size == 0
        if stage == "ei":
            assert stage_cfg.data_module.batch_size % stage_cfg.data_module.micro_batch_size == 0
        module_factory = instantiate(stage_cfg.module)
        assert callable(module_factory)
        if stage == "grpo":  # the sampling node and the options the module validates
            assert module_factory.keywords["sampling"].temperature > 0
            assert instantiate(cfg.rollout).func.__name__ in ("HFEngine", "VLLMEngine")
        trainer = instantiate(cfg.trainer, max_steps=stage_cfg.max_steps, logger=False)
        assert trainer.max_steps == stage_cfg.max_steps
    text = (ROOT / "conf" / "experiment" / f"{experiment}.yaml").read_text()
    # a recipe reproduces its result from a fresh clone: it never reads another run's folder
    assert "outputs/" not in text, f"{experiment} reads an outputs/ path; use init_from=<HF folder | shipped model>"
    assert cfg.get("init_from") is None or "outputs" not in str(cfg.init_from)
    first_line = text.splitlines()[0]
    assert first_line == "# @package _global_"
    second = (ROOT / "conf" / "experiment" / f"{experiment}.yaml").read_text().splitlines()[1]
    assert second.startswith("# python train.py experiment=" + experiment)


def test_selective_backprop_recipe_says_what_it_trains_on(tmp_path):
    """sft.module.select_fraction < 1: batch_size counts candidates; the console line says so."""
    from tsm.io import config_summary

    cfg = compose_cfg("train", ["experiment=smallest_select"], tmp_path)
    assert cfg.sft.module.select_fraction == 0.25 and cfg.sft.data_module.batch_size == 256
    assert "sft 600 steps x 256 (trains on the hardest 64), lr 0.0001" in config_summary(cfg)
    plain = compose_cfg("train", ["experiment=smallest_stage6"], tmp_path)
    assert plain.sft.module.select_fraction == 1.0
    assert "sft 1600 steps x 64, lr 0.0001" in config_summary(plain)


def ddp_runs(tmp_path: Path, data_dir: Path, *extra: str) -> dict[int, Path]:
    """The same tiny SFT run on 1 process and on 2 (trainer.strategy=ddp, CPU gloo), same global
    batch of 16 in micro-batches of 4; returns each run's folder."""
    common = [*TINY_RUN, f"data.output_dir={data_dir}", "evaluate.before=false", "evaluate.after=false",
              "sft.module.val_generate_every=0", "sft.data_module.n_val_generate=0", "model.init_seed=3",
              "sft.data_module.batch_size=16", "sft.data_module.micro_batch_size=4",
              "sft.val_check_interval=100", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    dirs = {}
    for devices in (1, 2):
        run_dir = tmp_path / f"d{devices}"
        cmd = [sys.executable, str(ROOT / "train.py"), *common, f"trainer.devices={devices}",
               f"hydra.run.dir={run_dir}"]
        if devices == 2:
            cmd.append("trainer.strategy=ddp")
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        if devices == 2:  # really two processes in one gloo group
            assert "MEMBER: 2/2" in proc.stdout + proc.stderr
        dirs[devices] = run_dir
    return dirs


def test_ddp_two_processes_take_the_same_steps_as_one(tmp_path, data_dir):
    """trainer.devices=2 trainer.strategy=ddp on CPU (gloo) vs one process, same global batch."""
    dirs = ddp_runs(tmp_path, data_dir, "sft.max_steps=3")
    losses = {d: [float(r["train/loss"]) for r in csv_metrics(run_dir) if r.get("train/loss")]
              for d, run_dir in dirs.items()}
    assert len(losses[1]) == len(losses[2]) == 3
    for a, b in zip(losses[1], losses[2]):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), losses


def test_ddp_selective_backprop_logs_the_candidates_of_all_ranks(tmp_path, data_dir):
    """select_fraction < 1 under DDP: each rank selects from its own rows; the candidates' loss and
    the selected count are summed over ranks, so step 0 (same weights) logs the same on 1 and 2."""
    dirs = ddp_runs(tmp_path, data_dir, "sft.max_steps=1", "sft.module.select_fraction=0.5", *STREAM)
    first, drawn = {}, {}
    for d, run_dir in dirs.items():
        rows = [r for r in csv_metrics(run_dir) if r.get("train/candidate_loss")]
        assert len(rows) == 1
        first[d] = (float(rows[0]["train/candidate_loss"]), float(rows[0]["train/selected_rows"]))
        # the stream's rows by function type, drawn and selected, summed over ranks too
        drawn[d] = {k.removeprefix("train/candidates/"): float(v) for k, v in rows[0].items()
                    if k.startswith("train/candidates/") and v}
        chosen = sum(float(v) for k, v in rows[0].items() if k.startswith("train/selected/") and v)
        assert sum(drawn[d].values()) == 16 and chosen == 8
    assert first[1][1] == first[2][1] == 8.0  # half of 16, whichever way the rows are split
    assert abs(first[1][0] - first[2][0]) < 1e-4 * max(1.0, first[1][0]), first
    assert drawn[1] == drawn[2] and len(drawn[1]) > 1  # the same global batch, several types


def test_evaluate_data_scores_another_test_split(tmp_path, data_dir, monkeypatch):
    """evaluate.data: a run trained on one mix is scored on another config's test split
    (a run trained on fresh functions is scored on a fixed test split)."""
    import pyarrow.parquet as pq

    import tsm.evaluation
    from tsm.data.build import build_dataset
    from tsm.models import load_model_and_tokenizer
    from tsm.pipeline import test_accuracy

    seen = []

    def fake_generate_and_score(engine, prompts, truths, *args, **kwargs):
        seen.append(list(truths))
        return SimpleNamespace(metrics={"accuracy@1": 0.5, "boxed_rate": 1.0}, responses=[])

    cfg = tiny_cfg(tmp_path, data_dir, "evaluate.n_rows=5")
    model, tokenizer = load_model_and_tokenizer(instantiate(cfg.model))
    reward = instantiate(cfg.reward)
    other = {**cfg.data, "seed": 11, "simplicity": 1.0}
    with open_dict(cfg):
        cfg.evaluate.data = None
    own = build_dataset(instantiate(cfg.data)).test
    with open_dict(cfg):
        cfg.evaluate.data = other
    theirs = build_dataset(instantiate(cfg.evaluate.data)).test
    truths = [[r["reward_model"]["ground_truth"] for r in pq.read_table(p).to_pylist()[:5]]
              for p in (own, theirs)]
    assert truths[0] != truths[1]
    monkeypatch.setattr(tsm.evaluation, "generate_and_score", fake_generate_and_score)
    assert test_accuracy(cfg, model, tokenizer, reward, "after")["accuracy@1"] == 0.5
    with open_dict(cfg):
        cfg.evaluate.data = None
    test_accuracy(cfg, model, tokenizer, reward, "after")
    assert seen == [truths[1], truths[0]]


def test_runs_started_in_the_same_second_get_their_own_folders():
    """Two train.py processes started together resolve different run folders (time to the
    microsecond), so concurrent runs and sweep agents never write into one folder."""
    cmd = [sys.executable, "train.py", "experiment=tiny_sft", "--cfg", "all", "--resolve", "-p", "hydra.run.dir"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    dirs = [p.communicate(timeout=120)[0].strip().splitlines()[-1] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(d.startswith("outputs/tiny_sft/") for d in dirs), dirs
    assert dirs[0] != dirs[1]
