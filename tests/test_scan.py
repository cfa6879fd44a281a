"""SCAN's clustering step on frozen features (course_lib.scan)."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.clustering import matched_accuracy
from course_lib.scan import fit_scan_heads, mine_neighbours, name_clusters, scan_loss


def blobs(n_per: int = 60, classes: int = 4, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 6 * torch.randn(classes, dim, generator=g)
    labels = torch.arange(classes).repeat_interleave(n_per)
    return centres[labels] + torch.randn(len(labels), dim, generator=g), labels


def test_loss_is_zero_consistency_and_max_entropy_for_confident_agreeing_balanced_predictions():
    logits = 50 * torch.eye(4)  # each anchor confidently in its own cluster, all four used
    out = scan_loss(logits, logits.clone(), entropy_weight=2.0)
    assert out.consistency.item() == pytest.approx(0.0, abs=1e-6)
    assert out.entropy.item() == pytest.approx(math.log(4), abs=1e-6)
    assert out.total.item() == pytest.approx(-2 * math.log(4), abs=1e-5)


def test_entropy_term_penalises_one_cluster_for_everything():
    one = torch.zeros(8, 4)
    one[:, 0] = 50
    out = scan_loss(one, one.clone())
    assert out.consistency.item() == pytest.approx(0.0, abs=1e-6)  # the first term alone would accept this
    assert out.entropy.item() == pytest.approx(0.0, abs=1e-6)


def test_gradients_reach_anchors_and_neighbours():
    a, b = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3, requires_grad=True)
    scan_loss(a, b).total.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_loss_rejects_bad_shapes_and_weights():
    with pytest.raises(ValueError, match="logits"):
        scan_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="entropy_weight"):
        scan_loss(torch.randn(4, 3), torch.randn(4, 3), entropy_weight=-1)


def test_mined_neighbours_exclude_self_and_share_the_class_on_separated_data():
    x, y = blobs()
    nbr = mine_neighbours(x, k=5)
    assert nbr.shape == (len(x), 5)
    assert not (nbr == torch.arange(len(x))[:, None]).any()
    assert (y[nbr] == y[:, None]).float().mean() > 0.99
    with pytest.raises(ValueError, match="k must be between"):
        mine_neighbours(x, k=len(x))


def test_heads_find_the_classes_without_labels_and_the_kept_head_has_the_lowest_loss():
    x, y = blobs()
    res = fit_scan_heads(x, mine_neighbours(x, k=5), num_clusters=4, heads=3, epochs=40, batch_size=64)
    assert len(res.losses) == 3 and res.losses[res.chosen] == min(res.losses)
    pred = res.head(x).argmax(1)
    assert matched_accuracy(y, pred) > 0.95
    assert not any(p.requires_grad for p in res.head.parameters())


def test_fit_rejects_neighbours_of_another_pool_and_impossible_settings():
    x, _ = blobs()
    with pytest.raises(ValueError, match="mine_neighbours"):
        fit_scan_heads(x, mine_neighbours(x[:50], k=3), num_clusters=4)
    with pytest.raises(ValueError, match="num_clusters"):
        fit_scan_heads(x, mine_neighbours(x, k=3), num_clusters=1)
    with pytest.raises(ValueError, match="heads"):
        fit_scan_heads(x, mine_neighbours(x, k=3), num_clusters=4, heads=0)


def test_clusters_are_named_one_to_one_from_a_few_labels():
    clusters = torch.tensor([2, 2, 0, 0, 1, 1, 1])
    labels = torch.tensor([5, 5, 3, 3, 7, 7, 3])  # one mislabelled-looking member does not steal cluster 1
    names = name_clusters(clusters, labels, num_clusters=3, num_classes=8)
    assert names.tolist() == [3, 7, 5]


def test_extra_clusters_take_their_majority_label():
    names = name_clusters(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 1]), num_clusters=4, num_classes=2)
    assert names[2].item() == 1 and names[3].item() == 0  # cluster 3 has no labelled member
    with pytest.raises(ValueError, match="labels in"):
        name_clusters(torch.tensor([0, 1]), torch.tensor([0, 5]), num_clusters=2, num_classes=2)
