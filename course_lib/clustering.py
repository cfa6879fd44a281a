"""Scoring a clustering of embeddings against the true labels: NMI, ARI, matched accuracy.

"The t-SNE shows nice clusters" is not a measurement.  To score a representation
without labels in the loop, cluster it (k-means with as many clusters as classes)
and compare the cluster ids with the labels.  Cluster ids are arbitrary (cluster 3
may be the digit 7), so the scores must not depend on how clusters are numbered:

- **NMI** (normalised mutual information): how much knowing the cluster tells about
  the label, 0 (nothing) to 1 (everything);
- **ARI** (adjusted Rand index): agreement on which *pairs* of points belong
  together, corrected for chance: 0 for a random assignment, 1 for a perfect one;
- **matched accuracy**: the accuracy after mapping each cluster to one class with
  the best one-to-one assignment (Hungarian algorithm,
  ``scipy.optimize.linear_sum_assignment`` on the contingency table).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def _np_labels(x: Tensor | np.ndarray | list, what: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{what} must be a 1-d sequence of integer ids, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must hold integer ids, got dtype {a.dtype}")
    return a.astype(np.int64)


def contingency(labels: Tensor | np.ndarray, clusters: Tensor | np.ndarray) -> np.ndarray:
    """``C[i, j]`` = number of points of cluster ``i`` with label ``j`` (ids renumbered 0..n-1)."""
    y, c = _np_labels(labels, "labels"), _np_labels(clusters, "clusters")
    if len(y) != len(c) or len(y) == 0:
        raise ValueError(f"labels and clusters must be non-empty and of equal length, got {len(y)} and {len(c)}")
    _, yi = np.unique(y, return_inverse=True)
    _, ci = np.unique(c, return_inverse=True)
    table = np.zeros((ci.max() + 1, yi.max() + 1), dtype=np.int64)
    np.add.at(table, (ci, yi), 1)
    return table


def matched_accuracy(labels: Tensor | np.ndarray, clusters: Tensor | np.ndarray) -> float:
    """Accuracy under the best one-to-one map of clusters to labels (Hungarian algorithm).

    With more clusters than classes the extra clusters count as wrong.
    """
    from scipy.optimize import linear_sum_assignment

    table = contingency(labels, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def cluster_metrics(labels: Tensor | np.ndarray, clusters: Tensor | np.ndarray) -> dict[str, float]:
    """``{"nmi", "ari", "acc"}`` of a clustering against the labels (all invariant to renumbering)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    y, c = _np_labels(labels, "labels"), _np_labels(clusters, "clusters")
    acc = matched_accuracy(y, c)
    return {"nmi": float(normalized_mutual_info_score(y, c)), "ari": float(adjusted_rand_score(y, c)), "acc": acc}


def kmeans(features: Tensor | np.ndarray, n_clusters: int, seed: int = 0, n_init: int = 4,
           standardize: bool = False) -> np.ndarray:
    """k-means cluster ids of ``features`` (scikit-learn, fixed seed).

    ``standardize`` scales every feature to zero mean and unit variance first (for
    raw pixels leave it off: it would blow up the near-constant border pixels).
    """
    from sklearn.cluster import KMeans

    x = features.detach().cpu().float().numpy() if isinstance(features, Tensor) else np.asarray(features, np.float32)
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    if len(x) < n_clusters:
        raise ValueError(f"need at least n_clusters={n_clusters} points, got {len(x)}")
    if standardize:
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return KMeans(n_clusters, n_init=n_init, random_state=seed).fit_predict(x.astype(np.float64))


def cluster_scores(features: Tensor | np.ndarray, labels: Tensor | np.ndarray, n_clusters: int | None = None,
                   seed: int = 0, l2_normalize: bool = True, **kw: Any) -> dict[str, float]:
    """k-means on ``features`` (L2-normalised rows by default), scored against ``labels``.

    Returns ``{"nmi", "ari", "acc"}``.  ``n_clusters`` defaults to the number of
    distinct labels.  Row normalisation makes k-means compare directions (cosine),
    as the kNN classifier does for SSL features.
    """
    y = _np_labels(labels, "labels")
    k = int(n_clusters or len(np.unique(y)))
    f = torch.as_tensor(np.asarray(features)) if not isinstance(features, Tensor) else features
    f = f.detach().cpu().float().reshape(len(f), -1)
    if l2_normalize:
        f = torch.nn.functional.normalize(f, dim=1)
    return cluster_metrics(y, kmeans(f, k, seed=seed, **kw))
