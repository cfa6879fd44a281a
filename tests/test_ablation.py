"""Seed sweeps and ablation tables: the numbers, the deltas and the errors."""

from __future__ import annotations

import math

import pytest

from course_lib.ablation import ablation_metrics, ablation_rows, format_ablation, run_ablation, run_seeds


def test_run_seeds_calls_each_seed_once_in_order():
    calls = []
    result = run_seeds(lambda s: calls.append(s) or 0.5 + s / 100, [3, 1, 2], name="arm", verbose=False)
    assert calls == [3, 1, 2]
    assert result.values == pytest.approx([0.53, 0.51, 0.52])
    assert result.mean == pytest.approx(0.52) and result.std == pytest.approx(0.01)
    assert len(result.per_seed_seconds) == 3 and result.seconds >= 0


def test_ablation_rows_give_delta_and_its_standard_error():
    arms = {"base": lambda s: [0.80, 0.82, 0.84][s], "worse": lambda s: [0.70, 0.71, 0.72][s]}
    results = run_ablation(arms, seeds=[0, 1, 2], verbose=False)
    rows = {r["arm"]: r for r in ablation_rows(results, baseline="base")}
    assert rows["base"]["delta"] == 0 and rows["base"]["delta_se"] == 0
    assert rows["worse"]["delta"] == pytest.approx(-0.11)
    assert rows["worse"]["delta_se"] == pytest.approx(math.sqrt(0.02**2 / 3 + 0.01**2 / 3))
    text = format_ablation(list(rows.values()), labels={"worse": "a worse setting"})
    assert "(baseline)" in text and "-11.00 ± 1.29" in text and "a worse setting" in text


def test_single_seed_has_unknown_spread():
    results = run_ablation({"a": lambda s: 0.5, "b": lambda s: 0.6}, seeds=[0], verbose=False)
    rows = {r["arm"]: r for r in ablation_rows(results, "a")}
    assert math.isnan(rows["b"]["delta_se"])
    assert "+10.00" in format_ablation(list(rows.values()))


def test_metrics_are_flat_json_keys():
    results = run_ablation({"no PCA": lambda s: 0.5, "baseline": lambda s: 0.6}, seeds=[0, 1], verbose=False)
    m = ablation_metrics(results)
    assert m == {"ablation_no_pca_mean": 0.5, "ablation_no_pca_std": 0.0,
                 "ablation_baseline_mean": 0.6, "ablation_baseline_std": 0.0}


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="at least one seed"):
        run_seeds(lambda s: 0.0, [])
    with pytest.raises(ValueError, match="distinct"):
        run_seeds(lambda s: 0.0, [1, 1])
    with pytest.raises(ValueError, match="diverged"):
        run_seeds(lambda s: float("nan"), [0], verbose=False)
    with pytest.raises(TypeError, match="must return a number"):
        run_seeds(lambda s: {"acc": 1.0}, [0], verbose=False)
    with pytest.raises(KeyError, match="baseline arm 'x'"):
        ablation_rows(run_ablation({"a": lambda s: 0.1}, [0], verbose=False), baseline="x")
    with pytest.raises(ValueError, match="no letters"):
        ablation_metrics(run_ablation({"--": lambda s: 0.1}, [0], verbose=False))
