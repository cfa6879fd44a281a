"""Checkpoints, results, profiles and metrics: small pieces, real behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from course_lib import checkpoints as C
from course_lib.metrics import binomial_ci, confusion_matrix, format_mean_std, mean_std, per_class_accuracy, topk_accuracy
from course_lib.profiles import resolve
from course_lib.results import load_results, results_table, save_results


def test_checkpoint_restores_exact_weights_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model(torch.randn(8, 4))  # move BN running stats away from their initial values
    meta = {"dataset": "digits", "dataset_checksum": "abc", "profile": "smoke", "epochs": 3, "metrics": {"test_acc": 0.9}}
    path = C.save_checkpoint(tmp_path / "m.pt", model, meta)
    fresh = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    _, loaded = C.load_checkpoint(path, fresh)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    for key in ("command", "git_commit", "machine", "created", "dataset_checksum", "profile", "epochs", "metrics"):
        assert key in loaded
    assert loaded["metrics"] == {"test_acc": 0.9}


def test_corrupt_or_mismatched_checkpoint_names_the_file_and_fix(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(C.CheckpointError, match="bad.pt.*retrain"):
        C.load_checkpoint(bad)
    good = C.save_checkpoint(tmp_path / "g.pt", nn.Linear(4, 3), {})
    with pytest.raises(C.CheckpointError, match="does not fit this model"):
        C.load_checkpoint(good, nn.Linear(5, 3))


def test_load_or_train_trains_once_then_loads(tmp_path):
    calls = []

    def train_fn(m):
        calls.append(1)
        with torch.no_grad():
            m.weight.fill_(0.5)
        return {"epochs": 1, "metrics": {"acc": 1.0}}

    kw = dict(profile="smoke", reference_dir=tmp_path / "ref", save_dir=tmp_path / "saved", verbose=False)
    m1, meta1 = C.load_or_train("toy", nn.Linear(2, 2), train_fn, **kw)
    m2, meta2 = C.load_or_train("toy", nn.Linear(2, 2), train_fn, **kw)
    assert len(calls) == 1 and torch.equal(m1.weight, m2.weight) and meta2["metrics"] == {"acc": 1.0}
    C.load_or_train("toy", nn.Linear(2, 2), train_fn, retrain=True, **kw)
    assert len(calls) == 2


def test_reference_checkpoint_is_preferred(tmp_path):
    ref = nn.Linear(2, 2)
    C.save_checkpoint(tmp_path / "ref" / "toy.pt", ref, {"epochs": 9})
    m, meta = C.load_or_train("toy", nn.Linear(2, 2), lambda m: pytest.fail("must not train"), profile="quick",
                              reference_dir=tmp_path / "ref", save_dir=tmp_path / "s", verbose=False)
    assert meta["epochs"] == 9 and torch.equal(m.weight, ref.weight)


def test_results_json_and_table(tmp_path):
    save_results("05_models", "smoke", {"cnn_test_acc": 0.991, "seconds": 12.5}, report={"cnn_test_acc": 0.9903},
                 notes={"cnn_test_acc": "3 seeds"}, directory=tmp_path)
    data = json.loads((tmp_path / "05_models.results.json").read_text())
    assert data["metrics"]["cnn_test_acc"] == 0.991 and data["report"]["cnn_test_acc"] == 0.9903
    table = results_table(load_results(tmp_path), {"05_models": 30.0})
    assert "| 05_models | smoke | cnn_test_acc | 99.10 % | 99.03 % | 3 seeds |" in table
    assert "seconds | 12.5 |" in table and "notebook wall time (s) | 30" in table
    with pytest.raises(ValueError, match="not finite"):
        save_results("x", "smoke", {"acc": float("nan")}, directory=tmp_path)


def test_profiles_resolve_and_reject_typos():
    table = {"smoke": {"epochs": 1}, "quick": {"epochs": 5}, "full": {"epochs": 90}}
    assert resolve("quick", table) == {"epochs": 5}
    assert resolve("quick", table, epochs=None) == {"epochs": 5}
    assert resolve("smoke", table, epochs=3) == {"epochs": 3}
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        resolve("fast", table)
    with pytest.raises(ValueError, match="unknown setting 'epoch'"):
        resolve("quick", table, epoch=2)


def test_metrics():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    y = torch.tensor([0, 2, 0, 1])
    top = topk_accuracy(logits, y, ks=(1, 2, 3))
    assert top == {1: 0.25, 2: 0.5, 3: 1.0}
    cm = confusion_matrix(y, logits.argmax(1), 3)
    assert cm.sum() == 4 and cm[0, 0] == 1
    assert np.allclose(per_class_accuracy(y, logits.argmax(1), 3), [0.5, 0.0, 0.0])
    lo, hi = binomial_ci(45, 50)
    assert 0.78 < lo < 0.8 and 0.95 < hi < 0.97
    assert mean_std([0.9, 0.92]) == pytest.approx((0.91, 0.014142), rel=1e-4)
    assert format_mean_std([0.9, 0.92]) == "91.00 ± 1.41 (n=2)"
    with pytest.raises(ValueError, match="k=4"):
        topk_accuracy(logits, y, ks=(4,))
