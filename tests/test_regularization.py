"""Ablation settings: the right model, the right penalty, a training run that learns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib import augment as A
from course_lib.data import ImageDataset
from course_lib.models import MLP, FashionCNN, l1_penalty, l2_penalty
from course_lib.regularization import Setting, build_model, penalty, train_setting


def _split(tiny_classification):
    images, labels = tiny_classification
    names = ["a", "b", "c", "d"]
    return ImageDataset(images[:192], labels[:192], names), ImageDataset(images[192:], labels[192:], names)


def test_build_model_follows_the_setting():
    mlp = build_model(Setting("mlp", batchnorm=True, dropout=0.2, hidden=32), num_classes=4, input_size=8)
    assert isinstance(mlp, MLP) and any(isinstance(m, nn.BatchNorm1d) for m in mlp.modules())
    assert any(isinstance(m, nn.Dropout) for m in mlp.modules())
    cnn = build_model(Setting("cnn", widths=(4, 8), hidden=16), num_classes=3)
    assert isinstance(cnn, FashionCNN) and not any(isinstance(m, nn.BatchNorm2d) for m in cnn.modules())
    assert cnn(torch.rand(2, 1, 28, 28)).shape == (2, 3)


def test_penalty_is_the_weighted_sum_of_l1_and_l2():
    model = nn.Linear(3, 2)
    assert penalty(Setting()) is None
    both = penalty(Setting(l1=1e-3, l2=1e-2))(model)
    assert both.item() == pytest.approx((1e-3 * l1_penalty(model) + 1e-2 * l2_penalty(model)).item())
    assert penalty(Setting(l1=0.5))(model).item() == pytest.approx(0.5 * l1_penalty(model).item())


def test_training_learns_and_is_reproducible(tiny_classification):
    train, val = _split(tiny_classification)
    s = Setting("mlp", hidden=32, lr=1e-2)
    run = train_setting(s, train, val, epochs=8, seed=1, batch_size=32, device="cpu", normalize=([0.3], [0.3]))
    assert run.history["train_loss"][-1] < run.history["train_loss"][0]
    assert run.val_acc > 0.9 and run.seconds > 0 and run.cpu_seconds > 0
    again = train_setting(s, train, val, epochs=8, seed=1, batch_size=32, device="cpu", normalize=([0.3], [0.3]))
    assert again.val_acc == run.val_acc and again.history["train_loss"] == run.history["train_loss"]
    once = train_setting(s, train, val, epochs=8, seed=1, batch_size=32, device="cpu", normalize=([0.3], [0.3]),
                         eval_every_epoch=False)
    assert once.val_acc == run.val_acc and "val_acc" not in once.history.records[-1]


def test_l1_shrinks_the_weights(tiny_classification):
    train, val = _split(tiny_classification)
    plain = train_setting(Setting("mlp", hidden=32, lr=1e-2), train, val, epochs=3, seed=0, batch_size=32, device="cpu")
    sparse = train_setting(Setting("mlp", hidden=32, lr=1e-2, l1=1e-2), train, val, epochs=3, seed=0, batch_size=32,
                           device="cpu")
    assert l1_penalty(sparse.model) < 0.5 * l1_penalty(plain.model)


def test_class_weights_and_augmentation_are_used(tiny_classification):
    train, val = _split(tiny_classification)
    s = Setting("mlp", hidden=32, lr=1e-2, augment=True)
    w = torch.tensor([1.0, 1.0, 1.0, 0.0])  # class 3 carries no weight: the model never learns it
    run = train_setting(s, train, val, epochs=3, seed=0, batch_size=32, device="cpu",
                        transform=A.GaussianNoise(0.01), class_weights=w)
    preds = run.model(val.images.float() / 255).argmax(1)
    assert (preds[val.labels == 3] == 3).float().mean() < 0.5
    assert (preds[val.labels != 3] == val.labels[val.labels != 3]).float().mean() > 0.8


def test_bad_input_gets_a_clear_error(tiny_classification):
    train, val = _split(tiny_classification)
    with pytest.raises(ValueError, match="no transform was given"):
        train_setting(Setting(augment=True), train, val, epochs=1)
    with pytest.raises(ValueError, match="arch must be one of"):
        Setting("resnet")
    with pytest.raises(ValueError, match="dropout"):
        Setting(dropout=1.0)
    with pytest.raises(ValueError, match="penalty coefficients"):
        Setting(l1=-1)
