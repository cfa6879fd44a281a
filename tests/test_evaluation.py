"""Tests of course_lib.evaluation: frozen features, probes, kNN, fine-tuning, few labels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.evaluation import (
    class_balanced_indices,
    cv_select_C,
    extract_features,
    few_label_protocol,
    finetune,
    knn_classify,
    knn_neighbours,
    knn_vote,
    linear_probe,
    linear_probe_on_backbone,
    same_state,
    snapshot_state,
    topk_accuracy,
)


def bn_backbone() -> nn.Module:
    """Tiny 1x8x8 backbone with BatchNorm (whose running stats would move in train mode)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
    )


def blobs(n_per_class: int = 50, classes: int = 3, dim: int = 5, spread: float = 0.3, seed: int = 0):
    """Gaussian blobs around well-separated centres: (features, labels)."""
    g = torch.Generator().manual_seed(seed)
    centres = 4.0 * torch.eye(classes, dim)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    feats = centres[labels] + spread * torch.randn(len(labels), dim, generator=g)
    return feats, labels


# --------------------------------------------------------------------------- features


def test_extract_features_batched_cpu_float_eval_mode_restored(tiny_classification):
    images, _ = tiny_classification
    net = bn_backbone().train()
    before = snapshot_state(net)
    feats = extract_features(net, images, batch_size=100)
    assert feats.shape == (256, 32) and feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert not feats.requires_grad
    assert net.training  # mode restored
    assert same_state(before, snapshot_state(net))  # eval mode: BN running stats untouched
    whole = extract_features(net, images, batch_size=1000)
    torch.testing.assert_close(feats, whole)
    # uint8 is scaled to [0, 1]; a transform is applied after scaling
    ident = nn.Flatten()
    torch.testing.assert_close(extract_features(ident, images[:4]), images[:4].flatten(1).float() / 255)
    torch.testing.assert_close(
        extract_features(ident, images[:4], transform=lambda x: 2 * x), 2 * images[:4].flatten(1).float() / 255
    )
    with pytest.raises(ValueError, match="non-empty"):
        extract_features(net, images[:0])


def test_extract_features_channels_last_same_features_and_unflattened_shape(tiny_classification):
    images, _ = tiny_classification
    net = bn_backbone()
    before = snapshot_state(net)
    nchw = extract_features(net, images[:64], channels_last=False)
    nhwc = extract_features(net, images[:64], channels_last=True)  # what None picks for a conv net on CPU
    torch.testing.assert_close(nchw, nhwc, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(extract_features(net, images[:64]), nchw, rtol=1e-4, atol=1e-5)
    assert same_state(before, snapshot_state(net))  # values unchanged, whatever the memory layout
    trunk = net[:3]  # conv-BN-ReLU: (N, 8, 8, 8) activations
    maps = extract_features(trunk, images[:5], flatten=False)
    assert maps.shape == (5, 8, 8, 8) and maps.is_contiguous()
    torch.testing.assert_close(maps.flatten(1), extract_features(trunk, images[:5]))


# --------------------------------------------------------------------------- probe


def test_linear_probe_on_backbone_leaves_backbone_byte_identical(tiny_classification):
    images, labels = tiny_classification
    net = bn_backbone().train()
    before = snapshot_state(net)
    res = linear_probe_on_backbone(net, images[:192], labels[:192], images[192:], labels[192:], C=10.0)
    assert same_state(before, snapshot_state(net))
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert res.test_accuracy is not None and res.test_accuracy > 0.9  # quadrants are easy


def test_same_state_detects_a_single_changed_bit():
    net = bn_backbone()
    before = snapshot_state(net)
    with torch.no_grad():
        w = net[0].weight.view(-1)
        w[0] = torch.nextafter(w[0], torch.tensor(float("inf")))
    assert not same_state(before, snapshot_state(net))


def test_linear_probe_separable_and_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    x, y = blobs()
    xt, yt = blobs(seed=1)
    res = linear_probe(x, y, xt, yt, C=1.0)
    assert res.train_accuracy == 1.0 and res.test_accuracy == 1.0
    # same objective as scikit-learn's LogisticRegression(C): same probabilities
    xs = (x - x.mean(0)) / x.std(0, unbiased=False)
    sk = LogisticRegression(C=0.5, tol=1e-8, max_iter=1000).fit(xs.numpy(), y.numpy())
    ours = linear_probe(xs, y, C=0.5, standardize=False).classifier
    p_ours = torch.softmax(ours(xs), 1)
    p_sk = torch.as_tensor(sk.predict_proba(xs.numpy()), dtype=torch.float32)
    assert (p_ours - p_sk).abs().max() < 1e-3
    # smaller C = stronger regularisation = smaller weights
    w_small = linear_probe(x, y, C=0.01).classifier.linear.weight.norm()
    w_large = linear_probe(x, y, C=100.0).classifier.linear.weight.norm()
    assert w_small < w_large
    with pytest.raises(ValueError, match="same length"):
        linear_probe(x, y[:-1])
    with pytest.raises(ValueError, match="C must be > 0"):
        linear_probe(x, y, C=0)


def test_cv_select_C_uses_only_the_labelled_set():
    x, y = blobs(n_per_class=10, spread=1.0)
    best, scores = cv_select_C(x, y, Cs=(1e-5, 1.0), folds=5)
    assert set(scores) == {1e-5, 1.0}
    assert best == 1.0 and scores[1.0] > scores[1e-5]
    with pytest.raises(ValueError, match="at least 2 labelled examples per class"):
        cv_select_C(x[::10], y[::10], Cs=(1.0,))


# --------------------------------------------------------------------------- kNN, top-k


def test_knn_on_perfectly_separable_features_is_exact():
    x, y = blobs(n_per_class=30, classes=4, dim=8)
    xt, yt = blobs(n_per_class=10, classes=4, dim=8, seed=1)
    pred = knn_classify(x, y, xt, k=20, T=0.07)
    assert (pred == yt).float().mean().item() == 1.0
    assert (knn_classify(x, y, xt, k=1000, batch_size=7) == yt).all()  # k clamped, batched


def test_knn_weights_votes_by_similarity():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.05]])
    # two far neighbours of class 1 vs one very close neighbour of class 0
    assert knn_classify(train, labels, query, k=3, T=0.07).item() == 0
    assert knn_classify(train, labels, query, k=3, T=100.0).item() == 1  # ~uniform weights: majority


def test_one_neighbour_search_serves_several_labellings():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    query = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    sim, idx = knn_neighbours(train, query, k=2)
    assert sim.shape == idx.shape == (2, 2) and idx[0, 0] == 0 and idx[1, 0] in (1, 2)
    for labels in (torch.tensor([0, 1, 1]), torch.tensor([1, 0, 0]), torch.tensor([2, 2, 0])):
        assert torch.equal(knn_vote(sim, idx, labels, T=0.07, num_classes=3),
                           knn_classify(train, labels, query, k=2, T=0.07, num_classes=3))
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn_neighbours(train, query, k=0)
    with pytest.raises(ValueError, match="differ in width"):
        knn_neighbours(train, torch.ones(1, 3))


def test_exclude_self_skips_the_item_itself_even_next_to_its_duplicate():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # items 0 and 1 identical
    _, idx = knn_neighbours(x, x, k=1, batch_size=3, exclude_self=True)  # batches cross the diagonal
    assert idx.flatten().tolist() == [1, 0, 3, 2]
    assert all(i not in row for i, row in enumerate(knn_neighbours(x, x, k=3, exclude_self=True)[1].tolist()))
    with pytest.raises(ValueError, match="exclude_self needs the test set to be the training set"):
        knn_neighbours(x, x[:2], k=1, exclude_self=True)


def test_topk_accuracy():
    logits = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    labels = torch.tensor([0, 1, 2])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3))
    assert acc == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}
    with pytest.raises(ValueError, match="number of classes"):
        topk_accuracy(logits, labels, ks=(5,))


# --------------------------------------------------------------------------- fine-tuning


def test_finetune_frozen_backbone_is_unchanged_and_head_learns(tiny_classification):
    images, labels = tiny_classification
    net = bn_backbone()
    before = snapshot_state(net)
    res = finetune(net, nn.Linear(32, 4), images, labels, val_images=images, val_labels=labels,
                   unfreeze=None, epochs=8, lr=0.05, batch_size=64)
    assert same_state(before, snapshot_state(net))  # frozen BN kept in eval mode too
    assert res.train_loss[-1] < res.train_loss[0]
    assert res.val_accuracy[-1] > 0.8
    assert all(p.requires_grad for p in net.parameters())  # flags restored


def test_finetune_cosine_schedule_decays_every_group_to_zero(tiny_classification):
    images, labels = tiny_classification
    res = finetune(bn_backbone(), nn.Linear(32, 4), images, labels, epochs=4, lr=0.05, backbone_lr=0.005,
                   batch_size=64, schedule="cosine")
    assert res.lr[0] < 0.05 and all(a > b for a, b in zip(res.lr, res.lr[1:])) and res.lr[-1] < 1e-9
    assert res.train_loss[-1] < res.train_loss[0]
    const = finetune(bn_backbone(), nn.Linear(32, 4), images, labels, epochs=2, lr=0.05, batch_size=64)
    assert const.lr == [0.05, 0.05]
    with pytest.raises(ValueError, match="schedule must be 'constant' or 'cosine'"):
        finetune(bn_backbone(), nn.Linear(32, 4), images, labels, epochs=1, schedule="linear")


def test_finetune_partial_unfreeze_trains_only_named_layers(tiny_classification):
    images, labels = tiny_classification
    net = bn_backbone()
    conv_before = net[0].weight.detach().clone()
    bn_before = net[1].weight.detach().clone()
    finetune(net, nn.Linear(32, 4), images, labels, unfreeze=("1",), epochs=1, lr=0.01)
    assert torch.equal(net[0].weight, conv_before)  # conv frozen
    assert not torch.equal(net[1].weight, bn_before)  # BN ("1") trained
    finetune(net, nn.Linear(32, 4), images, labels, unfreeze="all", epochs=1, lr=0.01)
    assert not torch.equal(net[0].weight, conv_before)
    with pytest.raises(ValueError, match="layer4"):
        finetune(net, nn.Linear(32, 4), images, labels, unfreeze=("layer4",), epochs=1)


# --------------------------------------------------------------------------- few labels


def test_class_balanced_indices():
    labels = torch.arange(100) % 4
    idx = class_balanced_indices(labels, 5, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [5, 5, 5, 5]
    assert len(set(idx.tolist())) == 20
    assert torch.equal(idx, class_balanced_indices(labels, 5, seed=0))
    assert not torch.equal(idx, class_balanced_indices(labels, 5, seed=1))
    with pytest.raises(ValueError, match="fewer than n_per_class"):
        class_balanced_indices(labels, 26, seed=0)


def test_few_label_protocol_mean_std_over_draws():
    x, y = blobs(n_per_class=40, spread=2.0)
    xt, yt = blobs(n_per_class=40, spread=2.0, seed=1)
    out = few_label_protocol(x, y, xt, yt, n_per_class=2, seeds=range(4))
    assert len(out["per_seed"]) == 4 and out["seeds"] == [0, 1, 2, 3]
    assert out["mean"] == pytest.approx(sum(out["per_seed"]) / 4)
    assert out["std"] > 0  # different draws give different accuracies
    seen = []

    def fit(xtr, ytr, xte, yte):
        seen.append(torch.bincount(ytr).tolist())
        return 0.5

    out = few_label_protocol(x, y, xt, yt, n_per_class=3, seeds=[7], fit_fn=fit)
    assert seen == [[3, 3, 3]] and out == {"mean": 0.5, "std": 0.0, "per_seed": [0.5], "seeds": [7], "n_per_class": 3}
    out = few_label_protocol(x, y, xt, yt, n_per_class=1, fit_fn=fit, indices=[torch.tensor([0, 40, 80])] * 2)
    assert out["per_seed"] == [0.5, 0.5]


def test_finetune_channels_last_matches_the_default_layout():
    from course_lib.ssl.encoders import ConvEncoder

    x, y = torch.rand(24, 1, 12, 12), torch.arange(24) % 3
    runs = []
    for cl in (False, True):
        torch.manual_seed(0)
        backbone = ConvEncoder(1, (4, 8))
        res = finetune(backbone, nn.Linear(8, 3), x, y, epochs=2, batch_size=8, lr=1e-2, channels_last=cl, seed=0)
        runs.append(res.train_loss)
    assert runs[0] == pytest.approx(runs[1], rel=1e-3, abs=1e-4)
