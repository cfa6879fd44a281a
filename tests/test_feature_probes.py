"""Probes on frozen features: they learn, the SVC's failure modes show up, inputs are checked."""

from __future__ import annotations

import pytest
import torch

from course_lib.feature_probes import (
    MLPHead,
    logreg_probe,
    majority_fraction,
    mean_sq_distance,
    mlp_probe,
    report_protocol_indices,
    svc_probe,
)


def _blobs(n: int, k: int = 4, d: int = 16, spread: float = 0.6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` Gaussian classes in ``d`` dimensions; class centres are fixed, samples depend on ``seed``."""
    centres = torch.randn(k, d, generator=torch.Generator().manual_seed(123)) * 2
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    return centres[y] + spread * torch.randn(n, d, generator=g), y


def test_probes_learn_separable_classes():
    xtr, ytr = _blobs(400, seed=0)
    xte, yte = _blobs(200, seed=1)
    logreg = logreg_probe(xtr, ytr, xte, yte, max_iter=30)
    for score in (logreg, mlp_probe(xtr, ytr, xte, yte, epochs=5),
                  svc_probe(xtr, ytr, xte, yte), svc_probe(xtr, ytr, xte, yte, pca=8)):
        assert score.accuracy > 0.9, score
        assert score.majority_fraction < 0.4  # predictions spread over the 4 classes
    assert logreg.settings["C"] in (0.01, 0.1, 1.0)  # chosen by CV on the training set


def test_mlp_probe_is_reproducible_and_has_three_layers():
    xtr, ytr = _blobs(200, seed=0)
    xte, yte = _blobs(100, seed=1)
    a = mlp_probe(xtr, ytr, xte, yte, epochs=3, seed=5)
    b = mlp_probe(xtr, ytr, xte, yte, epochs=3, seed=5)
    assert a.accuracy == b.accuracy
    assert sum(isinstance(m, torch.nn.Linear) for m in MLPHead(16, 4)) == 3
    with pytest.raises(ValueError, match="2 hidden widths"):
        MLPHead(16, 4, hidden=(8,))


def test_svc_with_a_kernel_far_too_narrow_predicts_one_class():
    """The report's failure: an RBF width off by orders of magnitude makes every image look alike."""
    xtr, ytr = _blobs(200, seed=0)
    xte, yte = _blobs(100, seed=1)
    gamma = 1e6 / mean_sq_distance(xtr)  # exp(-gamma * d^2) underflows to 0 for every pair of images
    bad = svc_probe(xtr, ytr, xte, yte, standardize=False, gamma=gamma)
    assert bad.majority_fraction == 1.0
    assert bad.accuracy == pytest.approx(0.25)  # the test frequency of the one class it predicts
    assert svc_probe(xtr, ytr, xte, yte, standardize=False, gamma=1.0 / mean_sq_distance(xtr)).accuracy > 0.9


def test_standardisation_rescues_svc_from_one_huge_noisy_dimension():
    xtr, ytr = _blobs(300, seed=0)
    xte, yte = _blobs(150, seed=1)
    g = torch.Generator().manual_seed(7)
    loud = lambda x: torch.cat([x, 1e3 * torch.randn(len(x), 1, generator=g)], 1)  # noqa: E731
    raw = svc_probe(loud(xtr), ytr, loud(xte), yte, standardize=False)
    scaled = svc_probe(loud(xtr), ytr, loud(xte), yte, standardize=True)
    assert raw.accuracy < 0.5 < 0.9 < scaled.accuracy


def test_report_protocol_indices():
    tr, te = report_protocol_indices(1000, 300, n_train=250, n_test=50, seed=1)
    assert len(tr) == 250 and len(set(tr.tolist())) == 250 and int(tr.max()) < 1000
    assert len(te) == 50 and int(te.max()) < 300
    tr2, te2 = report_protocol_indices(1000, 300, n_train=250, n_test=50, seed=1)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)
    assert not torch.equal(tr, report_protocol_indices(1000, 300, 250, 50, seed=2)[0])
    with pytest.raises(ValueError, match="lower n_train"):
        report_protocol_indices(100, 300, n_train=250)


def test_helpers_and_input_errors():
    assert majority_fraction(torch.tensor([1, 1, 1, 2])) == 0.75
    assert mean_sq_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), n_pairs=50) == pytest.approx(25.0)
    x, y = _blobs(20)
    with pytest.raises(ValueError, match="same D"):
        logreg_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="labels of the same images"):
        mlp_probe(x, y[:5], x, y)
    with pytest.raises(ValueError, match="pca=40"):
        svc_probe(x, y, x, y, pca=40)


def test_svc_probe_is_sklearns_rbf_svc():
    """The precomputed kernel gives the same predictions as SVC(kernel="rbf") on the same inputs."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    xtr, ytr = _blobs(120, spread=1.5, seed=0)
    xte, yte = _blobs(60, spread=1.5, seed=1)
    for standardize in (False, True):
        ours = svc_probe(xtr, ytr, xte, yte, standardize=standardize, C=1.0)
        a, b = xtr.double().numpy(), xte.double().numpy()
        if standardize:
            scaler = StandardScaler().fit(a)
            a, b = scaler.transform(a), scaler.transform(b)
        ref = SVC(C=1.0, kernel="rbf", gamma="scale").fit(a, ytr.numpy()).predict(b)
        assert ours.accuracy == pytest.approx(float((torch.as_tensor(ref) == yte).float().mean()), abs=1 / 60)
    with pytest.raises(ValueError, match="gamma must be"):
        svc_probe(xtr, ytr, xte, yte, gamma=-1.0)


def test_probe_selected_on_validation_takes_raw_features():
    from course_lib.evaluation import linear_probe
    from course_lib.feature_probes import classifier_accuracy, linear_probe_select_C, standardized

    xtr, ytr = _blobs(200, spread=2.0, seed=0)
    xva, yva = _blobs(100, spread=2.0, seed=1)
    xtr, xva = 50 + 10 * xtr, 50 + 10 * xva  # far from standardised
    best, scores = linear_probe_select_C(xtr, ytr, xva, yva, Cs=(0.01, 1.0), max_iter=50)
    assert set(scores) == {0.01, 1.0} and best.test_accuracy == max(scores.values())
    assert classifier_accuracy(best.classifier, xva, yva) == pytest.approx(best.test_accuracy)
    ref = linear_probe(xtr, ytr, xva, yva, C=best.C, max_iter=50)  # the probe's own standardisation
    assert ref.test_accuracy == pytest.approx(best.test_accuracy, abs=0.02)
    ztr, zva = standardized(xtr, xva, chunk=7)
    assert ztr.mean(0).abs().max() < 1e-4 and (ztr.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert zva.shape == xva.shape
    with pytest.raises(ValueError, match="like the training features"):
        standardized(xtr, xva[:, :3])


def test_vit_token_features_resizes_normalises_and_pools():
    from course_lib.feature_probes import vit_token_features

    class FakeViT(torch.nn.Module):
        """Tokens (N, 1 + 4, 3): CLS = per-channel mean, patches = quadrant means."""

        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.seen: list[tuple[int, ...]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(tuple(x.shape))
            quads = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(2).transpose(1, 2)
            return self.scale * torch.cat([x.mean((2, 3)).unsqueeze(1), quads], 1)

    vit = FakeViT()
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    feats = vit_token_features(vit, images, image_size=16, batch_size=2, mean=(0, 0, 0), std=(1, 1, 1))
    assert vit.seen[0] == (2, 3, 16, 16) and len(vit.seen) == 3
    assert feats["cls"].shape == (5, 3) and feats["mean"].shape == (5, 3)
    torch.testing.assert_close(feats["cls"], images.float().div(255).mean((2, 3)), atol=0.02, rtol=0)
    gray = vit_token_features(vit, images[:, :1], image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert gray["cls"].shape == (5, 3)  # grey images are repeated to 3 channels


def test_adam_solver_reaches_the_lbfgs_solution():
    from course_lib.feature_probes import classifier_accuracy, linear_probe_select_C

    xtr, ytr = _blobs(400, spread=2.5, seed=0)
    xva, yva = _blobs(200, spread=2.5, seed=1)
    lbfgs, _ = linear_probe_select_C(xtr, ytr, xva, yva, Cs=(0.1,))
    adam, _ = linear_probe_select_C(xtr, ytr, xva, yva, Cs=(0.1,), solver="adam", epochs=30, lr=1e-2, batch_size=64)
    assert adam.test_accuracy == pytest.approx(lbfgs.test_accuracy, abs=0.03)
    with torch.no_grad():
        agree = (adam.classifier(xva).argmax(1) == lbfgs.classifier(xva).argmax(1)).float().mean()
    assert agree > 0.95
    assert classifier_accuracy(adam.classifier, xva, yva) == adam.test_accuracy  # takes raw features
    with pytest.raises(ValueError, match="solver must be"):
        linear_probe_select_C(xtr, ytr, xva, yva, solver="sgd")


def test_span_coordinates_keep_inner_products_and_give_the_same_logistic_probe():
    from course_lib.evaluation import linear_probe
    from course_lib.feature_probes import span_coordinates, standardized

    xtr, ytr = _blobs(60, d=200, spread=2.0, seed=0)  # wider than tall: the span is at most 60-dimensional
    xte, yte = _blobs(40, d=200, spread=2.0, seed=1)
    ztr, zte = standardized(xtr, xte)
    ctr, cte = span_coordinates(ztr, zte)
    assert ctr.shape[0] == 60 and ctr.shape[1] <= 59 and cte.shape == (40, ctr.shape[1])  # centred: rank <= N - 1
    torch.testing.assert_close(ctr @ ctr.T, ztr @ ztr.T, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(cte @ ctr.T, zte @ ztr.T, atol=1e-3, rtol=1e-4)
    full = linear_probe(ztr, ytr, C=0.1, max_iter=50, standardize=False)
    small = linear_probe(ctr, ytr, C=0.1, max_iter=50, standardize=False)
    torch.testing.assert_close(small.classifier(cte), full.classifier(zte), atol=2e-3, rtol=1e-3)
    wide = logreg_probe(xtr, ytr, xte, yte, Cs=(0.1,), max_iter=50)
    assert wide.settings["span"] and wide.accuracy == logreg_probe(xtr, ytr, xte, yte, Cs=(0.1,), max_iter=50,
                                                                   span=False).accuracy
    assert not logreg_probe(*_blobs(100), *_blobs(50, seed=1), Cs=(0.1,), max_iter=20).settings["span"]
    with pytest.raises(ValueError, match="columns"):
        span_coordinates(ztr, zte[:, :10])
