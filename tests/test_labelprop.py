"""Label propagation (course_lib.labelprop): the graph, the propagation, and the evaluation protocol."""

from __future__ import annotations

import pytest
import torch

from course_lib.labelprop import knn_graph, label_propagation_accuracy, pca_project, propagate_labels


def two_moons_like(n_per: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two elongated classes that a nearest-centroid rule confuses but a neighbour graph follows.

    Each class is a chain along x at its own y; the chains overlap in x and are close in y, so
    the *ends* of a chain are nearer to the other class's centre than to their own.
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(-6, 6, n_per)
    a = torch.stack([t, torch.zeros(n_per)], 1)
    b = torch.stack([t + 0.05, torch.full((n_per,), 1.2)], 1)
    x = torch.cat([a, b]) + 0.02 * torch.randn(2 * n_per, 2, generator=g)
    return torch.cat([x, torch.full((2 * n_per, 1), 3.0)], 1), torch.cat([torch.zeros(n_per), torch.ones(n_per)]).long()


def test_graph_is_symmetric_normalised_and_has_no_self_loops():
    x, _ = two_moons_like()
    g = knn_graph(x, k=3).to_dense()
    assert torch.allclose(g, g.T)
    assert torch.all(g.diagonal() == 0)
    assert torch.all(g >= 0)
    # every node has at least its own k neighbours (symmetrising can only add edges)
    assert int((g > 0).sum(1).min()) >= 3
    # D^-1/2 W D^-1/2: its largest eigenvalue is 1
    assert torch.linalg.eigvalsh(g).max() == pytest.approx(1.0, abs=1e-4)


def test_propagation_follows_the_graph_from_one_label_per_class():
    x, y = two_moons_like()
    labelled = torch.tensor([0, 119])  # opposite ends of the two chains
    scores = propagate_labels(knn_graph(x, k=4), labelled, y[labelled], 2, iters=200)
    assert torch.equal(scores.argmax(1), y)
    # the control: the nearest *labelled* point gets the far end of the chains wrong
    nearest = torch.cdist(x, x[labelled]).argmin(1)
    assert (y[labelled][nearest] != y).sum() > 10


def test_labelled_rows_keep_their_label_and_alpha_bounds_are_checked():
    x, y = two_moons_like()
    g = knn_graph(x, k=4)
    scores = propagate_labels(g, torch.tensor([5, 70]), torch.tensor([0, 1]), 2)
    assert scores[5].argmax() == 0 and scores[70].argmax() == 1
    with pytest.raises(ValueError, match="alpha must be in"):
        propagate_labels(g, torch.tensor([5]), torch.tensor([0]), 2, alpha=1.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        propagate_labels(g, torch.tensor([5]), torch.tensor([2]), 2)
    with pytest.raises(ValueError, match="one label per labelled index"):
        propagate_labels(g, torch.tensor([5, 6]), torch.tensor([0]), 2)


def test_knn_graph_rejects_impossible_k_and_bad_shapes():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="k must be between 1 and N - 1 = 9"):
        knn_graph(x, k=10)
    with pytest.raises(ValueError, match=r"features must be \(N, D\)"):
        knn_graph(torch.randn(10, 2, 2))


def test_pca_project_keeps_the_largest_variance_axis():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g) * torch.tensor([5.0, 1.0, 0.1])
    train, test = pca_project(x, x[:7], dim=1)
    assert train.shape == (500, 1) and test.shape == (7, 1)
    assert float(train.var()) == pytest.approx(float(x[:, 0].var()), rel=0.05)
    assert torch.allclose(test, train[:7])
    with pytest.raises(ValueError, match="dim must be between 1 and 3"):
        pca_project(x, dim=4)


def test_label_propagation_accuracy_beats_the_labelled_points_alone():
    x, y = two_moons_like()
    test_x, test_y = two_moons_like(seed=1)
    draws = [torch.tensor([0, 119]), torch.tensor([59, 60])]
    res = label_propagation_accuracy(x, y, test_x, test_y, draws, k=4, knn_k=3, iters=200)
    assert set(res) == {"test_acc", "pseudo_label_acc"} and len(res["test_acc"]) == 2
    assert min(res["pseudo_label_acc"]) > 0.95 and min(res["test_acc"]) > 0.95


def test_label_propagation_keeps_each_draws_pseudo_labels_on_request():
    x, y = two_moons_like()
    test_x, test_y = two_moons_like(seed=1)
    draws = [torch.tensor([0, 119]), torch.tensor([59, 60])]
    res = label_propagation_accuracy(x, y, test_x, test_y, draws, k=4, knn_k=3, iters=200, keep_pseudo_labels=True)
    assert len(res["pseudo_labels"]) == 2
    for idx, pseudo, acc in zip(draws, res["pseudo_labels"], res["pseudo_label_acc"]):
        assert pseudo.shape == y.shape and torch.equal(pseudo[idx], y[idx])  # the labelled points keep their labels
        assert float((pseudo == y).float().mean()) == pytest.approx(acc)


def test_views_are_averaged_and_must_match():
    x, y = two_moons_like()
    test_x, test_y = two_moons_like(seed=1)
    draws = [torch.tensor([0, 119]), torch.tensor([59, 60])]
    kw = dict(k=4, knn_k=3, iters=200, keep_pseudo_labels=True)
    one = label_propagation_accuracy(x, y, test_x, test_y, draws, **kw)
    two = label_propagation_accuracy([x, x], y, [test_x, test_x], test_y, draws, **kw)  # a view twice: no change
    assert one["test_acc"] == two["test_acc"]
    assert all(torch.equal(a, b) for a, b in zip(one["pseudo_labels"], two["pseudo_labels"]))
    noise = torch.randn(len(x), 2, generator=torch.Generator().manual_seed(0))
    mixed = label_propagation_accuracy([x, noise], y, [test_x, torch.randn(len(test_x), 2)], test_y, draws, **kw)
    assert min(mixed["pseudo_label_acc"]) > 0.6  # a useless view dilutes the good one, it does not erase it
    with pytest.raises(ValueError, match="same views"):
        label_propagation_accuracy([x, x], y, [test_x], test_y, draws)


def test_a_shared_cache_builds_each_views_graph_once_and_changes_nothing(monkeypatch):
    import course_lib.labelprop as lp

    x, y = two_moons_like()
    test_x, test_y = two_moons_like(seed=1)
    noise = torch.randn(len(x), 3, generator=torch.Generator().manual_seed(0))
    noise_test = torch.randn(len(test_x), 3, generator=torch.Generator().manual_seed(1))
    draws = [torch.tensor([0, 119]), torch.tensor([59, 60])]
    kw = dict(k=4, knn_k=3, iters=200)
    expected = [label_propagation_accuracy(x, y, test_x, test_y, draws, **kw),
                label_propagation_accuracy([x, noise], y, [test_x, noise_test], test_y, draws, **kw)]
    built = []
    monkeypatch.setattr(lp, "knn_graph", lambda f, k: built.append(f) or knn_graph(f, k=k))
    cache: dict = {}
    got = [label_propagation_accuracy(x, y, test_x, test_y, draws, cache=cache, **kw),
           label_propagation_accuracy([x, noise], y, [test_x, noise_test], test_y, draws, cache=cache, **kw)]
    assert got == expected
    assert len(built) == 2  # x's graph once (shared by both calls), the noise view's once
    label_propagation_accuracy(x, y, test_x, test_y, draws, cache=cache, k=5, knn_k=3)
    assert len(built) == 3  # another k is another graph
