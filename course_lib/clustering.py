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

Beyond k-means: ``run_clusterings`` adds DBSCAN and agglomerative (Ward) clustering,
with DBSCAN's ``eps`` read off the knee of the k-distance curve (``kdistance_eps``)
instead of guessed; ``score_partition`` puts the *internal* silhouette (no labels:
how separated the clusters are in feature space) next to the *external* ARI / NMI
(agreement with the labels), and ``format_score_table`` prints them side by side.
A high silhouette alone does not say that the clusters are the classes.
"""

from __future__ import annotations

from typing import Any, Sequence

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


# --------------------------------------------------------------------------- density and hierarchical clustering


def _np_features(features: Tensor | np.ndarray) -> np.ndarray:
    x = features.detach().cpu().float().numpy() if isinstance(features, Tensor) else np.asarray(features, np.float32)
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    return x.astype(np.float64, copy=False)


def kdistances(features: Tensor | np.ndarray, k: int) -> np.ndarray:
    """Distance of every point to its ``k``-th nearest *other* point, sorted ascending.

    This is the k-distance curve of Ester et al. (1996): plotted, it stays flat
    inside dense regions and shoots up for outliers; DBSCAN's ``eps`` belongs at the
    bend.  With ``DBSCAN(min_samples=k + 1)`` (scikit-learn counts the point itself)
    a point is a core point exactly when its k-distance is at most ``eps``.
    """
    from sklearn.neighbors import NearestNeighbors

    x = _np_features(features)
    if not 1 <= k < len(x):
        raise ValueError(f"k must be between 1 and the number of points - 1 ({len(x) - 1}), got {k}")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return np.sort(dist[:, k])


def knee_index(values: np.ndarray | Sequence[float]) -> int:
    """Index of the knee of an increasing curve: the point farthest *below* its chord.

    Both axes are rescaled to [0, 1] and the chord joins the first and the last
    point (the "Kneedle" construction of Satopää et al., 2011).  For a convex curve
    that is flat and then shoots up (a sorted k-distance curve), this is where it
    bends.  A straight line has no knee: its middle index is returned.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or len(y) < 3:
        raise ValueError(f"need a 1-d curve of at least 3 values, got shape {y.shape}")
    if np.any(np.diff(y) < 0):
        raise ValueError("the curve must be sorted ascending (use kdistances, which sorts)")
    span = y[-1] - y[0]
    if span <= 0:
        return len(y) // 2
    t = np.linspace(0.0, 1.0, len(y))
    gap = t - (y - y[0]) / span  # height of the chord above the curve
    if gap.max() <= 1e-12:
        return len(y) // 2
    return int(np.argmax(gap))


def kdistance_eps(features: Tensor | np.ndarray, min_samples: int) -> tuple[float, np.ndarray, int]:
    """DBSCAN's ``eps`` read off the knee of the k-distance curve, ``k = min_samples - 1``.

    Returns ``(eps, sorted k-distances, knee index)``, so the curve can be plotted
    with the chosen point.  No label is used.
    """
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2 (a core point needs a neighbour), got {min_samples}")
    d = kdistances(features, min_samples - 1)
    i = knee_index(d)
    return float(d[i]), d, i


def score_partition(features: Tensor | np.ndarray, clusters: Tensor | np.ndarray,
                    labels: Tensor | np.ndarray) -> dict[str, float]:
    """Internal and external scores of one clustering (cluster id ``-1`` = noise, as in DBSCAN).

    - ``n_clusters``: clusters other than noise; ``noise``: fraction of noise points;
    - ``silhouette`` (internal, uses no label): mean silhouette of the non-noise
      points in ``features``' Euclidean geometry, ``nan`` when fewer than 2 clusters
      (it is undefined there);
    - ``ari``, ``nmi``, ``acc`` (external, against ``labels``): over *all* points,
      noise counted as one more cluster, so labelling everything noise scores 0.
    """
    from sklearn.metrics import silhouette_score

    x = _np_features(features)
    c = _np_labels(clusters, "clusters")
    if len(c) != len(x):
        raise ValueError(f"one cluster id per point: {len(x)} points, {len(c)} ids")
    keep = c != -1
    ids = np.unique(c[keep])
    sil = float("nan")
    if 2 <= len(ids) < keep.sum():
        sil = float(silhouette_score(x[keep], c[keep]))
    return {"n_clusters": int(len(ids)), "noise": float(1.0 - keep.mean()), "silhouette": sil,
            **cluster_metrics(labels, c)}


def run_clusterings(features: Tensor | np.ndarray, n_clusters: int, eps: float, min_samples: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Cluster ids from K-Means, DBSCAN and agglomerative (Ward) clustering of ``features``.

    K-Means and Ward get ``n_clusters``; DBSCAN finds its own number of clusters
    from ``eps`` and ``min_samples`` (and marks outliers ``-1``).  No label is used.
    """
    from sklearn.cluster import DBSCAN, AgglomerativeClustering

    x = _np_features(features)
    return {"K-Means": kmeans(x, n_clusters, seed=seed),
            "DBSCAN": DBSCAN(eps=eps, min_samples=min_samples).fit_predict(x),
            "Agglomerative (Ward)": AgglomerativeClustering(n_clusters=n_clusters, linkage="ward").fit_predict(x)}


def format_score_table(rows: Sequence[dict[str, Any]], keys: Sequence[str] = ("features", "method")) -> str:
    """A fixed-width text table of ``score_partition`` rows (plus the identifying ``keys``)."""
    cols = [(k, 22 if k == "method" else 13) for k in keys]
    head = "".join(f"{k:<{w}}" for k, w in cols) + f"{'clusters':>9}{'noise':>8}{'silhouette':>12}{'ARI':>8}{'NMI':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        sil = "   n/a" if np.isnan(r["silhouette"]) else f"{r['silhouette']:6.3f}"
        lines.append("".join(f"{str(r[k]):<{w}}" for k, w in cols)
                     + f"{r['n_clusters']:>9d}{100 * r['noise']:>7.1f}%{sil:>12}{r['ari']:>8.3f}{r['nmi']:>8.3f}")
    return "\n".join(lines)
