"""The fresh-function stream: same batches for any worker count and after a resume, no function
twice, none of an excluded test split, disjoint rank slices, the simplicity schedule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tsm.data.build import DatasetSpec, build_dataset
from tsm.data.stream import (
    ROW_TYPES,
    FreshStream,
    StreamConfig,
    StreamingSFTDataModule,
    usable_candidates,
)


@pytest.fixture(scope="module")
def tokenizer():
    from tsm.models import build_math_tokenizer

    return build_math_tokenizer()


def small_spec(tmp_path, **kw) -> DatasetSpec:
    values = {"simplicity": 0.5, "n_train": 16, "n_test": 24, "seed": 3, "max_depth": 2,
              "output_dir": str(tmp_path / "data"), **kw}
    return DatasetSpec(**values)


def module(spec, tokenizer, step=0, batch_size=8, micro=4, **stream) -> StreamingSFTDataModule:
    dm = StreamingSFTDataModule(spec, stream={"seed": 7, "workers": 0, **stream}, batch_size=batch_size,
                                micro_batch_size=micro, n_val=8, n_val_generate=4, max_length=320)
    dm.set_tokenizer(tokenizer)
    dm.setup("fit")
    dm.trainer = SimpleNamespace(global_step=step, global_rank=0, world_size=1)
    return dm


def take(stream: FreshStream, n: int) -> list[list]:
    """The first n global batches (candidates, in order) of a stream."""
    out = []
    for _, batch in stream.steps():
        out.append(batch)
        if len(out) == n:
            return out
    raise AssertionError("the stream ended")


def make_stream(dm, start=0, workers=0, rank=0, world=1) -> FreshStream:
    return FreshStream(dm.generator(), dm.batch_size, dm.micro_batch_size, dm.pad_id, start, dm.seen,
                       dm.used, workers, 2, rank, world)


def digests(batches) -> list[list[int]]:
    return [[c.digest for c in b] for b in batches]


def test_same_steps_for_any_worker_count(tmp_path, tokenizer):
    spec = small_spec(tmp_path)
    inline = take(make_stream(module(spec, tokenizer)), 5)
    two = take(make_stream(module(spec, tokenizer), workers=2), 5)
    assert digests(inline) == digests(two)
    assert all(len(b) == 8 for b in inline)
    # and the token ids are the same, not just the functions
    assert [c.example.input_ids for c in inline[4]] == [c.example.input_ids for c in two[4]]


def test_no_function_twice_and_none_from_excluded_test_splits(tmp_path, tokenizer):
    # a small space (depth-1 trees, mostly random trees) so that repeats and test functions are
    # drawn often and both rules have to act
    spec = small_spec(tmp_path, simplicity=0.1, max_depth=1, n_train=8, n_test=40)
    other = small_spec(tmp_path, simplicity=0.1, max_depth=1, n_train=8, n_test=40, seed=11)
    dm = module(spec, tokenizer, micro=8, exclude=[{"simplicity": 0.1, "max_depth": 1, "n_train": 8,
                                                    "n_test": 40, "seed": 11}])
    batches = take(make_stream(dm), 12)
    seen = [c.digest for b in batches for c in b]
    assert len(seen) == len(set(seen)) == 96
    from tsm.data.datamodule import read_rows

    excluded = {r["extra_info"]["function_sympy"] for s in (spec, other) for r in read_rows(build_dataset(s).test)}
    assert len(excluded) > 40  # two seeds' test splits overlap in the short functions
    trained = {c.function_sympy for b in batches for c in b}
    assert not trained & excluded
    assert excluded <= dm.excluded()
    # the rules did act: without them this stream repeats functions and draws test functions
    free = module(spec, tokenizer, micro=8, oversample=1.0)
    free._excluded = frozenset()
    raw = [c for s in range(12) for c in free.generator().candidates(s)[0]]
    assert len({c.digest for c in raw}) < len(raw) or {c.function_sympy for c in raw} & excluded


def test_resume_sees_the_batches_of_an_uninterrupted_run(tmp_path, tokenizer):
    spec = small_spec(tmp_path, simplicity=0.2)
    full_dm = module(spec, tokenizer)
    full = take(make_stream(full_dm), 8)
    # a run that stopped after step 4: its checkpoint holds the data module's state at step 4,
    # although the stream had already prepared later steps (Lightning prefetches)
    first_dm = module(spec, tokenizer)
    take(make_stream(first_dm), 6)
    first_dm.trainer.global_step = 4
    state = first_dm.state_dict()
    assert state["stream_steps"].tolist() == [0, 1, 2, 3]
    resumed_dm = module(spec, tokenizer, step=4)
    resumed_dm.load_state_dict(state)
    loader = resumed_dm.train_dataloader()
    resumed = take(loader.dataset, 4)
    assert digests(resumed) == digests(full[4:])
    # a resume that forgot the state would draw repeats of earlier steps' functions
    assert resumed_dm.last_stream.start_step == 4


def test_rank_slices_are_disjoint_and_cover_the_global_batch(tmp_path, tokenizer):
    spec = small_spec(tmp_path)
    one = next(iter(make_stream(module(spec, tokenizer, batch_size=8, micro=4))))
    r0 = next(iter(make_stream(module(spec, tokenizer, batch_size=8, micro=2), rank=0, world=2)))
    r1 = next(iter(make_stream(module(spec, tokenizer, batch_size=8, micro=2), rank=1, world=2)))

    def rows(micro_batches):
        return [tuple(ids[m.bool()].tolist()) for mb in micro_batches
                for ids, m in zip(mb["input_ids"], mb["attention_mask"])]

    assert len(rows(r0)) == len(rows(r1)) == 4
    assert not set(rows(r0)) & set(rows(r1))
    assert sorted(rows(r0) + rows(r1)) == sorted(rows(one))
    for mb in one:  # labels are -100 on prompt and padding, targets elsewhere
        assert mb["input_ids"].shape == mb["labels"].shape == mb["attention_mask"].shape
        assert ((mb["labels"] != -100) <= mb["attention_mask"].bool()).all()


def test_micro_batches_name_each_rows_function_type(tmp_path, tokenizer):
    """Each micro-batch row carries its candidate's function_type (what selective backprop counts)."""
    spec = small_spec(tmp_path)
    (cands,) = take(make_stream(module(spec, tokenizer)), 1)
    by_row = {tuple(c.example.input_ids): c.label for c in cands}
    micro_batches = next(iter(make_stream(module(spec, tokenizer))))
    got = [(tuple(ids[m.bool()].tolist()), t) for mb in micro_batches
           for ids, m, t in zip(mb["input_ids"], mb["attention_mask"], mb[ROW_TYPES], strict=True)]
    assert len(got) == 8 and all(by_row[row] == t for row, t in got)
    assert len({t for _, t in got}) > 1
    # variants (and course draws) are labelled with their kind: variant/sum, variant/scale, ...
    (cands,) = take(make_stream(module(small_spec(tmp_path, task_options={"variant_share": 1.0}), tokenizer)), 1)
    assert {c.label.split("/")[0] for c in cands} == {"variant"}
    assert {c.label.split("/")[1] for c in cands} <= {"scale", "plus_constant", "inner_scale",
                                                         "bigger_coefficient", "sum"}


def test_simplicity_schedule_and_bad_knobs():
    cfg = StreamConfig(schedule=[[0, 0.5], [100, 0.1]])
    assert cfg.simplicity_at(0, 0.9) == 0.5 and cfg.simplicity_at(50, 0.9) == 0.3
    assert cfg.simplicity_at(1000, 0.9) == 0.1
    assert StreamConfig().simplicity_at(7, 0.4) == 0.4 and StreamConfig(simplicity=0.2).simplicity_at(7, 0.4) == 0.2
    for bad in ({"schedule": [[10, 0.5], [5, 0.1]]}, {"schedule": [[0, 1.5]]}, {"workers": -1},
                {"oversample": 0.5}, {"seed": -1}):
        with pytest.raises(ValueError, match="stream\\."):
            StreamConfig(**bad)


def test_schedule_changes_the_mix(tmp_path, tokenizer):
    spec = small_spec(tmp_path, max_depth=3)
    templates = module(spec, tokenizer, batch_size=16, micro=16, simplicity=1.0)
    trees = module(spec, tokenizer, batch_size=16, micro=16, simplicity=0.0)
    assert all(c.function_type != "composite-complex" for b in take(make_stream(templates), 2) for c in b)
    assert all(c.function_type == "composite-complex" for b in take(make_stream(trees), 2) for c in b)


def test_module_refuses_other_targets(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="answer or steps, not 'responses'"):
        StreamingSFTDataModule(small_spec(tmp_path), sft_target="responses", responses_path=str(tmp_path / "r.parquet"))
    with pytest.raises(ValueError, match="task 'integration' has no step-by-step targets"):
        StreamingSFTDataModule(small_spec(tmp_path, task="integration"), sft_target="steps")
    batch = next(iter(module(small_spec(tmp_path), tokenizer).train_dataloader()))
    assert isinstance(batch, list) and isinstance(batch[0]["input_ids"], torch.Tensor)


def test_steps_targets_stream_the_same_functions_with_their_derivations(tmp_path, tokenizer):
    """``sft_target=steps``: the same fresh functions as the answer stream, each trained on the
    task's derivation of it (the text ``sft_target=steps`` gives a dataset row), ending in the boxed
    gold answer; the answer stream's target is exactly that last line."""
    from tsm.data.sft import IGNORE_INDEX, answer_only
    from tsm.tasks.differentiation import steps_target

    spec = small_spec(tmp_path)
    answers = take(make_stream(module(spec, tokenizer)), 2)
    dm = StreamingSFTDataModule(spec, sft_target="steps", stream={"seed": 7, "workers": 0}, batch_size=8,
                                micro_batch_size=4, n_val=8, n_val_generate=4, max_length=320)
    dm.set_tokenizer(tokenizer)
    dm.setup("fit")
    dm.trainer = SimpleNamespace(global_step=0, global_rank=0, world_size=1)
    steps = take(make_stream(dm), 2)
    assert digests(steps) == digests(answers)

    def target(c) -> str:
        ids = [i for i, lab in zip(c.example.input_ids, c.example.labels) if lab != IGNORE_INDEX]
        return tokenizer.decode(ids, skip_special_tokens=True)
    gen = dm.generator()
    for a, s in zip([c for b in answers for c in b], [c for b in steps for c in b]):
        answer_text, steps_text = target(a).strip(), target(s).strip()
        assert steps_text.endswith(answer_text) and steps_text.startswith("f(x) = ")
        assert len(steps_text) > len(answer_text)
    # the text is the dataset path's steps_target of the same row
    _, value, _ = next(iter(usable_candidates(gen.task_args(0), 0, gen.excluded, set(), 0, "step 0")))
    row = {"data_source": "tsm/differentiation", "extra_info": value}
    assert gen.target_text(value) == steps_target(row)
    assert gen.target_text(value).endswith(answer_only(value["answer"]))


def test_stream_task_options_change_training_draws_only(tmp_path, tokenizer):
    """``stream.task_options`` lays sampler knobs over the data config's for training: every
    training draw is a course exercise with course_share 1, while the validation rows (the data
    config's test split) and the exclusions are the same as without it; a bad knob is one line."""
    from tsm.math import sampling

    spec = small_spec(tmp_path)
    plain = module(spec, tokenizer)
    course = module(spec, tokenizer, task_options={"course_share": 1.0, "course_kinds": {"product": 3}})
    assert course.excluded() == plain.excluded()
    assert course.val_rows == plain.val_rows and len(plain.val_rows) == 8
    trained = take(make_stream(course), 3)
    assert {c.function_type for b in trained for c in b} == {sampling.COURSE_TYPE}
    assert {c.function_type for b in take(make_stream(plain), 3) for c in b} <= set(sampling.FUNCTION_TYPES)
    with pytest.raises(ValueError, match="course_kinds"):
        module(spec, tokenizer, task_options={"course_kinds": {"nope": 1}})
    with pytest.raises(ValueError, match="stream.task_options"):
        StreamConfig(task_options=[1, 2])
