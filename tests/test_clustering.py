"""Tests of course_lib.clustering: NMI / ARI / Hungarian-matched accuracy and k-means scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.clustering import cluster_metrics, cluster_scores, contingency, kmeans, matched_accuracy


def test_perfect_clustering_with_permuted_ids_scores_one():
    labels = torch.arange(10).repeat(20)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    clusters = perm[labels] + 100  # any ids, any order
    m = cluster_metrics(labels, clusters)
    assert m["acc"] == pytest.approx(1.0) and m["nmi"] == pytest.approx(1.0) and m["ari"] == pytest.approx(1.0)


def test_matched_accuracy_known_values():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    clusters = np.array([2, 2, 1, 0, 0, 0, 1, 1, 1])  # best map 2->0, 0->1, 1->2: 8 of 9 right
    assert matched_accuracy(labels, clusters) == pytest.approx(8 / 9)
    # one cluster for everything: only the largest class can be matched
    assert matched_accuracy(labels, np.zeros(9, dtype=int)) == pytest.approx(1 / 3)
    # more clusters than classes: the extra clusters count as wrong
    assert matched_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])) == pytest.approx(0.5)


def test_random_clustering_scores_near_zero():
    rng = np.random.default_rng(0)
    labels, clusters = rng.integers(0, 10, 5000), rng.integers(0, 10, 5000)
    m = cluster_metrics(labels, clusters)
    assert abs(m["ari"]) < 0.01 and m["nmi"] < 0.02 and m["acc"] < 0.15


def test_contingency_and_errors():
    t = contingency(np.array([5, 5, 7]), np.array([1, 2, 2]))
    assert t.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ValueError, match="equal length"):
        contingency(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="integer"):
        matched_accuracy(np.array([0.5, 1.0]), np.array([0, 1]))


def test_kmeans_recovers_separated_blobs():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10
    labels = torch.arange(4).repeat_interleave(25)
    x = centres[labels] + torch.randn(100, 4, generator=g)
    scores = cluster_scores(x, labels, seed=0)
    assert scores["acc"] == pytest.approx(1.0) and scores["nmi"] == pytest.approx(1.0)
    assert len(np.unique(kmeans(x, 4, seed=0))) == 4
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans(x[:3], 4)
