"""evaluate.py: train -> evaluate round trip, .ckpt == HF folder, scoring mode == row-by-row score,
data=ood, throughput keys, the chart and the W&B run (offline), the console table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from tests.helpers import TINY_RUN, compose_cfg
from tests.test_train import csv_metrics
from tsm.reward import score

ROOT = Path(__file__).resolve().parents[1]
DATA = ["data.n_train=16", "data.n_test=16", "data.workers=0", "reward.workers=0"]  # small: built in ~1 s
MEMORIZE_STEPS = 150  # 4 gold answers memorized to loss ~0.005 (~10 s on one core)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine its spin-waits cost
    10x (measured: 8 rows x 64 tokens took 1.3 s on one thread, 42 s on two under load 7)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> Path:
    from tsm.models import TINY_PRESETS, build_math_tokenizer, build_tiny_model, save_hf

    tok = build_math_tokenizer()
    return save_hf(build_tiny_model(TINY_PRESETS["tiny_1m"], tok, seed=0), tok, tmp_path_factory.mktemp("tiny") / "hf")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("data"))  # built once (the same spec in train and evaluate)


@pytest.fixture(scope="module")
def memorized(tmp_path_factory, data_dir):
    """train.py's pipeline on a tiny model that learns the gold answers of val rows 0, 2, 4, 6.

    ``sft_target=responses`` trains on a responses parquet made of those rows with their gold
    answer (score 1), so greedy decoding answers them right and the other four val rows wrong:
    the logged val/accuracy@1 is strictly between 0 and 1, and evaluate.py must reproduce it.
    """
    from tsm.data.build import build_dataset
    from tsm.data.sft import answer_only
    from tsm.pipeline import run

    tmp = tmp_path_factory.mktemp("train")
    base = compose_cfg("train", [*TINY_RUN, *DATA[:2]], tmp)
    with open_dict(base):
        base.data.output_dir = data_dir
    val = pq.read_table(build_dataset(instantiate(base.data)).test).to_pylist()[:8]
    gold = [{**r, "responses": [answer_only(r["extra_info"]["answer"])], "scores": [1.0]} for r in val[::2]]
    responses = tmp / "gold_responses.parquet"
    pq.write_table(pa.Table.from_pylist(gold * 4), responses)  # 16 examples: 4 steps an epoch
    cfg = compose_cfg("train", [
        *TINY_RUN, *DATA[:2], "evaluate.before=false", "evaluate.after=false", "model.init_seed=0",
        "sft.data_module.sft_target=responses", f"sft.data_module.responses_path={responses}",
        f"sft.max_steps={MEMORIZE_STEPS}", f"sft.val_check_interval={MEMORIZE_STEPS}",
        "sft.data_module.batch_size=4", "sft.data_module.micro_batch_size=4", "sft.data_module.n_val=8",
        "sft.module.optimizer.lr=3e-3", "sft.module.warmup_steps=5", "sft.module.val_max_new_tokens=64",
    ], tmp)
    with open_dict(cfg):
        cfg.data.output_dir = data_dir
    run(cfg)
    return cfg, Path(cfg.paths.output_dir), tmp


def eval_cfg(tmp: Path, name: str, *extra: str, data_dir: str | None = None):
    data = DATA[-1:] if "data=ood" in extra else DATA  # the OOD set has no generation knobs
    cfg = compose_cfg("evaluate", [*data, "wandb.enabled=false", *extra], tmp / name)
    if data_dir is not None:
        with open_dict(cfg):
            cfg.data.output_dir = data_dir
    return cfg


def without_timing(m: dict) -> dict:
    return {k: v for k, v in m.items() if not k.startswith("rollout/")}


def test_round_trip_matches_training_val_accuracy(memorized):
    from tsm.evaluation_cli import run_evaluation

    train_cfg, out, tmp = memorized
    logged = [float(r["val/accuracy@1"]) for r in csv_metrics(out) if r.get("val/accuracy@1")]
    assert 0.0 < logged[-1] < 1.0  # some rows right, some wrong: equality below means something
    greedy = ["n_rows=8", "sampling.temperature=0", f"sampling.max_new_tokens={train_cfg.sft.module.val_max_new_tokens}"]
    hf = eval_cfg(tmp, "hf", f"checkpoint={out / 'sft' / 'hf'}", *greedy, data_dir=train_cfg.data.output_dir)
    m_hf = run_evaluation(hf)
    assert m_hf["accuracy@1"] == pytest.approx(logged[-1])  # the same 8 val rows, greedy, same budget
    a = pq.read_table(Path(hf.paths.output_dir) / "responses.parquet").to_pylist()
    assert [r["scores"][0] == 1.0 for r in a] == [True, False] * 4  # exactly the memorized rows
    ckpt = eval_cfg(tmp, "ckpt", f"checkpoint={out / 'sft' / 'checkpoints' / 'last.ckpt'}", *greedy,
                    data_dir=train_cfg.data.output_dir)
    m_ckpt = run_evaluation(ckpt)
    b = pq.read_table(Path(ckpt.paths.output_dir) / "responses.parquet").to_pylist()
    assert [r["responses"] for r in a] == [r["responses"] for r in b]
    assert without_timing(m_ckpt) == without_timing(m_hf)
    assert len(a) == 8 and {"prompt", "reward_model", "extra_info", "responses", "scores"} <= set(a[0])


@pytest.mark.vllm
def test_vllm_rollout_gives_the_same_greedy_verdicts(memorized):
    pytest.importorskip("vllm")
    from tsm.evaluation_cli import run_evaluation

    train_cfg, out, tmp = memorized
    logged = [float(r["val/accuracy@1"]) for r in csv_metrics(out) if r.get("val/accuracy@1")]
    cfg = eval_cfg(tmp, "vllm", "rollout=vllm", "rollout.kv_cache_space_gib=0.25", f"checkpoint={out / 'sft' / 'hf'}",
                   "n_rows=8", "sampling.temperature=0",
                   f"sampling.max_new_tokens={train_cfg.sft.module.val_max_new_tokens}", data_dir=train_cfg.data.output_dir)
    m = run_evaluation(cfg)
    assert m["accuracy@1"] == pytest.approx(logged[-1])
    rows = pq.read_table(Path(cfg.paths.output_dir) / "responses.parquet").to_pylist()
    assert [r["scores"][0] == 1.0 for r in rows] == [True, False] * 4
    assert m["rollout/responses_per_s"] > 0 and m["rollout/tokens_per_s"] > 0


def test_scoring_mode_equals_row_by_row_score(tmp_path, data_dir):
    from tsm.data.build import build_dataset
    from tsm.evaluation_cli import run_evaluation

    cfg = eval_cfg(tmp_path, "score", data_dir=data_dir)
    rows = pq.read_table(build_dataset(instantiate(cfg.data)).test).to_pylist()[:12]
    answers = []
    for i, r in enumerate(rows):  # a mix: right, wrong, unboxed, garbage
        gold = r["extra_info"]["answer"]
        answers.append([f"\\boxed{{{gold}}}" if i % 4 == 0 else f"\\boxed{{{gold} + 1}}" if i % 4 == 1
                        else "no box here" if i % 4 == 2 else "\\boxed{" + "{" * 5000, f"\\boxed{{{gold}}}"])
    path = tmp_path / "responses.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "responses": a} for r, a in zip(rows, answers)]), path)
    with open_dict(cfg):
        cfg.responses = str(path)
    m = run_evaluation(cfg)
    by_row = [score(a[0], r["reward_model"]["ground_truth"]).correct for r, a in zip(rows, answers)]
    any_row = [any(score(x, r["reward_model"]["ground_truth"]).correct for x in a) for r, a in zip(rows, answers)]
    assert m["accuracy@1"] == sum(by_row) / len(rows) == 0.25
    assert m["accuracy@2"] == sum(any_row) / len(rows) == 1.0
    assert not any(k.startswith("rollout/") for k in m)  # nothing generated
    out = pq.read_table(Path(cfg.paths.output_dir) / "responses.parquet").to_pylist()
    assert [r["scores"][0] for r in out][:4] == [1.0, 0.1, 0.0, 0.0]
    assert [r["reasons"][0] for r in out][:4] == ["correct", "wrong", "no_box", "too_deep"]
    assert out[0]["answers"][0] == rows[0]["extra_info"]["answer"] and out[2]["answers"][0] is None
    assert m["pass@1"] == sum(sum(score(x, r["reward_model"]["ground_truth"]).correct for x in a) / 2
                              for r, a in zip(rows, answers)) / len(rows)  # all samples, unbiased
    assert m["pass@2"] == 1.0
    assert (Path(cfg.paths.output_dir) / "accuracy_by_type.png").exists()
    # a plain-string responses column is one response per row (not a list of its characters)
    pq.write_table(pa.Table.from_pylist([{**r, "responses": a[0]} for r, a in zip(rows, answers)]), path)
    assert run_evaluation(cfg)["accuracy@1"] == 0.25


def test_pass_at_k_is_chens_unbiased_estimator():
    import random
    from math import comb

    from tsm.evaluation import pass_at_k

    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 30)
        c, k = rng.randint(0, n), rng.randint(1, n)
        assert abs(pass_at_k(n, c, k) - (1 - comb(n - c, k) / comb(n, k))) < 1e-12
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 3, 2) == 1.0 and pass_at_k(2, 1, 1) == 0.5
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)


def test_ood_with_wandb_writes_metrics_table_chart_and_run(tiny_hf, tmp_path, caplog):
    import wandb

    from tsm.evaluation_cli import run_evaluation

    cfg = eval_cfg(tmp_path, "ood", "data=ood", f"checkpoint={tiny_hf}", "n_rows=12", "sampling.max_new_tokens=4",
                   "wandb.enabled=true", "wandb.mode=offline", "wandb.table_rows=5")
    with caplog.at_level("INFO", logger="tsm"):
        m = run_evaluation(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == m and saved["n_prompts"] == 12
    assert saved["rollout/responses_per_s"] > 0 and saved["rollout/tokens_per_s"] > 0
    assert saved["rollout/tokens_per_s"] == pytest.approx(12 * 4 / saved["rollout/seconds"])  # 4 tokens each
    assert saved["count/inverse-trig"] == 10 and saved["count/power-tower"] == 2  # the set's first 12 rows
    png = (out / "accuracy_by_type.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    log = caplog.text
    assert "responses/s" in log and "tokens/s" in log and "inverse-trig" in log and "Wrote" in log
    assert wandb.run is None  # finished
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    samples = json.loads(next(runs[0].rglob("samples_*.table.json")).read_text())
    assert len(samples["data"]) == 5 and "response" in samples["columns"]
    assert [row[samples["columns"].index("index")] for row in samples["data"]] == [0, 2, 4, 7, 9]
    bars = json.loads(next(runs[0].rglob("accuracy_by_type_table_*.table.json")).read_text())
    assert sorted(row[0] for row in bars["data"]) == ["inverse-trig", "power-tower"]


def test_wandb_run_is_finished_after_a_failure(tmp_path):
    import wandb

    from tsm.evaluation_cli import run_evaluation

    cfg = eval_cfg(tmp_path, "fail", "data=ood", "checkpoint=/no/such/folder", "wandb.enabled=true",
                   "wandb.mode=offline")
    with pytest.raises(ValueError, match="is not a folder"):
        run_evaluation(cfg)
    assert wandb.run is None  # the next multirun job starts clean
    assert list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("n", [1, 2])
def test_progress_chunks_give_the_same_greedy_rollouts(tiny_hf, n):
    from tsm.evaluation import generate_with_progress
    from tsm.models import load_checkpoint
    from tsm.rollout.base import SamplingParams
    from tsm.rollout.hf import HFEngine

    model, tok = load_checkpoint(str(tiny_hf))
    engine = HFEngine(model, tok, batch_size=4)
    prompts = [tok(f"d/dx {'x+' * (i % 5)}sin(x)")["input_ids"] for i in range(11)]  # mixed lengths
    greedy = SamplingParams(max_new_tokens=5, temperature=0)
    one, chunked = engine.generate(prompts, n=n, sampling=greedy), generate_with_progress(engine, prompts, n, greedy)
    assert chunked.token_ids == one.token_ids and chunked.texts == one.texts and chunked.prompt_index == one.prompt_index
    assert chunked.logprobs == one.logprobs and len(chunked) == 11 * n  # the very same batches
    sampled = SamplingParams(max_new_tokens=5, temperature=1.0, seed=3)
    assert generate_with_progress(engine, prompts, n, sampled).texts == generate_with_progress(engine, prompts, n, sampled).texts


class WeightsEngine:
    """Stands in for an engine with weights of its own (vLLM): bf16 goes to ``dtype``."""

    def __init__(self, model, tokenizer, dtype: str = "float32"):
        self.dtype = dtype


def test_rollout_config_and_bf16(tiny_hf):
    from omegaconf import OmegaConf

    from tsm.evaluation import build_engine
    from tsm.models import load_checkpoint
    from tsm.rollout.hf import HFEngine

    cfg = compose_cfg("evaluate", ["rollout.batch_size=7"])
    model, tok = load_checkpoint(str(tiny_hf))
    engine = build_engine(cfg.rollout, model, tok, bf16=True)
    assert isinstance(engine, HFEngine) and engine.batch_size == 7 and engine.autocast_dtype == torch.bfloat16
    assert build_engine(cfg.rollout, model, tok, bf16=False).autocast_dtype is None
    other = OmegaConf.create({"_target_": "tests.test_evaluate.WeightsEngine", "_partial_": True})
    assert build_engine(other, model, tok, bf16=True).dtype == "bfloat16"
    assert build_engine(other, model, tok).dtype == "float32"


def test_console_table_is_sectioned():
    from tsm.evaluation import format_table

    metrics = {"n_prompts": 4.0, "n_samples": 2.0, "accuracy@1": 0.25, "accuracy@2": 0.5, "reward/mean": 0.325,
               "boxed_rate": 1.0, "parse_rate": 0.75, "timeouts": 0.0, "response_tokens/mean": 31.5,
               "accuracy/chain": 0.5, "count/chain": 2.0, "accuracy/radical": 0.0, "count/radical": 2.0,
               "rollout/seconds": 2.0, "rollout/responses_per_s": 4.0, "rollout/tokens_per_s": 126.0}
    text = format_table(metrics, "Evaluation of X")
    lines = text.splitlines()
    assert lines[0] == "Evaluation of X"
    assert any(line.split() == ["accuracy@2", "50.0%"] for line in lines)
    assert any(line.split() == ["chain", "2", "50.0%"] for line in lines)
    assert lines[-1].strip() == "generation: 8 responses in 2.0 s = 4.00 responses/s, 126.0 tokens/s"
    # the random-tree family is labelled by what it is (its key stays Diff-TSM's name)
    text = format_table({**metrics, "accuracy/composite-complex": 1.0, "count/composite-complex": 3.0}, "X")
    assert any(line.split() == ["random", "tree", "(composite-complex)", "3", "100.0%"] for line in text.splitlines())


@pytest.mark.slow
def test_cli_prints_table_and_output_dir(tiny_hf, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"checkpoint={tiny_hf}", "data=ood", f"data.output_dir={tmp_path / 'data'}",
         "n_rows=4", "sampling.max_new_tokens=4", "reward.workers=0", f"hydra.run.dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "accuracy@1" in text and "responses/s" in text and f"Output dir: {out}" in text
    assert {"metrics.json", "responses.parquet", "accuracy_by_type.png", "config.yaml"} <= {p.name for p in out.iterdir()}
    assert list((out / "wandb").glob("offline-run-*"))


def test_a_runs_checkpoint_is_scored_on_the_runs_own_data(tmp_path):
    from omegaconf import OmegaConf

    from tsm.evaluation_cli import adopt_run_data, run_folder_of, wandb_run_name

    run = tmp_path / "outputs" / "quickstart" / "2026-01-01_00-00-00-000001"
    hf = run / "sft" / "checkpoints" / "hf-step4"
    hf.mkdir(parents=True)
    (run / "sft" / "hf").symlink_to(Path("checkpoints") / "hf-step4")
    train_cfg = compose_cfg("train", [*TINY_RUN, "data.seed=77", "data.simplicity=0.25"], tmp_path)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(train_cfg, resolve=True))
    assert run_folder_of(str(run / "sft" / "hf")) == run and run_folder_of(str(hf)) == run
    assert run_folder_of(str(tmp_path)) is None and run_folder_of("tsm-diff-5m") is None

    cfg = compose_cfg("evaluate", [f"checkpoint={run / 'sft' / 'hf'}"], tmp_path)
    assert cfg.data.seed != 77
    assert adopt_run_data(cfg, [f"checkpoint={run / 'sft' / 'hf'}"]) == run
    assert cfg.data.seed == 77 and cfg.data.simplicity == 0.25 and cfg.data.n_test == train_cfg.data.n_test
    assert "on test(s0.25, seed 77" in wandb_run_name(cfg) and "sft/hf" in wandb_run_name(cfg)
    # the user's own choice of data wins
    cfg = compose_cfg("evaluate", [f"checkpoint={run / 'sft' / 'hf'}", "data=ood"], tmp_path)
    assert adopt_run_data(cfg, [f"checkpoint={run / 'sft' / 'hf'}", "data=ood"]) is None
    assert wandb_run_name(cfg).endswith("on ood")
