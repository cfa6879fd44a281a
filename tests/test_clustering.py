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


# ---------------------------------------------------------------- k-distance eps, DBSCAN / Ward, score table

from course_lib.clustering import (format_score_table, kdistance_eps, kdistances, knee_index, run_clusterings,
                                   score_partition)


def _blobs(n_per=40, k=3, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])[:k]
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(scale=spread, size=(k * n_per, 2)), labels


def test_kdistances_known_values_and_sorted():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert kdistances(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]  # nearest other point, sorted
    assert kdistances(x, 2).tolist() == [2.0, 3.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="k must be"):
        kdistances(x, 4)


def test_knee_index_finds_the_bend():
    curve = np.concatenate([np.linspace(0.0, 1.0, 90), np.linspace(2.0, 50.0, 10)])
    assert 85 <= knee_index(curve) <= 90
    assert knee_index(np.arange(11.0)) == 5  # a straight line has no knee: middle
    with pytest.raises(ValueError, match="sorted"):
        knee_index(np.array([3.0, 2.0, 1.0]))


def test_kdistance_eps_separates_blobs_and_dbscan_recovers_them():
    x, y = _blobs()
    eps, d, i = kdistance_eps(x, min_samples=5)
    assert d[i] == eps and 0.1 < eps < 5.0  # above the within-blob spacing, far below the 10 between blobs
    clusters = run_clusterings(x, 3, eps, 5, seed=0)
    for name, c in clusters.items():
        s = score_partition(x, c, y)
        assert s["n_clusters"] == 3 and s["silhouette"] > 0.8, name
        kept = c != -1
        assert s["noise"] < 0.2 and cluster_metrics(y[kept], c[kept])["ari"] == pytest.approx(1.0), name
        if name != "DBSCAN":  # DBSCAN leaves the blobs' fringes as noise
            assert s["noise"] == 0.0 and s["ari"] > 0.95, name


def test_eps_larger_than_the_data_gives_one_cluster_and_no_silhouette():
    x, y = _blobs()
    c = run_clusterings(x, 3, eps=100.0, min_samples=5)["DBSCAN"]
    s = score_partition(x, c, y)
    assert s["n_clusters"] == 1 and s["noise"] == 0.0 and np.isnan(s["silhouette"])
    assert s["ari"] == pytest.approx(0.0) and s["nmi"] == pytest.approx(0.0)


def test_score_partition_noise_and_errors():
    x, y = _blobs(n_per=10)
    c = y.copy()
    c[:5] = -1  # five noise points
    s = score_partition(x, c, y)
    assert s["noise"] == pytest.approx(5 / 30) and s["n_clusters"] == 3
    assert score_partition(x, -np.ones(30, dtype=int), y)["n_clusters"] == 0
    with pytest.raises(ValueError, match="one cluster id per point"):
        score_partition(x, c[:10], y)


def test_silhouette_does_not_measure_agreement_with_labels():
    # two tight blobs, each holding two classes: clusters look perfect, labels disagree
    x, blob = _blobs(n_per=40, k=2)
    y = np.arange(80) % 2 + 2 * blob
    s = score_partition(x, run_clusterings(x, 2, 1.0, 5)["K-Means"], y)
    assert s["silhouette"] > 0.9 and s["ari"] < 0.6


def test_format_score_table():
    x, y = _blobs(n_per=10)
    rows = [{"features": "toy", "method": m, **score_partition(x, c, y)}
            for m, c in run_clusterings(x, 3, 100.0, 5).items()]
    text = format_score_table(rows)
    assert "DBSCAN" in text and "n/a" in text and len(text.splitlines()) == 5
