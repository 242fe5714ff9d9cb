"""The 95% interval and the paired test that every reported accuracy carries."""

from __future__ import annotations

import math

import pytest

from tsm.stats import (
    describe,
    is_verdict_column,
    read_verdict_column,
    read_verdicts,
    sign_test,
    wilson_interval,
)


def test_wilson_interval_known_values():
    # the closed form (Wilson 1927) worked by hand: p = 487/512, centre 0.9478, half-width 0.0189
    lo, hi = wilson_interval(487, 512)
    assert lo == pytest.approx(0.9289, abs=5e-4) and hi == pytest.approx(0.9667, abs=5e-4)
    lo, hi = wilson_interval(4770, 5000)
    assert lo == pytest.approx(0.9478, abs=5e-4) and hi == pytest.approx(0.9595, abs=5e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_interval_narrows_with_rows_as_sqrt_n():
    lo, hi = wilson_interval(486, 512)
    w512 = hi - lo
    lo, hi = wilson_interval(4746, 5000)
    w5000 = hi - lo
    assert w512 / w5000 == pytest.approx(math.sqrt(5000 / 512), rel=0.05)


def test_sign_test_and_describe():
    assert sign_test(0, 0) == 1.0 and sign_test(3, 3) == 1.0
    assert sign_test(13, 3) == pytest.approx(2 * sum(math.comb(16, k) for k in range(4)) / 2**16)
    assert describe(4756, 5000).startswith("95.12% [94.5, 95.7] (4756/5000)")


def test_paired_sign_test_counts_the_discordant_rows_and_refuses_other_rows():
    from tsm.stats import paired_sign_test, sign_test

    a = {1: True, 2: True, 3: False, 4: False, 5: True}
    b = {1: True, 2: False, 3: True, 4: True, 5: True}
    assert paired_sign_test(a, b) == (2, 1, sign_test(2, 1))
    with pytest.raises(ValueError, match="different rows"):
        paired_sign_test(a, {**b, 6: True})


def test_verdict_columns_are_read_by_name_and_a_missing_one_is_one_line(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("index,old,new\n0,1,0\n1,0,1\n2,1,1\n")
    assert read_verdicts(path) == {"old": {"0": True, "1": False, "2": True},
                                   "new": {"0": False, "1": True, "2": True}}
    assert read_verdict_column(f"{path}:new") == {"0": False, "1": True, "2": True}
    assert is_verdict_column(f"{path}:new") and not is_verdict_column("run/responses.parquet")
    with pytest.raises(SystemExit, match="has no model column 'mid' \\(it has old, new\\)"):
        read_verdict_column(f"{path}:mid")
