"""Interactive panels, headless: build each panel, move its controls, press Run, and check
that what it shows changed the way the setting says; bad settings give a message, not a
traceback.  The pure functions behind the panels are checked directly as well."""

from __future__ import annotations

import re
import time

import jupytext
import pytest
import torch
from torch import nn

from conftest import REPO
from course_lib import augment as A
from course_lib import interactive as I
from course_lib import widgets as Wd
from course_lib.models import MLP


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def quadrants(tiny_classification):
    """Train / validation pairs of the tiny 4-class quadrant problem (8x8 grey images)."""
    images, labels = tiny_classification
    return (images[:192], labels[:192]), (images[192:], labels[192:])


def mlp(dropout: float = 0.0) -> nn.Module:
    return MLP(in_features=64, hidden=(32,), num_classes=4, dropout=dropout)


def linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))


def clustered_features(n_per_class: int, dim: int = 16, classes: int = 4, noise: float = 1.0, seed: int = 0):
    """Gaussian clusters around fixed random class centres (``seed`` draws the noise): (features, labels)."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(1234)) * 2
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + noise * torch.randn(len(labels), dim, generator=g), labels


def tiny_mae():
    from course_lib.ssl.mae import MAE

    torch.manual_seed(0)
    return MAE(image_size=8, patch_size=2, in_channels=1, enc_dim=16, enc_depth=1, enc_heads=2,
               dec_dim=16, dec_depth=1, dec_heads=2)


def wait_until(predicate, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return False


# --------------------------------------------------------------------------- training panel


def test_training_panel_run_draws_curves_and_a_higher_learning_rate_learns_faster(quadrants):
    train, val = quadrants
    panel = Wd.training_panel(train, val, mlp, n_train=192, epochs=2, batch_size=32)
    assert {"lr", "batch_size", "epochs", "n_train", "optimizer", "dropout", "augment"} <= set(panel.controls)
    assert panel.figure.value == b"" and panel.result is None

    panel.controls["lr"].value = 1e-5
    panel.run_button.click()
    slow = panel.result
    assert panel.error is None, panel.error
    assert "done after 12/12 steps" in panel.status.value
    first_png = panel.figure.value
    assert bytes(first_png).startswith(b"\x89PNG")

    panel.controls["lr"].value = 1e-2
    panel.run_button.click()
    fast = panel.result
    assert panel.figure.value != first_png
    assert fast.settings.lr == pytest.approx(1e-2) and slow.settings.lr == pytest.approx(1e-5)
    assert fast.history["val_loss"][-1] < slow.history["val_loss"][-1] - 0.3
    assert fast.val_acc > slow.val_acc
    assert fast.history["val_loss"][-1] < fast.history["val_loss"][0]  # it learned
    assert panel.table.value.count("<tr>") == 3  # header + two runs
    assert not panel.run_button.disabled and panel.stop_button.disabled


def test_training_panel_epochs_and_subset_change_the_run(quadrants):
    train, val = quadrants
    panel = Wd.training_panel(train, val, mlp, n_train=100, epochs=1, batch_size=16, evals_per_epoch=2)
    panel.run_button.click()
    one = panel.result
    panel.controls["epochs"].value = 3
    panel.controls["n_train"].value = 160
    panel.controls["dropout"].value = 0.3
    panel.run_button.click()
    three = panel.result
    assert (one.total_steps, three.total_steps) == (7, 30)  # ceil(100/16) and 3 * ceil(160/16)
    assert three.history["epoch"][-1] == pytest.approx(3.0)
    assert len(three.history) == 3 * 2
    assert any(isinstance(m, nn.Dropout) and m.p == pytest.approx(0.3) for m in three.model.modules())


def test_training_panel_shows_invalid_settings_as_a_message(quadrants):
    train, val = quadrants
    panel = Wd.training_panel(train, val, linear, n_train=100, batch_size=256, augment=None)
    assert "dropout" not in panel.controls and "augment" not in panel.controls  # model / caller lack them
    panel.run_button.click()  # must not raise
    assert panel.result is None
    assert "batch size 256 is larger than the training subset (100 images)" in panel.error
    assert "at most 100" in panel.error and "color:#b00020" in panel.status.value
    assert not panel.run_button.disabled  # usable again

    panel.controls["batch_size"].value = 32
    panel.run_button.click()
    assert panel.error is None and panel.result is not None


def test_training_panel_reports_a_factory_that_returns_no_model(quadrants):
    train, val = quadrants
    panel = Wd.training_panel(train, val, lambda: "not a model", n_train=100, batch_size=16)
    panel.run_button.click()
    assert "make_model must return a torch.nn.Module, got str" in panel.error


def test_stop_ends_a_background_run_between_batches_and_keeps_model_and_history(quadrants):
    train, val = quadrants
    panel = Wd.training_panel(train, val, mlp, n_train=192, batch_size=16, epochs=200, max_epochs=200,
                              background=True)
    panel.run_button.click()
    assert wait_until(lambda: panel.progress.value >= 3), "the run never started"
    assert panel.running and panel.run_button.disabled and not panel.stop_button.disabled
    panel.run_button.click()  # a second Run while training is ignored
    panel.stop_button.click()
    assert panel.wait(timeout=30), "Stop did not end the run"
    run = panel.result
    assert run.stopped and run.history.interrupted and 3 <= run.steps < run.total_steps
    assert len(panel.results) == 1
    assert run.history.records and run.history.records[-1]["step"] == run.steps  # the last steps were recorded
    assert "stopped after" in panel.status.value
    logits = run.model(train[0][:5].float() / 255)  # the model is usable
    assert logits.shape == (5, 4) and not run.model.training
    assert not panel.run_button.disabled and panel.stop_button.disabled


def test_short_training_run_is_reproducible_and_flags_divergence(quadrants):
    train, val = quadrants
    s = I.TrainSettings(lr=1e-2, batch_size=32, epochs=1, n_train=128, augment_strength=0.5)
    a = I.short_training_run(train, val, mlp, s)
    b = I.short_training_run(train, val, mlp, s)
    assert a.history["val_loss"] == b.history["val_loss"]

    def broken() -> nn.Module:
        m = linear()
        with torch.no_grad():
            m[1].weight.fill_(float("inf"))
        return m

    bad = I.short_training_run(train, val, broken, s)
    assert bad.diverged and bad.steps == 1 and "lower the learning rate" in bad.summary()


def test_seeded_subsets_are_nested():
    small, large = I.seeded_subset(100, 10, 3), I.seeded_subset(100, 40, 3)
    assert torch.equal(large[:10], small) and len(set(large.tolist())) == 40


# --------------------------------------------------------------------------- model choice


def test_model_choice_panel_compares_models_by_accuracy_and_time(quadrants):
    train, val = quadrants
    panel = Wd.model_choice_panel(train, val, {"linear": linear, "MLP": mlp}, epochs=1, n_train=128,
                                  lr={"linear": 1e-2, "MLP": 1e-2}, batch_size=32)
    panel.run_button.click()
    png = panel.figure.value
    panel.controls["model"].value = "MLP"
    panel.controls["epochs"].value = 2
    panel.run_button.click()
    assert panel.error is None, panel.error
    (n1, r1), (n2, r2) = panel.results
    assert (n1, n2) == ("linear", "MLP")
    assert r1.num_params == 64 * 4 + 4 and r2.num_params == 64 * 32 + 32 + 32 * 4 + 4
    assert r2.history["epoch"][-1] == 2 and r1.train_seconds > 0
    assert panel.figure.value != png and panel.table.value.count("<tr>") == 3
    assert "MLP: 2,212 parameters" in panel.status.value


def test_model_choice_panel_needs_a_learning_rate_per_model(quadrants):
    train, val = quadrants
    with pytest.raises(ValueError, match=r"no learning rate for \['MLP'\]"):
        Wd.model_choice_panel(train, val, {"linear": linear, "MLP": mlp}, lr={"linear": 1e-2})


# --------------------------------------------------------------------------- augmentation


def test_every_augment_transform_has_a_strength_slider():
    covered = {spec.transform for spec in I.AUGMENTATIONS.values()}
    assert set(A.__all__) == covered | I.NOT_STRENGTH_TRANSFORMS, "a new transform in course_lib.augment needs a spec"


def test_augmentation_panel_moves_rows_with_their_sliders():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 16, 16), generator=g, dtype=torch.uint8)
    panel = Wd.augmentation_panel(images, n_images=4, strengths={"horizontal flip": 1.0})
    assert {"saturation", "grayscale", "PCA lighting"} <= set(panel.controls)
    rows = dict(panel.result)
    assert list(rows) == ["original", "horizontal flip"]
    assert torch.equal(rows["horizontal flip"], rows["original"].flip(-1))  # strength 1 = always flipped
    assert "RandomHorizontalFlip(p=1.0)" in panel.status.value
    png = panel.figure.value

    panel.controls["rotation"].value = 0.5
    rows = dict(panel.result)
    assert list(rows) == ["original", "horizontal flip", "rotation", "all together"]
    assert "RandomRotation(degrees=(-45.0, 45.0)" in panel.status.value
    assert panel.figure.value != png

    panel.controls["horizontal flip"].value = 0.0
    panel.controls["rotation"].value = 0.0
    assert [name for name, _ in panel.result] == ["original"] and "no augmentation" in panel.status.value


def test_augmentation_panel_for_grey_images_offers_no_colour_transforms():
    images = torch.randint(0, 256, (6, 1, 12, 12), dtype=torch.uint8)
    panel = Wd.augmentation_panel(images)
    assert not {"saturation", "grayscale", "PCA lighting"} & set(panel.controls)
    assert "RandomAffine" in panel.status.value  # the default for grey images
    with pytest.raises(ValueError, match="colour .* only"):
        I.build_augmentations({"saturation": 0.5}, (1, 12, 12))
    with pytest.raises(ValueError, match="unknown augmentation"):
        I.build_augmentations({"rotate": 0.5}, (1, 12, 12))


def test_stronger_noise_moves_pixels_further():
    x = torch.full((8, 1, 10, 10), 0.5)
    gaps = []
    for s in (0.2, 0.8):
        rows = dict(I.augmentation_preview(x, {"gaussian noise": s}))
        gaps.append((rows["gaussian noise"] - x).abs().mean().item())
    assert gaps[1] > 3 * gaps[0]


# --------------------------------------------------------------------------- kNN / probe


def test_knn_panel_more_labels_give_higher_accuracy_and_probe_works():
    xtr, ytr = clustered_features(60, noise=2.5)
    xte, yte = clustered_features(50, noise=2.5, seed=1)
    panel = Wd.knn_panel(xtr, ytr, xte, yte, n_per_class=1, k=5, draws=3)
    assert "features" not in panel.controls  # a single feature set needs no dropdown
    panel.run_button.click()
    one = panel.result
    assert "k clamped to 4" in panel.status.value
    panel.controls["n_per_class"].value = 60
    panel.run_button.click()
    full = panel.result
    assert panel.error is None, panel.error
    assert full["mean"] > one["mean"] + 0.1 and full["n_labelled"] == 240 and len(full["per_seed"]) == 1

    png = panel.figure.value
    panel.controls["method"].value = "probe"
    assert panel.controls["C"].layout.display is None and panel.controls["k"].layout.display == "none"
    panel.run_button.click()
    assert panel.result["method"] == "probe" and panel.result["mean"] > 0.6
    assert panel.figure.value != png and panel.table.value.count("<tr>") == 4


def test_knn_panel_compares_feature_sets():
    xtr, ytr = clustered_features(30)
    xte, yte = clustered_features(20, seed=1)
    noise_tr, noise_te = torch.randn_like(xtr), torch.randn_like(xte)
    panel = Wd.knn_panel({"encoder": xtr, "random": noise_tr}, ytr, {"encoder": xte, "random": noise_te}, yte,
                         n_per_class=10)
    panel.run_button.click()
    good = panel.result["mean"]
    panel.controls["features"].value = "random"
    panel.run_button.click()
    assert good > 0.9 and panel.result["mean"] < 0.5
    with pytest.raises(ValueError, match="same names"):
        Wd.knn_panel({"a": xtr}, ytr, {"b": xte}, yte)


def test_few_label_accuracy_names_the_largest_valid_label_count():
    x, y = clustered_features(5)
    with pytest.raises(ValueError, match="smallest class of the training pool has 5 examples; choose between 1 and 5"):
        I.few_label_accuracy(x, y, x, y, n_per_class=6)


# --------------------------------------------------------------------------- t-SNE


def test_tsne_panel_maps_clusters_and_rejects_a_too_large_perplexity():
    x, y = clustered_features(20, noise=0.5)
    panel = Wd.tsne_panel(x, y, class_names=["a", "b", "c", "d"], perplexity=10, n_points=60)
    assert panel.controls["n_points"].max == 80
    panel.run_button.click()
    res = panel.result
    assert panel.error is None, panel.error
    assert res.xy.shape == (60, 2) and res.knn_acc_map > 0.9 and res.knn_acc_features > 0.9
    assert "5-NN accuracy" in panel.status.value and bytes(panel.figure.value).startswith(b"\x89PNG")

    panel.controls["perplexity"].value = 70
    panel.run_button.click()
    assert panel.result is res
    assert "perplexity 70 must be at least 1 and smaller than the number of points (60)" in panel.error
    with pytest.raises(ValueError, match="at most 2000"):
        I.tsne_embedding(x, y, n_points=5000)


# --------------------------------------------------------------------------- MAE


def test_mask_ratio_panel_masks_the_chosen_fraction_of_patches():
    mae = tiny_mae()
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    panel = Wd.mask_ratio_panel(mae, images, n_images=3)
    view = panel.result
    assert "12 of 16 patches hidden" in panel.status.value
    assert view.masked.shape == view.reconstruction.shape == view.original.shape == (3, 1, 8, 8)
    visible = (view.masked != 0.5)
    assert torch.equal(view.masked[visible], view.original[visible])  # visible patches untouched
    png = panel.figure.value

    panel.controls["mask_ratio"].value = 0.25
    assert "4 of 16 patches hidden" in panel.status.value and panel.figure.value != png
    assert int(panel.result.mask.sum()) == 3 * 4

    panel.controls["mask_ratio"].value = 0.95  # keeps int(16 * 0.05) = 0 patches
    assert "leave at least one of the 16 patches visible" in panel.error and "0.938" in panel.error
    assert panel.result.mask_ratio == 0.25  # the last good view stays


# --------------------------------------------------------------------------- notebooks


def test_notebook_panels_are_built_only_when_interactive():
    """Every notebook cell that builds a panel is guarded by INTERACTIVE (papermill sets it False)."""
    found = 0
    for py in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py")):
        for cell in jupytext.read(py).cells:
            if cell.cell_type == "code" and re.search(r"\b\w+_panel\(", cell.source):
                found += 1
                assert re.search(r"^if INTERACTIVE:", cell.source, re.M), f"{py.name}: unguarded panel cell"
    assert found >= 1
