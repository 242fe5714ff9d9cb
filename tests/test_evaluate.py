"""evaluate.py: train -> evaluate round trip, .ckpt == HF folder, scoring mode == row-by-row score."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import open_dict

from tests.helpers import TINY_RUN, compose_cfg
from tests.test_train import csv_metrics
from tsm.reward import score

DATA = ["data.n_train=256", "data.n_test=32", "data.workers=0", "reward.workers=0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tsm.pipeline import run

    tmp = tmp_path_factory.mktemp("train")
    cfg = compose_cfg("train", [*TINY_RUN, "evaluate.before=false", "evaluate.after=false", "sft.max_steps=4"], tmp)
    with open_dict(cfg):
        cfg.data.output_dir = str(tmp / "data")
    run(cfg)
    return cfg, Path(cfg.paths.output_dir), tmp


def eval_cfg(tmp: Path, data_dir: str, name: str, *extra: str):
    cfg = compose_cfg("evaluate", [*DATA, *extra], tmp / name)
    with open_dict(cfg):
        cfg.data.output_dir = data_dir
    return cfg


def test_round_trip_matches_training_val_accuracy(trained):
    from tsm.evaluation import run_evaluation

    train_cfg, out, tmp = trained
    logged = [float(r["val/accuracy@1"]) for r in csv_metrics(out) if r.get("val/accuracy@1")]
    greedy = ["n_rows=8", "sampling.temperature=0", f"sampling.max_new_tokens={train_cfg.sft.module.val_max_new_tokens}"]
    hf = eval_cfg(tmp, train_cfg.data.output_dir, "hf", f"checkpoint={out / 'sft' / 'hf'}", *greedy)
    m_hf = run_evaluation(hf)
    assert m_hf["accuracy@1"] == pytest.approx(logged[-1])  # the same 8 val rows, greedy, same budget
    ckpt = eval_cfg(tmp, train_cfg.data.output_dir, "ckpt",
                    f"checkpoint={out / 'sft' / 'checkpoints' / 'last.ckpt'}", *greedy)
    m_ckpt = run_evaluation(ckpt)
    a = pq.read_table(Path(hf.paths.output_dir) / "responses.parquet").to_pylist()
    b = pq.read_table(Path(ckpt.paths.output_dir) / "responses.parquet").to_pylist()
    assert [r["responses"] for r in a] == [r["responses"] for r in b]
    timing = {"tokens_per_s"}
    assert {k: v for k, v in m_ckpt.items() if k not in timing} == {k: v for k, v in m_hf.items() if k not in timing}
    assert len(a) == 8 and {"prompt", "reward_model", "extra_info", "responses", "scores"} <= set(a[0])


def test_scoring_mode_equals_row_by_row_score(trained, tmp_path):
    import pyarrow as pa
    from hydra.utils import instantiate

    from tsm.data.build import build_dataset
    from tsm.evaluation import run_evaluation

    train_cfg, _, _ = trained
    rows = pq.read_table(build_dataset(instantiate(train_cfg.data)).test).to_pylist()[:12]
    answers = []
    for i, r in enumerate(rows):  # a mix: right, wrong, unboxed, garbage
        gold = r["extra_info"]["derivative"]
        answers.append([f"\\boxed{{{gold}}}" if i % 4 == 0 else f"\\boxed{{{gold} + 1}}" if i % 4 == 1
                        else "no box here" if i % 4 == 2 else "\\boxed{" + "{" * 5000, f"\\boxed{{{gold}}}"])
    path = tmp_path / "responses.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "responses": a} for r, a in zip(rows, answers)]), path)
    cfg = eval_cfg(tmp_path, train_cfg.data.output_dir, "score", f"responses={path}")
    m = run_evaluation(cfg)
    by_row = [score(a[0], r["reward_model"]["ground_truth"]).correct for r, a in zip(rows, answers)]
    any_row = [any(score(x, r["reward_model"]["ground_truth"]).correct for x in a) for r, a in zip(rows, answers)]
    assert m["accuracy@1"] == sum(by_row) / len(rows) == 0.25
    assert m["accuracy@2"] == sum(any_row) / len(rows) == 1.0
    out = pq.read_table(Path(cfg.paths.output_dir) / "responses.parquet").to_pylist()
    assert [r["scores"][0] for r in out][:4] == [1.0, 0.1, 0.0, 0.0]
