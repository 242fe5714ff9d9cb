"""The dataset and the reward agree: every row's own derivative scores 1, its prompt denotes f."""

import pytest

from tsm.data.build import DatasetSpec, build_dataset
from tsm.data.datamodule import read_rows
from tsm.math.equivalence import equivalent, gold_values
from tsm.math.parse import parse_expression
from tsm.reward import RewardScorer


@pytest.mark.parametrize("simplicity", [0.0, 0.5, 1.0])
def test_every_gold_scores_correct_in_latex_and_plain(simplicity, tmp_path):
    files = build_dataset(DatasetSpec(simplicity=simplicity, n_train=150, n_test=30, seed=11, output_dir=str(tmp_path)))
    rows = read_rows(files.train) + read_rows(files.test)
    gts = [r["reward_model"]["ground_truth"] for r in rows]
    scorer = RewardScorer(workers=0)
    latex = scorer([f"So $\\boxed{{{r['extra_info']['answer']}}}$." for r in rows], gts)
    plain = scorer([f"\\boxed{{{r['extra_info']['answer_sympy']}}}" for r in rows], gts)
    assert [latex[i].reason for i in range(len(rows))] == ["correct"] * len(rows)
    assert [plain[i].reason for i in range(len(rows))] == ["correct"] * len(rows)
    # answering f instead of f' is wrong (f is never its own derivative in this data: no e^x alone)
    wrong = scorer([f"\\boxed{{{r['extra_info']['function']}}}" for r in rows], gts)
    assert sum(wrong[i].correct for i in range(len(rows))) <= 0.02 * len(rows)


def test_prompt_surface_forms_denote_f(tmp_path):
    files = build_dataset(DatasetSpec(simplicity=0.5, n_train=150, n_test=0, seed=3, output_dir=str(tmp_path)))
    for r in read_rows(files.train):
        info = r["extra_info"]
        assert info["function_shown"] in r["prompt"][1]["content"]
        shown = parse_expression(info["function_shown"])
        assert equivalent(shown, gold_values(parse_expression(info["function_sympy"], dialect="plain"))), info
