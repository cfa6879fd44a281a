"""Notebooks: every pair in sync, every notebook runs headless in the smoke profile."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jupytext
import pytest

from conftest import REPO, real_data_dir

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))

# Keys each notebook's results JSON must have (grows as notebooks land).
EXPECTED_METRICS = {
    "05_model_comparison": {"cnn_test_acc", "resnet18_test_acc", "resnet18_frozen_test_acc", "lstm_test_acc",
                            "attention_test_acc", "vit_test_acc", "cnn_test_acc_std", "resnet18_test_acc_std",
                            "resnet18_frozen_test_acc_std", "lstm_test_acc_std", "attention_test_acc_std",
                            "vit_test_acc_std", "resnet18_weights"},
    "00_getting_started": {"test_acc", "test_top3", "best_val_acc", "epochs", "train_seconds"},
    "01_alexnet": {"test_top1", "test_top3", "test_top4", "test_top5", "train_seconds", "params",
                   "ablation_baseline_mean", "ablation_baseline_std", "ablation_no_pca_mean", "ablation_no_pca_std",
                   "ablation_dropout_mean", "ablation_dropout_std", "ablation_no_overlap_mean",
                   "ablation_no_overlap_std", "ablation_lrn_mean", "ablation_lrn_std"},
    "06_masked_image_modelling": {"mae_probe_full_acc", "random_probe_full_acc", "svc_2500_acc", "logreg_2500_acc",
                                  "mlp_2500_acc", "pretrain_wall_s"},
    "04_fashion_mnist": {"mlp_test_acc", "best_test_acc", "best_model", "best_train_seconds", "superclass_acc",
                         "superclass_balanced_acc", "ablation_baseline_mlp_mean", "ablation_baseline_mlp_std",
                         "ablation_l1_mean", "ablation_l1_std", "aug_none_mean"},
    "03_byol": {"byol_probe100_acc", "byol_probe100_acc_std", "byol_finetune100_acc", "random_init_probe100_acc",
                "pixels_probe100_acc", "supervised100_acc", "byol_kmeans_nmi", "byol_kmeans_ari", "byol_kmeans_acc",
                "final_collapse_std", "pretrain_epochs", "pretrain_wall_s", "byol_probe_all_acc",
                "byol_probe_all_acc_ci_low", "byol_probe_all_acc_ci_high", "byol_knn_all_acc", "byol_finetune_all_acc",
                "byol_finetune_all_acc_ci_low", "byol_finetune_all_acc_ci_high", "finetune_all_lr", "byol_dbscan_eps",
                "byol_ward_ari", "collapsed_demo_std", "finetune_50_acc", "byol_scan_probe100_acc",
                "byol_scan_probe100_acc_std", "byol_scan_cluster_acc"},
    "02_moco": {"supervised100_acc", "supervised100_acc_std", "moco_probe100_acc", "moco_probe100_acc_std",
                "moco_knn100_acc", "moco_finetune100_acc", "random_init_probe100_acc", "pretrain_epochs",
                "pretrain_wall_s", "moco_labelprop100_acc", "moco_labelprop100_acc_std", "pixels_labelprop100_acc",
                "hog_labelprop100_acc", "moco_pixels_labelprop100_acc", "moco_hog_labelprop100_acc", "hog_probe100_acc"},
}


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync(py: Path):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --sync {py.relative_to(REPO)}`"
    assert _cells(jupytext.read(py)) == _cells(jupytext.read(ipynb)), (
        f"{py.name} and {ipynb.name} differ: edit the .py and run `jupytext --sync {py.relative_to(REPO)}`")


def test_first_code_cell_is_tagged_parameters():
    for py in NOTEBOOKS:
        code = [c for c in jupytext.read(py).cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), py.name
        assert "PROFILE" in code[0].source and "INTERACTIVE" in code[0].source, py.name


@pytest.mark.slow
@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(py: Path, tmp_path, monkeypatch):
    if real_data_dir() is None:
        pytest.skip("COURSE_DATA does not point at the datasets (e.g. ../shared/data)")
    import papermill as pm

    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    pm.execute_notebook(str(py.with_suffix(".ipynb")), str(tmp_path / f"{py.stem}.ipynb"),
                        parameters={"PROFILE": "smoke", "INTERACTIVE": False}, kernel_name="python3", language="python",
                        cwd=str(py.parent), progress_bar=False, execution_timeout=600)
    results = json.loads((tmp_path / f"{py.stem}.results.json").read_text())
    assert results["profile"] == "smoke"
    assert EXPECTED_METRICS.get(py.stem, set()) <= set(results["metrics"]), results["metrics"].keys()
