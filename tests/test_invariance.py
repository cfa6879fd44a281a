"""Accuracy under transforms: a flip that moves the evidence breaks a model trained without it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib import augment as A
from course_lib.invariance import accuracy_under_transforms


def _quadrant_model(images, labels):
    """A linear classifier trained on the 4-quadrant toy problem (each class lights one quadrant)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x = images.float() / 255
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        opt.step()
    return model


def test_vertical_flip_breaks_what_identity_keeps(tiny_classification):
    images, labels = tiny_classification
    model = _quadrant_model(images, labels)
    res = accuracy_under_transforms(model, images, labels, {
        "none": None,
        "vertical flip": A.RandomVerticalFlip(p=1.0),
        "noise 0.02": A.GaussianNoise(0.02),
    })
    assert res["none"].acc > 0.95
    assert res["noise 0.02"].acc > 0.95  # a small perturbation keeps images in the data distribution
    assert res["vertical flip"].acc < 0.1  # top and bottom quadrants swap: every class turns into another
    assert res["vertical flip"].per_class.shape == (4,)
    again = accuracy_under_transforms(model, images, labels, {"noise 0.02": A.GaussianNoise(0.02)})
    assert again["noise 0.02"].acc == res["noise 0.02"].acc  # seeded: the same noisy images each call


def test_bad_input_gets_a_clear_error(tiny_classification):
    images, labels = tiny_classification
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with pytest.raises(ValueError, match="transforms is empty"):
        accuracy_under_transforms(model, images, labels, {})
    with pytest.raises(TypeError, match="must be callable"):
        accuracy_under_transforms(model, images, labels, {"x": 3})
