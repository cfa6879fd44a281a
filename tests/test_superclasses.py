"""Superclass regrouping: a valid mapping, balanced weights and balanced accuracy."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from course_lib.data import FASHION_CLASSES
from course_lib.superclasses import (
    FASHION_SUPERCLASSES,
    balanced_accuracy,
    balanced_class_weights,
    group_index,
    regroup_labels,
    superclass_logits,
)


def test_fashion_grouping_is_5_1_4():
    labels = torch.arange(10).repeat(6)
    sup, names = regroup_labels(labels, FASHION_SUPERCLASSES, FASHION_CLASSES)
    assert names == ["Top", "Bottom", "Accessories"]
    assert torch.bincount(sup).tolist() == [30, 6, 24]
    assert sup[FASHION_CLASSES.index("Trouser")] == 1 and sup[FASHION_CLASSES.index("Bag")] == 2


def test_balanced_weights_give_each_class_the_same_total():
    labels = torch.tensor([0] * 50 + [1] * 10 + [2] * 40)
    w = balanced_class_weights(labels, 3)
    totals = w * torch.bincount(labels).float()
    assert torch.allclose(totals, totals.mean().expand(3))
    assert w[1] > w[2] > w[0]


def test_balanced_accuracy_exposes_an_ignored_minority_class():
    labels = torch.tensor([0] * 50 + [1] * 10 + [2] * 40)
    preds = labels.clone()
    preds[labels == 1] = 0  # never predict the minority class
    assert (preds == labels).float().mean() == pytest.approx(0.9)
    assert balanced_accuracy(labels, preds) == pytest.approx(2 / 3)
    assert balanced_accuracy(labels, preds) == pytest.approx(balanced_accuracy_score(labels, preds))


def test_superclass_logits_sum_probabilities_within_groups():
    mapping, _ = group_index({"x": ["a", "c"], "y": ["b"]}, ["a", "b", "c"])
    assert mapping.tolist() == [0, 1, 0]
    logits = torch.randn(5, 3)
    p = logits.softmax(1)
    out = superclass_logits(logits, mapping).exp()
    assert torch.allclose(out[:, 0], p[:, 0] + p[:, 2]) and torch.allclose(out[:, 1], p[:, 1])


def test_bad_groupings_get_a_clear_error():
    with pytest.raises(ValueError, match=r"classes in no group: \['c'\]"):
        group_index({"x": ["a"], "y": ["b"]}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="two groups"):
        group_index({"x": ["a", "b"], "y": ["b", "c"]}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="unknown classes"):
        group_index({"x": ["a", "b", "c", "Tshirt"]}, ["a", "b", "c"])
    with pytest.raises(TypeError, match=r"write \['a'\]"):
        group_index({"x": "a"}, ["a"])
    with pytest.raises(ValueError, match="no examples"):
        balanced_class_weights(torch.tensor([0, 0, 2]), 3)
    with pytest.raises(ValueError, match="class names"):
        regroup_labels(torch.tensor([0, 7]), {"x": ["a", "b"]}, ["a", "b"])
