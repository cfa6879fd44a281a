"""Model comparison: runs measured the same way, the test set used once, tables and figures."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from course_lib.comparison import (
    ModelRun,
    accuracy_vs_time,
    comparison_rows,
    evaluate_on_test,
    format_comparison,
    misclassified_by_model,
    run_seed_arms,
    train_model,
)
from course_lib.loader import TensorLoader
from course_lib.train import seed_everything


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))


@pytest.fixture
def loaders(tiny_classification):
    images, labels = tiny_classification
    train = TensorLoader(images[:192], labels[:192], 32, shuffle=True, seed=0)
    val = TensorLoader(images[192:], labels[192:], 64)
    return train, val


def _train(name: str, loaders, seed: int = 0, epochs: int = 4) -> ModelRun:
    seed_everything(seed)
    train, val = loaders
    return train_model(name, _net(), train, val, epochs=epochs, lr=0.05, device="cpu")


def test_train_model_learns_and_records_what_it_measured(loaders):
    run = _train("tiny", loaders)
    assert run.val_acc > 0.9  # 4 separable classes: far above chance (0.25)
    assert run.history["train_loss"][-1] < run.history["train_loss"][0]
    assert run.epochs == 4 and run.train_images == 192
    assert run.params == run.trainable_params == sum(p.numel() for p in _net().parameters())
    assert run.train_seconds > 0 and run.train_cpu_seconds > 0
    assert run.seconds_per_epoch(384) == pytest.approx(2 * run.seconds_per_epoch())
    assert math.isnan(run.test_acc) and run.model is not None


def test_frozen_parameters_are_counted_as_not_trainable(loaders):
    net = _net()
    net[0].requires_grad_(False)
    run = train_model("frozen conv", net, *loaders, epochs=1, lr=0.01, device="cpu")
    assert run.trainable_params == 32 * 4 + 4 and run.params == run.trainable_params + 8 * 9 + 8


def test_evaluate_on_test_matches_a_direct_computation_and_refuses_a_second_look(loaders, tiny_classification):
    images, labels = tiny_classification
    run = _train("tiny", loaders)
    test = TensorLoader(images[192:], labels[192:], 50)
    evaluate_on_test(run, test, speed_batch=images[:64].float() / 255)
    with torch.no_grad():
        logits = run.model.eval()(images[192:].float() / 255)
    assert run.test_acc == pytest.approx((logits.argmax(1) == labels[192:]).float().mean().item())
    assert run.test_loss == pytest.approx(nn.functional.cross_entropy(logits, labels[192:]).item(), rel=1e-5)
    assert torch.equal(run.test_preds, logits.argmax(1)) and run.images_per_second > 0
    with pytest.raises(RuntimeError, match="used once"):
        evaluate_on_test(run, test)


def test_seed_arms_score_on_validation_and_keep_every_run(loaders):
    arms = {"2 epochs": lambda s: _train("a", loaders, s, epochs=2), "1 epoch": lambda s: _train("b", loaders, s, epochs=1)}
    results, runs = run_seed_arms(arms, seeds=[0, 1, 2], verbose=False)
    assert [len(runs[k]) for k in arms] == [3, 3]
    assert results["2 epochs"].values == [r.val_acc for r in runs["2 epochs"]]
    assert len({r.history["train_loss"][0] for r in runs["1 epoch"]}) == 3  # the seeds really differ
    with pytest.raises(TypeError, match="must return a ModelRun"):
        run_seed_arms({"bad": lambda s: 0.5}, seeds=[0], verbose=False)
    with pytest.raises(ValueError, match="score must be a ModelRun field"):
        run_seed_arms(arms, seeds=[0], score="accuracy", verbose=False)


def _fake(name: str, acc: float, seconds: float = 10.0, images: int = 100) -> ModelRun:
    return ModelRun(name, 1000, 1000, 2, images, seconds, seconds, acc - 0.01, test_acc=acc, test_loss=0.1,
                    images_per_second=500.0, test_preds=torch.tensor([0, 1, 1, 0]))


def test_comparison_rows_scale_time_and_summarise_seeds():
    headline = {"cnn": _fake("cnn", 0.99, seconds=20, images=100), "lstm": _fake("lstm", 0.98)}
    seeds = {"cnn": [_fake("cnn", a) for a in (0.97, 0.98, 0.99)]}
    rows = {r["model"]: r for r in comparison_rows(headline, seeds, n_full=1000)}
    assert rows["cnn"]["s_per_epoch"] == pytest.approx(20 / 2 / 100 * 1000)
    assert rows["cnn"]["seed_mean"] == pytest.approx(0.98) and rows["cnn"]["seed_std"] == pytest.approx(0.01)
    assert rows["lstm"]["seed_n"] == 0 and math.isnan(rows["lstm"]["seed_mean"])
    text = format_comparison(list(rows.values()))
    assert "98.00 ± 1.00 (n=3)" in text and "lstm" in text and "99.00%" in text


def test_comparison_rows_reject_incomplete_input():
    untested = ModelRun("cnn", 10, 10, 1, 10, 1.0, 1.0, 0.9)
    with pytest.raises(ValueError, match="evaluate_on_test"):
        comparison_rows({"cnn": untested})
    with pytest.raises(KeyError, match="no headline run"):
        comparison_rows({"cnn": _fake("cnn", 0.9)}, {"vit": [_fake("vit", 0.9)]})


def test_figures_draw_one_point_and_one_row_per_model():
    rows = comparison_rows({"cnn": _fake("cnn", 0.99), "vit": _fake("vit", 0.98, seconds=30)},
                           {"cnn": [_fake("cnn", a) for a in (0.97, 0.98)]})
    fig = accuracy_vs_time(rows, reference={"cnn": 0.9903})
    assert len(fig.axes[0].texts) == 2 and fig.axes[0].get_xscale() == "log"
    with pytest.raises(KeyError, match="time_key"):
        accuracy_vs_time(rows, time_key="minutes")
    images = torch.randint(0, 255, (4, 1, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    fig2 = misclassified_by_model(images, labels, {"cnn": torch.tensor([0, 1, 1, 0]), "vit": labels.clone()}, per_model=3)
    assert fig2.axes[0].get_ylabel().endswith("2 wrong") and fig2.axes[3].get_ylabel().endswith("0 wrong")
    with pytest.raises(ValueError, match="test predictions"):
        misclassified_by_model(images, labels, {"cnn": torch.tensor([0, 1])})
    plt.close("all")


def test_train_model_explains_bad_input(loaders):
    train, _ = loaders
    with pytest.raises(ValueError, match="needs a val_loader"):
        train_model("x", _net(), train, None, epochs=1, lr=0.01)
    with pytest.raises(ValueError, match="positive int"):
        train_model("x", _net(), *loaders, epochs=0, lr=0.01)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_model("x", _net().requires_grad_(False), *loaders, epochs=1, lr=0.01)


def test_validation_once_at_the_end_gives_the_same_val_acc(loaders):
    every = _train("every epoch", loaders, epochs=2)
    seed_everything(0)
    train, val = loaders
    once = train_model("once", _net(), train, val, epochs=2, lr=0.05, device="cpu", val_every_epoch=False)
    assert once.val_acc == pytest.approx(every.val_acc)
    assert "val_acc" not in once.history.records[-1] and len(once.history) == 2


def test_cheapest_within_one_se_pays_only_for_resolved_differences():
    from course_lib.ablation import ArmResult
    from course_lib.comparison import cheapest_within_one_se

    best = ArmResult("wide", [0, 1, 2], [0.95, 0.96, 0.97], seconds=60.0)  # mean 0.96, std 0.01, se 0.0058
    close = ArmResult("small, long", [0, 1, 2], [0.955, 0.955, 0.955], seconds=20.0)
    far = ArmResult("small", [0, 1, 2], [0.90, 0.91, 0.92], seconds=10.0)
    results = {r.name: r for r in (best, close, far)}
    assert cheapest_within_one_se(results) == "small, long"
    assert cheapest_within_one_se(results, cost={"wide": 1, "small, long": 2, "small": 0}) == "wide"
    assert cheapest_within_one_se({"wide": best, "small": far}) == "wide"
    with pytest.raises(KeyError, match="every arm"):
        cheapest_within_one_se(results, cost={"wide": 1})
