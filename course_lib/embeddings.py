"""What a classifier's last hidden layer sees: penultimate features and their t-SNE map.

The student report looked at its MLP through TensorBoard's projector.  The same
picture, offline and reproducible: take the activations that enter the model's last
``nn.Linear`` (the "penultimate layer"; the classifier is linear on top of them),
reduce them with PCA to ~50 dimensions (t-SNE is slow and noisy on wide inputs),
embed a few thousand points in 2-D with scikit-learn's t-SNE, and colour them by
class.  Classes that overlap in the map (shirt, T-shirt, pullover, coat) are the ones
the confusion matrix shows the model confusing.

t-SNE keeps neighbourhoods, not distances: cluster sizes and the gaps between clusters
mean little, and the map changes with the seed and the perplexity.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Hashable, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["last_linear", "penultimate_features", "plot_embedding", "tsne_2d", "tsne_maps", "umap_2d"]


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` in registration order (its output layer, for the course's classifiers)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer, so it has no penultimate features to read; "
                         "pass the backbone to course_lib.evaluation.extract_features instead")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]],
                         layer: nn.Module | None = None, max_samples: int | None = None) -> tuple[Tensor, Tensor]:
    """The inputs of ``layer`` (default: the last ``nn.Linear``) for every batch of ``loader``.

    Returns CPU ``(features (N, D), labels (N,))``.  The model runs in eval mode (dropout
    off, BatchNorm on running statistics); its previous mode is restored.  Feed the
    same normalisation as in training, e.g. a ``TensorLoader`` with ``normalize=``.
    ``max_samples`` stops after that many samples.
    """
    layer = layer if layer is not None else last_linear(model)
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None, got {max_samples}")
    captured: list[Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().flatten(1).float().cpu()))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels, seen = [], 0
    try:
        for x, y in loader:
            model(x.to(device))
            labels.append(y.cpu())
            seen += len(y)
            if max_samples is not None and seen >= max_samples:
                break
    finally:
        hook.remove()
        model.train(was_training)
    if not captured:
        raise ValueError("the loader yielded no batches (or the layer was never called); check the dataset is not empty")
    feats, ys = torch.cat(captured), torch.cat(labels)
    if len(feats) != len(ys):
        raise ValueError(f"the layer ran {len(feats)} rows for {len(ys)} labels; pass the layer that is called once per batch")
    n = len(ys) if max_samples is None else min(max_samples, len(ys))
    return feats[:n], ys[:n]


def tsne_2d(features: Tensor | np.ndarray, seed: int = 0, perplexity: float = 30.0, pca_dims: int = 50,
            threads: int | None = 1) -> np.ndarray:
    """2-D t-SNE coordinates ``(N, 2)`` of ``features`` ``(N, D)``, after PCA to ``pca_dims`` if D is larger.

    PCA first is standard practice (van der Maaten's own code does it): it removes noise
    directions and makes t-SNE several times faster.  Same ``seed``, same map.

    ``threads`` caps scikit-learn's OpenMP threads (None = its default, all cores).  The
    default is 1 because t-SNE's OpenMP threads busy-wait: on a machine whose cores are
    busy with other work (a training run, a shared CI box) 2 threads took 100x longer
    than 1 (60 s instead of 0.5 s for 120 points).
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = features.detach().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
    x = x.astype(np.float32, copy=False)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D), got shape {x.shape}; flatten them with .flatten(1)")
    n = len(x)
    if n < 4 or perplexity >= n:
        raise ValueError(f"t-SNE needs more points than its perplexity ({perplexity}); got {n} points. "
                         f"Use more points or perplexity < {max(n - 1, 1)}")
    with threadpool_limits(limits=threads):
        if x.shape[1] > pca_dims:
            x = PCA(n_components=min(pca_dims, n), random_state=seed).fit_transform(x)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def tsne_maps(jobs: Mapping[Hashable, tuple[Tensor | np.ndarray, float]], seed: int = 0, pca_dims: int = 50,
              workers: int = 2) -> dict[Hashable, np.ndarray]:
    """Several t-SNE maps at once: ``{key: tsne_2d(features, seed, perplexity)}`` for ``{key: (features, perplexity)}``.

    scikit-learn's t-SNE optimisation runs on one core (its OpenMP threads are capped
    at 1, see ``tsne_2d``) and releases the GIL while it computes gradients, so
    ``workers`` maps are computed side by side in threads -- on a 2-core laptop three
    maps take about half the time.  Every map is exactly the one ``tsne_2d`` makes alone.
    """
    from threadpoolctl import threadpool_limits

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # The OpenMP/BLAS cap is process-wide, so it is set once around all the threads.
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(tsne_2d, feats, seed=seed, perplexity=perplexity, pca_dims=pca_dims, threads=None)
                   for key, (feats, perplexity) in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def plot_embedding(xy: np.ndarray, labels: Tensor | Sequence[int], class_names: Sequence[str], ax=None,
                   title: str = "t-SNE of the penultimate layer", point_size: float = 4.0):
    """Scatter ``xy`` coloured by class, with each class's name at its median point."""
    xy = np.asarray(xy)
    y = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(y):
        raise ValueError(f"xy must be (N, 2) with one label per point; got xy {xy.shape} and {len(y)} labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for c, name in enumerate(class_names):
        pts = xy[y == c]
        if len(pts) == 0:
            continue
        ax.scatter(pts[:, 0], pts[:, 1], s=point_size, color=cmap(c % cmap.N), label=name, alpha=0.7)
        mx, my = np.median(pts, axis=0)
        ax.text(mx, my, name, fontsize=8, ha="center", va="center", weight="bold",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.7, "lw": 0})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=7, loc="best", framealpha=0.7)
    ax.figure.tight_layout()
    return ax.figure


def umap_2d(features: Tensor | np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1,
            pca_dims: int = 50) -> np.ndarray:
    """2-D UMAP coordinates ``(N, 2)`` of ``features`` (after PCA to ``pca_dims`` if wider).

    Needs the optional dependency ``umap-learn`` (``pip install -e .[umap]``); without
    it an ``ImportError`` says so, and notebooks skip the UMAP maps with a message.
    Like t-SNE, UMAP keeps neighbourhoods: ``n_neighbors`` trades local detail for
    global layout, ``min_dist`` sets how tightly points may pack.
    """
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("UMAP needs the optional dependency umap-learn: pip install -e '.[umap]'") from e
    from sklearn.decomposition import PCA

    x = features.detach().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
    x = x.astype(np.float32, copy=False)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D), got shape {x.shape}; flatten them with .flatten(1)")
    if n_neighbors >= len(x):
        raise ValueError(f"n_neighbors ({n_neighbors}) must be smaller than the number of points ({len(x)})")
    if x.shape[1] > pca_dims:
        x = PCA(n_components=min(pca_dims, len(x)), random_state=seed).fit_transform(x)
    return umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed).fit_transform(x)
