"""SCAN's clustering step on frozen features (course_lib.scan)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from course_lib.clustering import matched_accuracy
from course_lib.scan import fit_scan_heads, mine_neighbours, name_clusters, scan_loss
from data_fixtures import stripe_images


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


# --------------------------------------------------------------------------- self-labelling


class FixedHead(torch.nn.Module):
    """A 'cluster head' that reads the class off the image statistics the encoder keeps: sharp or flat logits."""

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, 2)
        self.scale = scale

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(self.linear(f))


def test_self_label_teacher_is_frozen_in_eval_mode_and_only_student_and_new_head_learn():
    from course_lib.scan import SelfLabel
    from course_lib.ssl.encoders import ConvEncoder

    torch.manual_seed(0)
    enc = ConvEncoder(1, (4, 8))
    model = SelfLabel(enc, FixedHead(8, 50.0), 2).train()
    assert not model.teacher.training and model.encoder.training
    assert all(not p.requires_grad for p in model.teacher.parameters())
    x = stripe_images(8)[0].float() / 255
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    loss = model(x, x.flip(3))
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert enc.features[0][0].weight.grad.abs().sum() > 0 and model.head.weight.grad.abs().sum() > 0
    for k, v in model.teacher.state_dict().items():  # BatchNorm running stats of the teacher untouched too
        assert torch.equal(v, teacher_before[k]), k


def test_self_label_ignores_unconfident_images_and_weights_classes():
    from course_lib.scan import SelfLabel
    from course_lib.ssl.encoders import ConvEncoder

    enc = ConvEncoder(1, (4, 8))
    x = stripe_images(8)[0].float() / 255
    flat = SelfLabel(enc, FixedHead(8, 0.01), 2, threshold=0.99)  # softmax ~0.5 everywhere: nothing confident
    _, confident = flat.pseudo_labels(x)
    assert not confident.any()
    loss = flat(x, x)
    assert loss.item() == 0.0
    loss.backward()
    assert enc.features[0][0].weight.grad.abs().sum() == 0
    w = torch.tensor([1.0, 3.0])
    sharp = SelfLabel(enc, FixedHead(8, 500.0), 2, class_weight=w)
    target, confident = sharp.pseudo_labels(x)
    assert confident.any()
    logits = sharp.head(enc(x))
    expected = torch.nn.functional.cross_entropy(logits[confident], target[confident], weight=w)
    assert sharp(x, x).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="threshold"):
        SelfLabel(enc, FixedHead(8, 1.0), 2, threshold=1.0)


def test_self_label_trains_the_encoder_on_confident_clusters_and_its_loss_falls():
    from course_lib.augment import RandomResizedCrop
    from course_lib.evaluation import extract_features
    from course_lib.scan import self_label
    from course_lib.ssl.encoders import ConvEncoder

    torch.manual_seed(0)
    images, labels = stripe_images(64)
    enc = ConvEncoder(1, (8, 16))
    f = extract_features(enc, images)
    res = fit_scan_heads(f, mine_neighbours(f, k=5), 2, heads=4, epochs=40, batch_size=64)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    out = self_label(enc, res.head, images, RandomResizedCrop(8, scale=(0.7, 1.0)), 2, epochs=6, threshold=0.6,
                     lr=3e-3, batch_size=32, log=None)
    assert 0 < out.confident_fraction <= 1 and sum(out.cluster_sizes) == round(out.confident_fraction * len(images))
    losses = [r["loss"] for r in out.history.records]
    assert losses[-1] < losses[0]
    assert any(not torch.equal(v, enc.state_dict()[k]) for k, v in before.items())
    assert not enc.training
    with pytest.raises(ValueError, match="lower the threshold"):
        self_label(enc, FixedHead(16, 0.01), images, RandomResizedCrop(8), 2, threshold=0.99, batch_size=32, log=None)


def test_scan_clusters_scores_the_kept_head_and_names_clusters_from_each_draw():
    from course_lib.scan import scan_clusters

    x, y = blobs(n_per=60)
    xt, yt = blobs(n_per=20)  # the same centres (same seed), other noise
    draws = [torch.tensor([0, 60, 120, 180]), torch.tensor([1, 61, 121, 181])]
    res = scan_clusters(x, y, xt, yt, draws, 4, k=5, heads=3, epochs=40, batch_size=64)
    assert res.neighbour_purity > 0.99 and res.cluster_acc > 0.95
    assert len(res.named_acc) == 2 and all(a > 0.95 for a in res.named_acc)
    assert res.test_clusters.shape == (len(xt),) and res.scan.losses[res.scan.chosen] == min(res.scan.losses)
    with pytest.raises(ValueError, match="draws"):
        scan_clusters(x, y, xt, yt, [], 4)


def test_self_label_trainer_copies_the_base_and_returns_checkpoint_metadata(monkeypatch):
    from dataclasses import replace

    import course_lib.ssl.scan_recipe as sr
    from course_lib.checkpoints import load_or_train
    from course_lib.evaluation import extract_features
    from course_lib.ssl.encoders import ConvEncoder

    torch.manual_seed(0)
    images, _ = stripe_images(64)
    base = ConvEncoder(1, (8, 16))
    f = extract_features(base, images)
    head = fit_scan_heads(f, mine_neighbours(f, k=5), 2, heads=2, epochs=20, batch_size=64).head
    monkeypatch.setitem(sr.SCAN_CONFIGS, "mnist", replace(sr.SCAN_CONFIGS["mnist"], num_clusters=2, batch_size=32))
    started_from = []
    real = sr.self_label
    monkeypatch.setattr(sr, "self_label", lambda enc, *a, **k: (started_from.append(copy.deepcopy(enc.state_dict())),
                                                                real(enc, *a, **k))[1])
    train = sr.self_label_trainer(base, head, images, "byol", "mnist", epochs=2)
    fresh = ConvEncoder(1, (8, 16))
    meta = train(fresh)
    assert meta["epochs"] == 2 and meta["dataset"] == "mnist" and meta["scan_config"]["num_clusters"] == 2
    assert meta["model_config"] == base.config() and len(meta["history"]["records"]) == 2
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in started_from[0].items())  # started from the base
    assert not torch.equal(fresh.features[0][0].weight, base.features[0][0].weight)  # and was trained
    assert meta["confident_fraction"] == 1.0 and sum(meta["cluster_sizes"]) == len(images)
    with pytest.raises(ValueError, match="no SCAN config for 'byol' on 'cifar10'"):
        sr.self_label_trainer(base, head, images, "byol", "cifar10")


def test_load_or_self_label_trains_once_then_loads_the_saved_encoder(tmp_path, monkeypatch):
    from dataclasses import replace

    import course_lib.checkpoints as C
    import course_lib.ssl.scan_recipe as sr
    from course_lib.evaluation import extract_features
    from course_lib.ssl.encoders import ConvEncoder

    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(C, "checkpoints_dir", lambda: tmp_path / "no-references")
    monkeypatch.setitem(sr.SCAN_CONFIGS, "mnist", replace(sr.SCAN_CONFIGS["mnist"], num_clusters=2, batch_size=32))
    torch.manual_seed(0)
    images, _ = stripe_images(64)
    base = ConvEncoder(1, (8, 16))
    f = extract_features(base, images)
    head = fit_scan_heads(f, mine_neighbours(f, k=5), 2, heads=2, epochs=20, batch_size=64).head
    kw = dict(profile="smoke", epochs=1, device="cpu")
    enc, meta = sr.load_or_self_label(base, head, images, "byol", "mnist", **kw)
    assert not enc.training and meta["name"] == "byol-scan-mnist" and meta["profile"] == "smoke"
    assert (tmp_path / "runs" / "checkpoints" / "byol-scan-mnist-smoke.pt").exists()
    assert not torch.equal(enc.features[0][0].weight, base.features[0][0].weight)
    again, _ = sr.load_or_self_label(base, head, images, "byol", "mnist",
                                     **kw | {"epochs": None})  # loads: would otherwise train 6 epochs
    assert torch.equal(again.features[0][0].weight, enc.features[0][0].weight)
