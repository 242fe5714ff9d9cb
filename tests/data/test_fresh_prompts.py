"""RL prompts from fresh functions: deterministic per (seed, step, rank), a resume sees the same
steps, refill continues the step's own sequence, no test function, disjoint ranks."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from tests.data.test_stream import small_spec
from tsm.data.build import build_dataset
from tsm.data.prompts import FreshPromptDataModule, StepPrompts
from tsm.io import read_rows


@pytest.fixture(scope="module")
def tokenizer():
    from tsm.models import build_math_tokenizer

    return build_math_tokenizer()


def module(spec, tokenizer, step=0, rank=0, world=1, batch_size=4, **stream) -> FreshPromptDataModule:
    dm = FreshPromptDataModule(spec, stream={"seed": 11, **stream}, batch_size=batch_size, n_val_generate=4)
    dm.set_tokenizer(tokenizer)
    dm.setup("fit")
    dm.trainer = SimpleNamespace(global_step=step, global_rank=rank, world_size=world, lightning_module=None,
                                 current_epoch=0)
    return dm


def steps(dm, n) -> list[StepPrompts]:
    return list(itertools.islice(iter(dm.train_dataloader()), n))


def gts(items) -> list[str]:
    return [p.ground_truth for p in items]


def test_fresh_prompt_steps_are_deterministic_and_resume_exactly(tmp_path, tokenizer):
    spec = small_spec(tmp_path)
    a = steps(module(spec, tokenizer), 4)
    b = steps(module(spec, tokenizer, step=2), 2)  # a run resumed at step 2
    assert [s.step for s in a] == [0, 1, 2, 3] and [s.step for s in b] == [2, 3]
    assert [gts(s) for s in a[2:]] == [gts(s) for s in b]
    assert all(len(s) == 4 for s in a)
    assert gts(a[0]) != gts(a[1])
    # the refill continues the step's own sequence: same for both runs, no repeat within the step
    more_a, more_b = a[3].draw(6), b[1].draw(6)
    assert gts(more_a) == gts(more_b)
    keys = [p.token_ids for p in a[3].prompts + more_a]
    assert len({tuple(k) for k in keys}) == len(keys)
    # another stream seed, other prompts
    c = steps(module(spec, tokenizer, seed=12), 1)
    assert gts(c[0]) != gts(a[0])


def test_no_test_function_and_disjoint_ranks(tmp_path, tokenizer, monkeypatch):
    from tsm.data import stream

    spec = small_spec(tmp_path, simplicity=0.1, max_depth=1, n_train=8, n_test=40)  # a small space: test functions are drawn often
    dm = module(spec, tokenizer, batch_size=16)
    rows = read_rows(build_dataset(spec).test)
    test_fns = {r["extra_info"]["function_sympy"] for r in rows}
    assert dm.excluded() >= test_fns
    from tsm.data.sft import encode_prompt

    generated: dict[tuple, str] = {}  # prompt token ids -> its function, for every candidate generated
    real = stream.generate_candidate

    def spy(item):
        status, value = real(item)
        if status == "ok":
            generated[tuple(encode_prompt(tokenizer, value["messages"]))] = value["function_sympy"]
        return status, value

    monkeypatch.setattr(stream, "generate_candidate", spy)
    drawn = [p for s in steps(dm, 12) for p in list(s.prompts) + s.draw(16)]
    assert len(drawn) == 12 * 32
    used = {generated[tuple(p.token_ids)] for p in drawn}
    skipped = {fn for fn in generated.values() if fn in test_fns}
    assert skipped, "the draw never met a test function: the exclusion went untested"
    assert not used & test_fns
    r0 = steps(module(spec, tokenizer, rank=0, world=2, batch_size=16), 1)[0]
    r1 = steps(module(spec, tokenizer, rank=1, world=2, batch_size=16), 1)[0]
    assert len(r0) == len(r1) == 8 and not {tuple(p.token_ids) for p in r0} & {tuple(p.token_ids) for p in r1}


def test_a_bad_stream_task_option_fails_at_construction(tmp_path):
    """As the SFT stream does: a bad ``stream.task_options`` knob is one line when the module is
    built (before a model is loaded or a prompt drawn), not at the first training step."""
    with pytest.raises(ValueError, match="course_kinds"):
        FreshPromptDataModule(small_spec(tmp_path), stream={"seed": 1, "task_options": {"course_kinds": {"nope": 1}}})
    with pytest.raises(ValueError, match="variant_share"):
        FreshPromptDataModule(small_spec(tmp_path), stream={"seed": 1, "task_options": {"variant_share": 2}})
    FreshPromptDataModule(small_spec(tmp_path), stream={"seed": 1, "task_options": {"variant_share": 0.2}})
