"""SFT curricula: the competence schedule, easiest-first batches, and the hand-off to the epoch plan."""

from __future__ import annotations

import itertools

import pytest

from tsm.data.build import DatasetSpec
from tsm.data.curriculum import Curriculum
from tsm.data.datamodule import SFTDataModule, StepBatches
from tsm.data.sft import SFTExample
from tsm.math.sampling import TREE_TYPE
from tsm.models.math_tokenizer import build_math_tokenizer


def examples_of_lengths(lengths: list[int]) -> list[SFTExample]:
    # prompt of 3 tokens, then `n` target tokens: n_target_tokens == n
    return [SFTExample([1, 2, 3] + [4] * n, [-100] * 3 + [4] * n) for n in lengths]


def test_competence_schedule():
    cur = Curriculum(by="length", steps=100, start=0.2)
    values = [cur.competence(g) for g in range(0, 120, 5)]
    assert values[0] == pytest.approx(0.2)
    assert all(a < b for a, b in itertools.pairwise(values[:20]))  # strictly rising until `steps`
    assert cur.competence(100) == 1.0 and cur.competence(10_000) == 1.0
    assert cur.competence(25) == pytest.approx((0.04 + 0.96 * 0.25) ** 0.5)  # the sqrt schedule
    off = Curriculum()
    assert not off.active and off.competence(0) == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"by": "difficulty", "steps": 10}, "curriculum.by"), ({"by": "length", "steps": 0}, "steps > 0"),
     ({"by": "length", "steps": 10, "start": 0.0}, "start"), ({"steps": -1}, "steps")],
)
def test_bad_curriculum_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Curriculum(**kwargs)


def test_rank_orders_by_length_or_type_then_length():
    lengths = [5, 1, 9, 3, 7, 2]
    types = ["polynomial", TREE_TYPE, "trigonometric", TREE_TYPE, "exponential", "log"]
    by_len = Curriculum(by="length", steps=1).rank(lengths, types, seed=0)
    assert [lengths[i] for i in by_len] == [1, 2, 3, 5, 7, 9]
    by_type = Curriculum(by="type", steps=1).rank(lengths, types, seed=0)
    assert by_type == [5, 0, 4, 2, 1, 3]  # templates 2,5,7,9 then random trees 1,3


def test_early_batches_come_from_the_easiest_share_and_later_ones_from_the_epoch_plan():
    n, batch = 200, 8
    lengths = [(i * 37) % n + 1 for i in range(n)]  # a permutation of 1..200, not in order
    examples = examples_of_lengths(lengths)
    cur = Curriculum(by="length", steps=12, start=0.2)
    ranking = cur.rank(lengths, [None] * n, seed=0)
    ds = StepBatches(examples, batch, batch, pad_id=0, seed=3, curriculum=cur, ranking=ranking)
    plain = StepBatches(examples, batch, batch, pad_id=0, seed=3)
    for g in range(12):
        limit = cur.competence(g) * n  # the easiest ceil(c * n) examples have lengths 1..ceil(c * n)
        got = [lengths[i] for i in ds._plan[g]]
        assert max(got) <= limit + 1 and len(set(ds._plan[g])) == batch
        assert got == sorted(got)  # sorted within the batch, like the bucketed plan
    assert max(lengths[i] for i in ds._plan[0]) <= 40  # step 0: only the shortest 20%
    assert ds._plan[12:] == plain._plan[12:]  # after the curriculum: the ordinary epoch plan
    assert ds._plan[:12] != plain._plan[:12]
    # mean target length rises with competence
    first = sum(lengths[i] for g in range(3) for i in ds._plan[g])
    late = sum(lengths[i] for g in range(9, 12) for i in ds._plan[g])
    assert first < late


def test_curriculum_is_deterministic_resumable_and_spans_epochs():
    n, batch = 48, 8  # 6 steps per epoch; curriculum over 9 steps reaches into epoch 1
    lengths = list(range(1, n + 1))
    examples = examples_of_lengths(lengths)
    cur = Curriculum(by="length", steps=9, start=0.25)
    ranking = cur.rank(lengths, [None] * n, seed=0)
    e0 = StepBatches(examples, batch, batch, 0, seed=1, curriculum=cur, ranking=ranking)
    again = StepBatches(examples, batch, batch, 0, seed=1, curriculum=cur, ranking=ranking)
    assert e0._plan == again._plan
    resumed = StepBatches(examples, batch, batch, 0, seed=1, start_step=4, curriculum=cur, ranking=ranking)
    assert resumed[0][0]["input_ids"].tolist() == e0[4][0]["input_ids"].tolist()
    e1 = StepBatches(examples, batch, batch, 0, seed=1, epoch=1, curriculum=cur, ranking=ranking)
    plain1 = StepBatches(examples, batch, batch, 0, seed=1, epoch=1)
    # global steps 6, 7, 8 are still curriculum steps; 9.. are epoch 1's own plan
    for s in range(3):
        assert e1._plan[s] == sorted(cur.batch(ranking, 6 + s, batch, 1), key=lambda i: lengths[i])
    assert e1._plan[3:] == plain1._plan[3:]
    with pytest.raises(ValueError, match="ranking"):
        StepBatches(examples, batch, batch, 0, curriculum=cur)
    with pytest.raises(ValueError, match="ranking"):
        StepBatches(examples, batch, batch, 0, curriculum=cur, ranking=[0] * n)


def test_datamodule_type_curriculum_starts_with_templates(tmp_path):
    spec = DatasetSpec(simplicity=0.5, n_train=120, n_test=8, variations=False, seed=5, output_dir=str(tmp_path))
    dm = SFTDataModule(spec, batch_size=8, micro_batch_size=8, n_val=4, n_val_generate=2,
                       curriculum={"by": "type", "steps": 4, "start": 0.2})
    dm.set_tokenizer(build_math_tokenizer())
    dm.setup()
    import pyarrow.parquet as pq

    rows = pq.read_table(dm.files.train).to_pylist()
    assert len(dm.train_examples) == len(rows)  # answer targets: one example per row, in row order
    is_tree = [r["extra_info"]["function_type"] == TREE_TYPE for r in rows]
    assert 0 < sum(is_tree) < len(rows)
    first = dm.train_dataloader().dataset._plan[0]
    assert len(first) == 8 and not any(is_tree[i] for i in first)  # the easiest 20% are all templates
    n_templates = len(rows) - sum(is_tree)
    assert all(not is_tree[i] for i in dm.ranking[:n_templates])
    assert all(is_tree[i] for i in dm.ranking[n_templates:])
    off = SFTDataModule(spec, batch_size=8, micro_batch_size=8, n_val=4, n_val_generate=2)
    off.set_tokenizer(build_math_tokenizer())
    off.setup()
    assert off.ranking is None and not off.curriculum.active
