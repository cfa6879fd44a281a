"""Label propagation on a kNN graph of frozen features: what the *unlabelled* images add.

A linear probe trained on 100 labelled images sees 100 points; the other 54,000
pretraining images sit unused at evaluation time.  Label propagation (Zhou et al.,
"Learning with local and global consistency", NeurIPS 2004; used on deep features by
Iscen et al., CVPR 2019) spreads the 100 labels along the unlabelled pool's kNN graph:

1. ``knn_graph``: connect every pool image to its ``k`` nearest neighbours by cosine
   similarity of the features, weight each edge by ``similarity ** power`` (sharper:
   near neighbours count far more), symmetrise, and normalise ``D^-1/2 W D^-1/2``;
2. ``propagate_labels``: iterate ``Z <- alpha * W_norm @ Z + (1 - alpha) * Y`` from the
   one-hot labels ``Y`` (zero rows for unlabelled images); each row of ``Z`` then scores
   the classes for one pool image;
3. classify each test image by the weighted kNN vote of the pseudo-labelled pool
   (``Z.argmax(1)``), as ``label_propagation_accuracy`` does.

Several *views* of the same images (say MoCo features and raw pixels) give several
graphs whose mistakes differ; ``label_propagation_accuracy`` takes a list of feature
sets and averages the views' normalised class scores (and test votes).

The test set plays no part in the graph (the method is transductive on the
*training* pool only), so the test accuracy is still measured once, on unseen images.
It is a semi-supervised protocol, not a linear probe on 100 labels: report it as such.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .evaluation import knn_neighbours, knn_vote_scores


def knn_graph(features: Tensor, k: int = 10, power: float = 3.0, chunk: int = 4096) -> Tensor:
    """The symmetric, normalised kNN affinity ``D^-1/2 W D^-1/2`` of ``features`` (a sparse ``(N, N)`` tensor).

    ``W[i, j] = max(cos(f_i, f_j), 0) ** power`` if ``j`` is among the ``k`` nearest
    neighbours of ``i`` (itself excluded) or vice versa, else 0.  Neighbours are found
    ``chunk`` rows at a time, so memory stays ``O(chunk * N)``.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    n = len(features)
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and N - 1 = {n - 1} (neighbours per image), got {k}")
    if power <= 0:
        raise ValueError(f"power must be > 0 (3 sharpens the similarities), got {power}")
    sims, cols = knn_neighbours(features, features, k, batch_size=chunk, exclude_self=True)
    rows = torch.arange(n).repeat_interleave(k)
    w = sims.cpu().flatten().clamp(min=0) ** power
    graph = torch.sparse_coo_tensor(torch.stack([rows, cols.cpu().flatten()]), w, (n, n),
                                    check_invariants=False)
    graph = (graph + graph.t()).coalesce()  # symmetric: an edge if either end picked the other
    idx, val = graph.indices(), graph.values()
    d = torch.zeros(n).index_add_(0, idx[0], val).clamp(min=1e-12).rsqrt()
    return torch.sparse_coo_tensor(idx, val * d[idx[0]] * d[idx[1]], (n, n),
                                   check_invariants=False).coalesce()


def propagate_labels(graph: Tensor, labelled: Tensor, labels: Tensor, num_classes: int,
                     alpha: float = 0.99, iters: int = 20) -> Tensor:
    """Class scores ``(N, num_classes)`` for every node of ``graph``, spread from the labelled nodes.

    Args:
        graph: ``knn_graph(features)``.
        labelled: indices of the labelled nodes.
        labels: their classes (same length as ``labelled``).
        alpha: how much of each step comes from the neighbours (the rest from the
            labels themselves); close to 1 spreads labels far along the graph.
        iters: propagation steps (the iteration converges geometrically, like ``alpha ** iters``).

    The pseudo-label of node ``i`` is ``scores[i].argmax()``.  A node that no path
    connects to a labelled one keeps all-zero scores (argmax 0); on a kNN graph of
    tens of thousands of images that does not happen in practice.
    """
    labelled, labels = torch.as_tensor(labelled).long(), torch.as_tensor(labels).long()
    if len(labelled) != len(labels) or len(labelled) == 0:
        raise ValueError(f"need one label per labelled index (and at least one); got {len(labelled)} indices "
                         f"and {len(labels)} labels")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (0.99 is usual), got {alpha}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if int(labels.max()) >= num_classes or int(labels.min()) < 0:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got {int(labels.min())}..{int(labels.max())}")
    y = torch.zeros(graph.shape[0], num_classes)
    y[labelled, labels] = 1.0
    z = y.clone()
    for _ in range(iters):
        z = alpha * torch.sparse.mm(graph, z) + (1 - alpha) * y
    return z


def pca_project(train: Tensor, *others: Tensor, dim: int = 50) -> list[Tensor]:
    """Project ``train`` and ``others`` (flattened to rows) onto the top ``dim`` principal axes of ``train``.

    The usual preprocessing for neighbour search on raw pixels: 50 axes keep the shape of
    a digit, drop most pixel noise, and make the graph 15x cheaper to build than 784-d rows.
    """
    x = train.flatten(1).float()
    if not 1 <= dim <= min(x.shape):
        raise ValueError(f"dim must be between 1 and {min(x.shape)} for {tuple(x.shape)} rows, got {dim}")
    mean = x.mean(0)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    axes = v[:dim].T
    return [(t.flatten(1).float() - mean) @ axes for t in (train, *others)]


def _prepare_view(pool: Tensor, test: Tensor, k: int, knn_k: int, cache: dict) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The pool's kNN graph and each test image's ``knn_k`` nearest pool images, from ``cache`` if there.

    Keyed by the tensors' identity; the entry keeps both tensors alive, so an id cannot be reused.
    """
    key = (id(pool), id(test), k, knn_k)
    if key not in cache:
        cache[key] = (pool, test, knn_graph(pool, k=k), knn_neighbours(pool, test, knn_k))
    return cache[key][2], cache[key][3]


def label_propagation_accuracy(pool_features: Tensor | Sequence[Tensor], pool_labels: Tensor,
                               test_features: Tensor | Sequence[Tensor], test_labels: Tensor, draws: list[Tensor],
                               *, k: int = 10, knn_k: int = 20,
                               T: float = 0.07, alpha: float = 0.99, iters: int = 20,
                               num_classes: int | None = None, keep_pseudo_labels: bool = False,
                               cache: dict | None = None) -> dict[str, list]:
    """Per draw: propagate the draw's labels over the pool's kNN graph, then classify the test set.

    The graph (``k`` neighbours) and each test image's ``knn_k`` nearest pool images are
    found once and shared by every draw; ``alpha`` and ``iters`` go to ``propagate_labels``.
    A test image gets the weighted kNN vote (``course_lib.evaluation.knn_vote``, temperature
    ``T``) of the *pseudo-labelled* pool; the labelled images keep their true labels.
    ``pool_labels`` are read only at the drawn indices (and to score the pseudo-labels).

    ``pool_features`` and ``test_features`` may each be a list of views (the same images
    seen through, e.g., MoCo features and raw pixels): one graph per view, and each pool
    image's class scores, normalised to sum to 1, are averaged over the views; so are
    each test image's normalised votes.  With one view this is plain label propagation.

    ``cache``: pass the same (initially empty) dict to several calls that share views, e.g. MoCo
    alone and MoCo + HOG: each view's graph and test-neighbour search is then built once.

    Returns ``{"test_acc": [...], "pseudo_label_acc": [...]}``, one value per draw, and with
    ``keep_pseudo_labels`` also ``"pseudo_labels"``: each draw's labels of the pool (a teacher
    for ``course_lib.selftrain.self_train``).
    """
    pool_views = [pool_features] if isinstance(pool_features, Tensor) else list(pool_features)
    test_views = [test_features] if isinstance(test_features, Tensor) else list(test_features)
    if len(pool_views) != len(test_views) or not pool_views:
        raise ValueError(f"give the pool and the test set the same views (feature sets), got {len(pool_views)} "
                         f"and {len(test_views)}")
    for p, t in zip(pool_views, test_views):
        if len(p) != len(pool_labels) or len(t) != len(test_labels):
            raise ValueError(f"features and labels must pair up: pool {len(p)} vs {len(pool_labels)}, "
                             f"test {len(t)} vs {len(test_labels)}")
    classes = num_classes or int(pool_labels.max()) + 1
    prepared = [_prepare_view(p, t, k, knn_k, {} if cache is None else cache) for p, t in zip(pool_views, test_views)]
    graphs, searches = [g for g, _ in prepared], [s for _, s in prepared]  # the searches serve every draw
    out: dict[str, list] = {"test_acc": [], "pseudo_label_acc": []}
    if keep_pseudo_labels:
        out["pseudo_labels"] = []
    for idx in draws:
        idx = torch.as_tensor(idx).long()
        scores = sum(torch.nn.functional.normalize(propagate_labels(g, idx, pool_labels[idx], classes, alpha=alpha,
                                                                    iters=iters), p=1, dim=1) for g in graphs)
        pseudo = scores.argmax(1)
        pseudo[idx] = pool_labels[idx]
        out["pseudo_label_acc"].append(float((pseudo == pool_labels).float().mean()))
        if keep_pseudo_labels:
            out["pseudo_labels"].append(pseudo)
        pred = sum(knn_vote_scores(sim, nbr, pseudo, T, classes) for sim, nbr in searches).argmax(1)
        out["test_acc"].append(float((pred == test_labels).float().mean()))
    return out
