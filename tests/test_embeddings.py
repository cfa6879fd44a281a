"""Penultimate features and the t-SNE map: right layer, model left untouched, clusters kept apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.embeddings import last_linear, penultimate_features, plot_embedding, tsne_2d, tsne_maps
from course_lib.loader import TensorLoader
from course_lib.models import MLP, FashionCNN


def test_features_are_the_inputs_of_the_output_layer():
    torch.manual_seed(0)
    model = MLP(in_features=64, hidden=(32, 16), num_classes=4, dropout=0.5)
    x, y = torch.rand(50, 1, 8, 8), torch.arange(50) % 4
    model.train()
    feats, labels = penultimate_features(model, TensorLoader(x, y, batch_size=16))
    assert feats.shape == (50, 16) and torch.equal(labels, y)
    model.eval()
    assert torch.allclose(model.net[-1](feats), model(x), atol=1e-5)  # linear on top of the features
    assert model.training is False
    model.train()
    penultimate_features(model, TensorLoader(x, y, batch_size=16))
    assert model.training is True  # mode restored
    assert not model.net[-1]._forward_hooks  # hook removed


def test_cnn_features_and_max_samples():
    model = FashionCNN(widths=(4, 8), hidden=12)
    x, y = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    feats, labels = penultimate_features(model, TensorLoader(x, y, batch_size=16), max_samples=20)
    assert feats.shape == (20, 12) and len(labels) == 20


def test_tsne_keeps_separated_clusters_apart():
    g = np.random.default_rng(0)
    centres = g.normal(size=(3, 64)) * 10
    labels = np.repeat(np.arange(3), 40)
    feats = centres[labels] + g.normal(size=(120, 64))
    xy = tsne_2d(torch.tensor(feats, dtype=torch.float32), seed=0, perplexity=15, pca_dims=10)
    assert xy.shape == (120, 2)
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95  # nearest neighbour in the map has the same class
    assert np.allclose(xy, tsne_2d(feats, seed=0, perplexity=15, pca_dims=10))  # same seed, same map


def test_plot_embedding_returns_a_figure():
    fig = plot_embedding(np.random.rand(30, 2), torch.arange(30) % 3, ["a", "b", "c"])
    assert len(fig.axes[0].collections) == 3


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="no nn.Linear"):
        last_linear(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(ValueError, match="perplexity"):
        tsne_2d(np.random.rand(10, 5), perplexity=30)
    with pytest.raises(ValueError, match="flatten"):
        tsne_2d(np.random.rand(10, 2, 2))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_embedding(np.random.rand(10, 3), np.zeros(10), ["a"])


def test_umap_2d_without_umap_says_how_to_install_or_embeds():
    from course_lib.embeddings import umap_2d

    feats = np.random.default_rng(0).normal(size=(60, 8))
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"\[umap\]"):
            umap_2d(feats)
        return
    xy = umap_2d(feats, n_neighbors=5)
    assert xy.shape == (60, 2)


def test_tsne_maps_in_threads_are_the_maps_tsne_2d_makes_alone():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(90, 12)).astype(np.float32)
    jobs = {("a", 5): (feats, 5.0), ("a", 20): (feats, 20.0), "b": (feats[::-1].copy(), 20.0)}
    maps = tsne_maps(jobs, seed=3, pca_dims=8)
    assert list(maps) == list(jobs)
    for key, (f, p) in jobs.items():
        assert np.array_equal(maps[key], tsne_2d(f, seed=3, perplexity=p, pca_dims=8))
    with pytest.raises(ValueError, match="workers"):
        tsne_maps(jobs, workers=0)
