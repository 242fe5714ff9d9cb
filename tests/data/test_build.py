"""Dataset build: schema, dedup and disjoint splits, determinism, reuse, atomic writes, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tsm.data import build as B
from tsm.data.schema import SCHEMA, to_table
from tsm.tasks.differentiation import FIXED_PROMPT

REPO = Path(__file__).resolve().parents[2]


def small(tmp_path, **kw) -> B.DatasetSpec:
    values = {"n_train": 40, "n_test": 12, "output_dir": str(tmp_path / "data"), "seed": 3}
    values.update(kw)
    return B.DatasetSpec(**values)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    spec = small(tmp_path_factory.mktemp("build"))
    return spec, B.build_dataset(spec)


def rows(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_schema_and_row_contract(built):
    spec, files = built
    for path, split, n in ((files.train, "train", spec.n_train), (files.test, "test", spec.n_test)):
        table = pq.read_table(path)
        assert table.schema.equals(SCHEMA)
        data = table.to_pylist()
        assert len(data) == n
        assert [r["extra_info"]["index"] for r in data] == list(range(n))
        for r in data:
            assert r["data_source"] == "tsm/differentiation" and r["ability"] == "math"
            assert r["reward_model"]["style"] == "rule"
            assert r["reward_model"]["ground_truth"] == r["extra_info"]["answer_sympy"]
            assert [m["role"] for m in r["prompt"]] == ["system", "user"]
            assert r["extra_info"]["split"] == split
            assert r["extra_info"]["function_shown"] in r["prompt"][1]["content"]
            assert len(r["extra_info"]["function"]) <= spec.max_length
            assert len(r["extra_info"]["answer"]) <= spec.max_length


def test_meta_sidecar(built):
    spec, files = built
    meta = files.read_meta()
    assert meta["config"] == spec.generation_config() and meta["seed"] == 3
    counts = meta["counts"]
    assert (counts["train"], counts["test"]) == (40, 12)
    assert counts["candidates"] == 52 + counts["duplicates"] + counts["rejected"]
    assert sum(meta["rejections"].values()) == counts["rejected"]
    assert sum(meta["function_types"]["train"].values()) == 40
    assert set(meta["versions"]) >= {"sympy", "pyarrow"} and "seconds" in meta["timing"]


def test_dedup_and_disjoint_splits(built):
    files = built[1]
    import sympy

    from tsm.tasks.differentiation import canonical_key

    keys = [canonical_key(sympy.sympify(r["extra_info"]["function_sympy"]))
            for path in (files.test, files.train) for r in rows(path)]
    assert len(keys) == len(set(keys)) == 52


def test_split_evenly_spreads_test_rows():
    test, train = B.split_evenly(list(range(10)), 3)
    assert test == [0, 3, 6] and train == [1, 2, 4, 5, 7, 8, 9]
    assert B.split_evenly(list(range(4)), 4) == ([0, 1, 2, 3], [])
    assert B.split_evenly(list(range(4)), 0) == ([], [0, 1, 2, 3])
    test, train = B.split_evenly(list(range(2304)), 256)
    assert len(test) == 256 and sum(test) / 256 == pytest.approx(sum(train) / 2048, rel=0.01)


def test_dedup_counts_repeats_at_simplicity_zero(tmp_path):
    spec = small(tmp_path, simplicity=0.0, max_depth=2, n_train=30, n_test=5)
    meta = B.build_dataset(spec).read_meta()
    assert meta["counts"]["duplicates"] > 10  # shallow trees repeat a lot (x, sin(x), ...)
    assert meta["function_types"]["train"]["composite-complex"] == 30


def test_reuse_and_config_folder(built):
    spec, files = built
    before = files.train.stat().st_mtime_ns, files.train.read_bytes()
    again = B.build_dataset(B.DatasetSpec(**{**spec.__dict__, "workers": 0, "chunk_size": 7}))
    assert again.reused and again.directory == files.directory
    assert (files.train.stat().st_mtime_ns, files.train.read_bytes()) == before
    other = B.DatasetSpec(**{**spec.__dict__, "seed": 4})
    assert other.directory() != spec.directory()


def test_identical_bytes_whatever_the_workers(tmp_path, built):
    files = built[1]
    twin = B.build_dataset(small(tmp_path, workers=2, chunk_size=16))
    assert not twin.reused
    assert twin.train.read_bytes() == files.train.read_bytes()
    assert twin.test.read_bytes() == files.test.read_bytes()
    meta_a, meta_b = files.read_meta(), twin.read_meta()
    for meta in (meta_a, meta_b):
        meta.pop("timing")
    assert meta_a == meta_b


def test_variations_off_uses_fixed_prompt(tmp_path):
    files = B.build_dataset(small(tmp_path, variations=False, n_train=5, n_test=0))
    for r in rows(files.train):
        assert r["extra_info"]["function_shown"] == r["extra_info"]["function"]
        assert r["prompt"][1]["content"] == FIXED_PROMPT.format(function=r["extra_info"]["function"])
    assert rows(files.test) == []


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    spec = small(tmp_path, n_train=6, n_test=2, seed=11)
    earlier = B.build_dataset(small(tmp_path, n_train=6, n_test=2, seed=12))
    earlier_bytes = {p: p.read_bytes() for p in (earlier.train, earlier.test, earlier.meta)}
    real_write = B.pq.write_table
    calls = []

    def crash_midway(table, where, **kw):
        calls.append(where)
        if len(calls) == 2:  # train written; crash while writing test
            Path(where).write_bytes(b"PAR1 half a file")
            raise KeyboardInterrupt
        real_write(table, where, **kw)

    monkeypatch.setattr(B.pq, "write_table", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        B.build_dataset(spec)
    directory = spec.directory()
    assert not (directory / "test.parquet").exists() and not (directory / "meta.json").exists()
    assert not [p for p in directory.iterdir() if ".tmp-" in p.name]
    assert {p: p.read_bytes() for p in earlier_bytes} == earlier_bytes
    monkeypatch.setattr(B.pq, "write_table", real_write)
    rebuilt = B.build_dataset(spec)  # no meta: not reused, built again completely
    assert not rebuilt.reused and len(rows(rebuilt.test)) == 2


@pytest.mark.parametrize("knob, value, words", [
    ("simplicity", 1.5, "probability"), ("simplicity", -0.1, "probability"),
    ("simplicity", "half", "probability"),
    ("n_train", 0, ">= 1"), ("n_test", -1, ">= 0"), ("max_coefficient", 0, ">= 1"),
    ("max_power", 0, ">= 1"), ("max_length", 0, ">= 1"), ("workers", -1, ">= 0"),
    ("max_depth", 9, "<= 8"), ("seed", -2, "non-negative"), ("simplify", "slow", "fast"),
    ("timeout_s", 0, "> 0"), ("max_attempts_factor", 0.5, ">= 1"), ("n_train", 2.5, "integer"),
    ("variations", "yes", "true or false"), ("chunk_size", 0, ">= 1"),
])
def test_bad_knobs_name_the_knob(knob, value, words):
    with pytest.raises(ValueError, match=rf"data\.{knob}=.*{words}"):
        B.DatasetSpec(**{knob: value})


def test_impossible_request_fails_early(tmp_path):
    with pytest.raises(ValueError, match=r"data\.max_depth"):
        B.DatasetSpec(simplicity=0.0, max_depth=0, n_train=5)
    spec = small(tmp_path, simplicity=0.0, max_depth=1, n_train=500, n_test=0)
    with pytest.raises(B.CapacityError, match=r"data\.n_train") as info:
        B.build_dataset(spec)
    seen = int(str(info.value).split("after ")[1].split(" candidates")[0])
    assert seen <= 1024  # a few chunks, not the whole budget of 20 x 500
    assert not spec.directory().exists()


def test_schema_refuses_nulls():
    row = {"data_source": None, "prompt": [], "ability": "math",
           "reward_model": {"style": "rule", "ground_truth": "1"},
           "extra_info": {"split": "train", "index": 0, "function": "x", "answer": "1",
                          "function_sympy": "x", "answer_sympy": "1",
                          "function_type": "polynomial", "function_shown": "x"}}
    with pytest.raises(ValueError, match="data_source"):
        to_table([row])


def test_example_seed_is_stable():
    assert B.example_seed(0, 0) == B.example_seed(0, 0) != B.example_seed(0, 1)
    assert B.example_seed(0, 5) != B.example_seed(1, 5)
    assert B.example_seed(7, 3) == 12706180175920149859  # pinned: changing it changes every dataset


def test_cli_builds_and_summarizes(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tsm.data", "data.n_train=8", "data.n_test=2",
         f"data.output_dir={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "train 8  test 2" in out.stdout and "composite-complex" in out.stdout
    meta = json.loads(next((tmp_path / "data").glob("*/meta.json")).read_text())
    assert meta["counts"]["train"] == 8


def test_conf_data_is_airtight():
    """conf/data/default.yaml sets exactly DatasetSpec's fields and instantiates to the defaults."""
    import dataclasses

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("data", overrides=["data.simplicity=0.25"])
    keys = set(cfg.data) - {"_target_"}
    assert keys == {f.name for f in dataclasses.fields(B.DatasetSpec)}
    spec = instantiate(cfg.data)
    assert isinstance(spec, B.DatasetSpec) and spec.simplicity == 0.25
    defaults = B.DatasetSpec()
    assert {k: getattr(spec, k) for k in keys - {"simplicity"}} == \
        {k: getattr(defaults, k) for k in keys - {"simplicity"}}


def test_damaged_parquet_is_rebuilt_not_reused(tmp_path):
    from tsm.data.datamodule import read_rows

    spec = B.DatasetSpec(simplicity=1.0, n_train=20, n_test=4, output_dir=str(tmp_path))
    files = B.build_dataset(spec)
    good = files.train.read_bytes()
    files.train.write_bytes(good[: len(good) // 2])  # a truncated file, e.g. a disk that filled up
    with pytest.raises(ValueError, match=str(files.train)):
        read_rows(str(files.train))  # a clear error naming the file, not a pyarrow traceback
    again = B.build_dataset(spec)
    assert not again.reused and again.train.read_bytes() == good


def _functions(path) -> list[str]:
    return [r["extra_info"]["function_sympy"] for r in rows(path)]


def test_exclude_keeps_a_fixed_test_split_out_of_a_fresh_build(tmp_path):
    """A build with another seed shares functions with a fixed test split (short random trees
    repeat), unless that split is excluded: then none of them, and the counts say how many."""
    out = str(tmp_path / "data")
    fixed = {"simplicity": 0.0, "max_depth": 2, "n_train": 30, "n_test": 30, "seed": 0}
    fixed_files = B.build_dataset(B.DatasetSpec(output_dir=out, **fixed))
    held_out = set(_functions(fixed_files.test))
    fresh = {"simplicity": 0.0, "max_depth": 2, "n_train": 60, "n_test": 10, "seed": 1,
             "output_dir": out}
    plain = B.build_dataset(B.DatasetSpec(**fresh))
    overlap = held_out & set(_functions(plain.train) + _functions(plain.test))
    assert overlap, "the check needs a distribution that repeats across seeds"

    spec = B.DatasetSpec(**fresh, exclude=[fixed])
    files = B.build_dataset(spec)
    assert files.directory != plain.directory  # the exclusion is part of the generation config
    kept = _functions(files.train) + _functions(files.test)
    assert len(kept) == 70 and not held_out & set(kept)
    meta = files.read_meta()
    assert meta["counts"]["excluded"] >= len(overlap)
    assert meta["config"]["exclude"] == [{"test_of": B.DatasetSpec(output_dir=out, **fixed)
                                          .generation_config()}]
    # the same exclusion named by the parquet path gives the same functions (another folder)
    by_path = B.build_dataset(B.DatasetSpec(**fresh, exclude=[str(fixed_files.test)]))
    assert _functions(by_path.train) == _functions(files.train)
    assert B.build_dataset(B.DatasetSpec(**fresh, exclude=[fixed])).reused


def test_exclude_without_entries_keeps_existing_folders(tmp_path):
    assert B.DatasetSpec(exclude=[]).config_hash() == B.DatasetSpec().config_hash()
    assert "exclude" not in B.DatasetSpec(exclude=None).generation_config()
    # conf/data/smallest.yaml's folder (04715b8b317b before data format 3 renamed the answer fields);
    # the task keys are absent for differentiation, so adding tasks moved no folder
    smallest = B.DatasetSpec(simplicity=0.5, variations=True, n_train=100000, n_test=512, seed=0)
    assert smallest.config_hash() == "306bed39b09f"
    assert "task" not in smallest.generation_config() and "task_options" not in smallest.generation_config()
    assert B.DatasetSpec(task="integration").config_hash() != B.DatasetSpec().config_hash()


@pytest.mark.parametrize("entry, words", [
    ({"simplicity": 2.0}, "not a valid data config"),
    ({"no_such_knob": 1}, "not a valid data config"),
    (3, "or parquet file paths"),
])
def test_bad_exclude_entries_are_clear_errors(entry, words):
    with pytest.raises(ValueError, match=words):
        B.DatasetSpec(exclude=[entry])


def test_exclude_of_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        B.DatasetSpec(exclude=[str(tmp_path / "nope.parquet")]).config_hash()
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(to_table([]).drop_columns(["extra_info"]), foreign)
    spec = B.DatasetSpec(n_train=4, n_test=1, exclude=[str(foreign)], output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="extra_info"):
        B.build_dataset(spec)


def test_first_test_rows_without_a_build_are_the_built_rows(tmp_path):
    """evaluate.py n_rows=k: the first k test rows come from a prefix of the generation, identical
    to the rows a full build writes, and nothing is written meanwhile."""
    from tsm.data.build import DatasetSpec, build_dataset, first_test_rows
    from tsm.io import read_rows

    spec = DatasetSpec(simplicity=0.3, n_train=120, n_test=40, seed=5, workers=0, chunk_size=8,
                       output_dir=str(tmp_path / "d"))
    calls = []
    from tsm.data import build

    real = build.generate_candidate

    def counting(item):
        calls.append(item[1])
        return real(item)

    build.generate_candidate = counting
    try:
        few = first_test_rows(spec, 5)
    finally:
        build.generate_candidate = real
    assert not spec.directory().exists()  # nothing written
    full = read_rows(str(build_dataset(spec).test))
    assert few == full[:5]
    assert first_test_rows(spec, 5) == full[:5]  # now read from the build
    assert first_test_rows(spec, None) == full
    assert 0 < len(calls) < 160 * 0.5  # ~ the first 5/40 of the 160 functions, not all of them


def test_the_headline_rows_are_the_ones_every_figure_was_measured_on():
    """conf/data/headline.yaml's first test rows, as the builder wrote them before tasks were plugins
    (data format 2, read from a build of commit ae7432a): the task seam changed field names only."""
    rows = B.first_test_rows(B.DatasetSpec(simplicity=0.5, variations=True, n_train=256, n_test=5000,
                                           seed=100, output_dir="/nonexistent"), 3)
    assert [(r["extra_info"]["function_sympy"], r["extra_info"]["answer_sympy"], r["prompt"][1]["content"])
            for r in rows] == [
        ("46*x**4 + 29", "184*x**3", "Take the derivative of 46*x^4+29 with respect to x."),
        ("exp(-x)", "-exp(-x)", "What is d/dx of e^(-x)?"),
        ("38*exp(x) + 5*sin(11*x)*cos(20*x)", "38*exp(x) - 100*sin(11*x)*sin(20*x) + 55*cos(11*x)*cos(20*x)",
         "What is the derivative of the following function w.r.t. x: 38e**{x}+ 5\\sin{(11x)} \\cos{(20 x)}"),
    ]
    assert {r["data_source"] for r in rows} == {"tsm/differentiation"}
