"""experiments/smallest_model/breakdown.py on hand-made responses.parquet files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "smallest_model" / "breakdown.py"


@pytest.fixture(scope="module")
def breakdown():
    return load_script(SCRIPT)


def write(path: Path, rows: list[tuple[str, str, float]]) -> str:
    """A responses.parquet of (function_type, gold derivative, score) rows, as evaluate.py writes."""
    table = pa.table({
        "extra_info": [{"index": i, "function": f"f{i}", "answer": gold, "function_type": kind}
                       for i, (kind, gold, _) in enumerate(rows)],
        "responses": [["\\boxed{...}"] for _ in rows],
        "scores": [[score] for _, _, score in rows],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


def test_sign_test_matches_the_exact_binomial(breakdown):
    assert breakdown.sign_test(0, 0) == 1.0
    assert breakdown.sign_test(6, 0) == pytest.approx(2 / 64)
    assert breakdown.sign_test(0, 6) == pytest.approx(2 / 64)
    assert breakdown.sign_test(16, 8) == pytest.approx(0.1516, abs=1e-4)
    assert breakdown.sign_test(5, 5) == 1.0


def test_table_and_paired_comparison(breakdown, tmp_path, capsys):
    trees = "composite-complex"
    a = write(tmp_path / "a" / "responses.parquet", [
        ("polynomial", "2 x", 1.0), ("polynomial", "3", 0.1),
        (trees, "x" * 10, 1.0), (trees, "x" * 50, 0.1), (trees, "x" * 90, 0.0),
    ])
    b = write(tmp_path / "b" / "responses.parquet", [
        ("polynomial", "2 x", 1.0), ("polynomial", "3", 1.0),
        (trees, "x" * 10, 0.1), (trees, "x" * 50, 1.0), (trees, "x" * 90, 1.0),
    ])
    breakdown.main([a, b, "--buckets", "20", "60"])
    out = capsys.readouterr().out
    assert "| all | 5 | 40.0% | 80.0% |" in out
    assert "| polynomial | 2 | 50.0% | 100.0% |" in out
    assert "| composite-complex | 3 | 33.3% | 66.7% |" in out
    assert "| composite-complex, gold 1–20 chars | 1 | 100.0% | 0.0% |" in out
    assert "| composite-complex, gold 21–60 chars | 1 | 0.0% | 100.0% |" in out
    assert "| composite-complex, gold > 60 chars | 1 | 0.0% | 100.0% |" in out
    assert "| gold computes no number | 3 | 33.3% | 66.7% |" in out  # the trees' golds have no digit
    assert "| largest computed number 1–9 | 2 | 50.0% | 100.0% |" in out  # 2 and 3: not in f0, f1
    assert "computed number 10" not in out  # empty groups are left out
    # default names are the folders; b solves 3 rows a does not, a solves 1 that b does not
    assert "b vs a: only b solves 3, only a solves 1 (sign test p = 0.625); random trees 2 vs 1 (p = 1)" in out


def test_a_verdicts_csv_column_takes_its_rows_from_a_parquet(breakdown, tmp_path, capsys):
    b = write(tmp_path / "b" / "responses.parquet", [("polynomial", "2 x", 1.0), ("polynomial", "3", 0.0)])
    csv_path = tmp_path / "v.csv"
    csv_path.write_text("index,start,a\n0,0,1\n1,1,1\n")
    breakdown.main([f"{csv_path}:a", b])
    out = capsys.readouterr().out
    assert "| polynomial | 2 | 100.0% | 50.0% |" in out  # the column is named after itself
    assert "b vs a: only b solves 0, only a solves 1" in out
    with pytest.raises(SystemExit, match="no model column 'c'"):
        breakdown.main([f"{csv_path}:c", b])
    csv_path.write_text("index,a\n0,1\n")
    with pytest.raises(ValueError, match="different rows"):
        breakdown.main([f"{csv_path}:a", b])
    with pytest.raises(SystemExit):  # no parquet to take the rows from
        breakdown.main([f"{csv_path}:a"])


def test_computed_number_is_the_largest_integer_the_function_does_not_show(breakdown):
    assert breakdown.computed_number("46 x^{4} + 29", "184 x^{3}") == 184
    assert breakdown.computed_number("x^{2} + 7", "2 x") == 0  # the exponent is copied down
    assert breakdown.computed_number("2 x^{3}", "6 x^{2}") == 6  # 2 is shown, 6 is computed
    assert breakdown.computed_number("e^{13 x}", "13 e^{13 x}") == 0  # copied, not computed
    assert breakdown.computed_number("\\sin{(x)}", "\\cos{(x)}") == 0


def test_files_of_different_rows_are_refused(breakdown, tmp_path, capsys):
    a = write(tmp_path / "a" / "responses.parquet", [("polynomial", "2 x", 1.0)])
    b = write(tmp_path / "b" / "responses.parquet", [("polynomial", "2 x", 1.0), ("polynomial", "3", 1.0)])
    with pytest.raises(ValueError, match="different rows"):
        breakdown.main([a, b])
    assert capsys.readouterr().out == ""  # refused before any table is printed
    with pytest.raises(SystemExit):
        breakdown.main([a, b, "--names", "same", "same"])


def test_rl_vs_sft_compare_table_and_verdicts_roundtrip(tmp_path, capsys):
    compare = load_script(Path(__file__).resolve().parents[1] / "experiments" / "rl_vs_sft" / "compare.py")
    # start solves rows 0-7 of 10; the arm solves 0-5 and 8-9: 2 rows gained, 2 lost
    start = write(tmp_path / "s.parquet", [("t", "1", 1.0 if i < 8 else 0.0) for i in range(10)])
    arm = write(tmp_path / "a.parquet", [("t", "1", 1.0 if i < 6 or i >= 8 else 0.0) for i in range(10)])
    csv_path = tmp_path / "v.csv"
    compare.main([start, f"sft={arm}", "--verdicts", str(csv_path)])
    first = capsys.readouterr().out
    row = next(line for line in first.splitlines() if line.startswith("| sft"))
    assert "80.00%" in row and "| 2 / 2 | 1 |" in row and "+0.0%" in row
    compare.main(["--from-verdicts", str(csv_path)])
    assert capsys.readouterr().out == first  # the committed CSV reproduces the table
    # a new model pairs with a committed CSV column (rows matched by index)
    better = write(tmp_path / "b.parquet", [("t", "1", 1.0 if i != 9 else 0.0) for i in range(10)])
    compare.main([f"{csv_path}:sft", f"new={better}", "--verdicts", str(tmp_path / "v2.csv")])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| new"))
    assert "90.00%" in row and "| 2 / 1 |" in row  # gains rows 6, 7; loses row 9
    lines = (tmp_path / "v2.csv").read_text().splitlines()
    assert lines[0] == "index,start,new" and lines[1] == "0,1,1" and lines[-1] == "9,1,0" and len(lines) == 11
    with pytest.raises(SystemExit, match="no model column 'nope'"):
        compare.main([f"{csv_path}:nope", f"new={better}"])


def test_steps_stream_speed_prints_both_targets_and_the_ratio(capsys):
    speed = load_script(SCRIPT.parent / "steps_stream_speed.py")
    speed.main(["--steps", "1", "--keep", "4"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith(("| answer", "| steps"))}
    assert set(rows) == {"answer (peer)", "steps"}
    answer_tokens = float(rows["answer (peer)"].split("|")[3])
    steps_tokens = float(rows["steps"].split("|")[3])
    assert steps_tokens > answer_tokens > 0   # derivations are longer than the boxed answer alone
    assert "steps / answer:" in out and "the same functions" in out


def test_selection_by_type_sums_a_runs_steps(tmp_path, capsys):
    """The per-type selection counts of a metrics CSV (steps with missing columns count 0)."""
    selection = load_script(Path(__file__).resolve().parents[1] / "experiments" / "coverage" / "selection_by_type.py")
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(
        "step,train/loss,train/candidates/polynomial,train/selected/polynomial,"
        "train/candidates/variant/sum,train/selected/variant/sum\n"
        "0,0.5,6,1,2,2\n"
        "0,,,,,\n"  # a validation row
        "1,0.4,8,2,,\n")
    selection.main([str(csv_path)])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["variant/sum"] == ["2", "12.5%", "2", "40.0%", "100.0%"]
    assert rows["polynomial"] == ["14", "87.5%", "3", "60.0%", "21.4%"]
    assert rows["all"] == ["16", "100%", "5", "100%", "31.2%"]
    assert next(iter(rows)) == "variant/sum"  # the family selected most often first
    empty = tmp_path / "plain.csv"
    empty.write_text("step,train/loss\n0,0.5\n")
    with pytest.raises(SystemExit, match="no train/candidates"):
        selection.main([str(empty)])
