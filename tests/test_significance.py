"""Welch's t-test on seed sweeps: matches the textbook formula and tells noise from effects."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from course_lib.ablation import run_ablation
from course_lib.significance import compare_pairs, format_comparisons, welch_t_test


def test_welch_matches_formula_and_scipy():
    a, b = [0.90, 0.91, 0.92], [0.93, 0.95, 0.94]
    r = welch_t_test(a, b)
    se = math.sqrt(0.01**2 / 3 + 0.01**2 / 3)
    assert r.diff == pytest.approx(0.03) and r.se == pytest.approx(se)
    assert r.t == pytest.approx(0.03 / se) and r.dof == pytest.approx(4.0)
    assert r.p == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)


def test_effect_larger_than_noise_and_one_that_is_not():
    results = run_ablation({"base": lambda s: [0.880, 0.882, 0.881][s],
                            "big": lambda s: [0.910, 0.912, 0.909][s],
                            "tiny": lambda s: [0.879, 0.884, 0.882][s]}, seeds=[0, 1, 2], verbose=False)
    rows = {r["b"]: r for r in compare_pairs(results, [("base", "big"), ("base", "tiny")])}
    assert rows["big"]["larger_than_noise"] and rows["big"]["p"] < 0.001
    assert not rows["tiny"]["larger_than_noise"] and rows["tiny"]["p"] > 0.3
    text = format_comparisons(list(rows.values()))
    assert "base -> big" in text and "yes" in text and "no" in text


def test_holm_correction_is_stricter():
    scores = {"a": [0.0, 0.01, 0.02], "b": [0.03, 0.045, 0.05], "c": [0.02, 0.035, 0.04]}
    raw = compare_pairs(scores, [("a", "b"), ("a", "c")])
    holm = compare_pairs(scores, [("a", "b"), ("a", "c")], holm=True)
    assert all(h["p_adj"] >= r["p"] for h, r in zip(holm, raw))
    assert min(h["p_adj"] for h in holm) == pytest.approx(2 * min(r["p"] for r in raw))


def test_zero_spread_is_handled():
    assert welch_t_test([0.5, 0.5], [0.6, 0.6]).p == 0.0
    assert welch_t_test([0.5, 0.5], [0.5, 0.5]).p == 1.0


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="Run more seeds"):
        welch_t_test([0.9], [0.8, 0.85])
    with pytest.raises(ValueError, match="NaN"):
        welch_t_test([0.9, float("nan")], [0.8, 0.85])
    with pytest.raises(KeyError, match=r"\['zz'\]"):
        compare_pairs({"a": [1, 2]}, [("a", "zz")])
    with pytest.raises(ValueError, match="alpha"):
        compare_pairs({"a": [1, 2]}, [], alpha=5)
