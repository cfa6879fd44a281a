"""Classifiers on frozen features: logistic regression, a 3-layer MLP and an RBF SVC.

The report behind notebook 06 trained a 3-layer MLP and an SVC on 201,728-wide
flattened ViT tokens of 2,500 CIFAR-100 images and got 37 % and 0.6 % (chance is
1 %).  The probes here take the same inputs but do the obvious things right:

- every probe standardises the features with *training* statistics (an RBF kernel
  on raw features measures distance in whatever units the largest dimensions have);
- the SVC can reduce the width with PCA first (fitted on the training features);
- hyperparameters are fixed in advance or chosen by cross-validation inside the
  training set (``logreg_probe``), never on the test images;
- each probe reports how concentrated its predictions are (``majority_fraction``):
  a classifier that answers the same class for every image scores the test-set
  frequency of that class, i.e. chance or *below* chance - the signature of the
  report's SVC.

``report_protocol_indices`` draws the report's 2,500 training / 500 test images,
``run_protocol`` runs every probe on every feature set for several draws, and
``vit_token_features`` feeds images to a pretrained ViT (e.g. from ``torch.hub``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .evaluation import LinearClassifier, ProbeResult, cv_select_C, linear_probe


@dataclass
class ProbeScore:
    """Test accuracy of a probe, how often it predicts its favourite class, and its settings."""

    accuracy: float
    majority_fraction: float
    settings: dict[str, Any] = field(default_factory=dict)


def majority_fraction(pred: Tensor | np.ndarray) -> float:
    """Share of the predictions that go to the most frequent predicted class (1.0 = one class for all)."""
    pred = torch.as_tensor(np.asarray(pred)).flatten().long()
    if pred.numel() == 0:
        raise ValueError("majority_fraction needs at least one prediction")
    return float(torch.bincount(pred).max()) / pred.numel()


def _check(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor, who: str) -> None:
    if train_f.dim() != 2 or test_f.dim() != 2 or train_f.shape[1] != test_f.shape[1]:
        raise ValueError(f"{who}: features must be (N, D) with the same D for train and test, got "
                         f"{tuple(train_f.shape)} and {tuple(test_f.shape)}")
    if len(train_f) != len(train_y) or len(test_f) != len(test_y):
        raise ValueError(f"{who}: {len(train_f)}/{len(test_f)} feature rows but {len(train_y)}/{len(test_y)} labels; "
                         "pass the labels of the same images")


def report_protocol_indices(n_train_pool: int, n_test_pool: int, n_train: int = 2500, n_test: int = 500,
                            seed: int = 0) -> tuple[Tensor, Tensor]:
    """The report's protocol: ``n_train`` random training and ``n_test`` random test images.

    Plain random draws without replacement (the report did not balance classes);
    each ``seed`` gives another draw, so the protocol's noise can be measured.
    """
    if not (0 < n_train <= n_train_pool and 0 < n_test <= n_test_pool):
        raise ValueError(f"cannot draw {n_train} training and {n_test} test images from pools of "
                         f"{n_train_pool} and {n_test_pool}; lower n_train / n_test")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_train_pool, generator=g)[:n_train], torch.randperm(n_test_pool, generator=g)[:n_test]


def logreg_probe(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor,
                 Cs: Sequence[float] = (0.01, 0.1, 1.0), folds: int = 3, seed: int = 0,
                 max_iter: int = 200, span: bool | None = None) -> ProbeScore:
    """Standardised multinomial logistic regression, ``C`` by k-fold CV inside the training set.

    Features wider than the number of training images (``span=None`` decides so; e.g.
    8,192-wide flattened tokens of 2,500 images) are standardised with the training
    statistics once and then rewritten in the coordinates of ``span_coordinates``: an
    orthonormal basis of the span of the training rows, at most N wide.  For an
    L2-regularised linear model that is lossless - the optimal weights lie in that span,
    and ``||W||`` equals the norm of the coordinates - so the probe is the same, and
    each L-BFGS step reads an N x N instead of an N x D matrix (3x less work here, and
    no re-standardisation per step).  The CV folds then share the standardisation of
    the whole training set (no test image is involved).
    """
    _check(train_f, train_y, test_f, test_y, "logreg_probe")
    if span is None:
        span = train_f.shape[1] > train_f.shape[0]
    standardize = True
    if span:
        train_f, test_f = span_coordinates(*standardized(train_f, test_f))
        standardize = False
    if len(Cs) == 1:
        best = float(Cs[0])
    else:
        best, _ = cv_select_C(train_f, train_y, Cs=Cs, folds=folds, seed=seed, max_iter=max_iter,
                              standardize=standardize)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    res = linear_probe(train_f, train_y, C=best, max_iter=max_iter, num_classes=num_classes, standardize=standardize)
    with torch.no_grad():
        pred = res.classifier(test_f.float()).argmax(1)
    return ProbeScore(float((pred == test_y).float().mean()), majority_fraction(pred), {"C": best, "span": span})


@torch.no_grad()
def span_coordinates(train_f: Tensor, *others: Tensor, rtol: float = 1e-5) -> tuple[Tensor, ...]:
    """Rows of ``train_f`` (N, D) and of ``others`` in an orthonormal basis of the span of ``train_f``'s rows.

    The basis ``V`` (D x r, r <= min(N, D)) comes from the eigen-decomposition of the
    N x N Gram matrix ``X X^T = U diag(lam) U^T``: ``V = X^T U / sqrt(lam)``, so the
    training coordinates are ``U sqrt(lam)`` and another row ``z`` maps to ``z V``.
    Directions with ``lam < rtol * max(lam)`` (numerically zero in float32: with centred
    features the rank is at most N - 1) are dropped.  Distances and inner products
    between training rows are kept exactly, so any model that sees the features only
    through ``X W`` with an L2 penalty on ``W`` (logistic regression, ridge, linear
    SVM) fits the same function on the coordinates.  Features are returned as float32.
    """
    x = train_f.float()
    if x.dim() != 2 or len(x) == 0:
        raise ValueError(f"train_f must be a non-empty (N, D) matrix, got shape {tuple(x.shape)}")
    for t in others:
        if t.dim() != 2 or t.shape[1] != x.shape[1]:
            raise ValueError(f"every matrix needs D = {x.shape[1]} columns like train_f, got {tuple(t.shape)}")
    lam, u = torch.linalg.eigh(x @ x.T)  # float32: half the time of float64, ample for the kept directions
    keep = lam > rtol * lam.max().clamp_min(1e-30)
    lam, u = lam[keep], u[:, keep]
    out = [(u * lam.sqrt()).float()]
    to_coords = (u / lam.sqrt()).float()  # z V = (z X^T) U / sqrt(lam)
    out += [(t.float() @ x.T) @ to_coords for t in others]
    return tuple(out)


class MLPHead(nn.Sequential):
    """The report's probe: 3 Linear layers with ReLU (and dropout) between them."""

    def __init__(self, in_dim: int, num_classes: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.2) -> None:
        if len(hidden) != 2:
            raise ValueError(f"a 3-layer MLP has 2 hidden widths, got hidden={tuple(hidden)}")
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


def mlp_probe(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor, *,
              hidden: Sequence[int] = (256, 256), dropout: float = 0.2, epochs: int = 30, lr: float = 1e-3,
              weight_decay: float = 1e-2, batch_size: int = 128, seed: int = 0) -> ProbeScore:
    """A 3-layer MLP on standardised features, AdamW with a cosine schedule; settings fixed in advance.

    With 2,500 labelled images there is no room for a validation set, so the epochs,
    width, dropout and weight decay are not tuned here (they are the same for every
    feature type and encoder, which keeps the comparison fair).
    """
    _check(train_f, train_y, test_f, test_y, "mlp_probe")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    x = train_f.float()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    xt = (test_f.float() - mean) / std
    y = train_y.long()
    num_classes = int(max(y.max(), test_y.max())) + 1
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLPHead(x.shape[1], num_classes, hidden, dropout)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        steps = epochs * -(-len(x) // batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), batch_size):
                idx = order[i:i + batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xt[i:i + 1024]).argmax(1) for i in range(0, len(xt), 1024)])
    settings = {"hidden": list(hidden), "dropout": dropout, "epochs": epochs, "lr": lr, "weight_decay": weight_decay}
    return ProbeScore(float((pred == test_y).float().mean()), majority_fraction(pred), settings)


def rbf_kernel(a: Tensor, b: Tensor, gamma: float) -> Tensor:
    """``exp(-gamma * ||a_i - b_j||^2)`` as a float64 ``(len(a), len(b))`` matrix.

    Distances come from one BLAS matrix product (fast even for 8,192-wide features);
    the exponential is taken in float64, like libsvm, so the underflow to exactly 0
    for far-apart images happens where it would in ``sklearn.svm.SVC``.
    """
    a, b = a.float(), b.float()
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * (a @ b.T)
    return torch.exp(-float(gamma) * d2.clamp_min_(0).double())


def svc_probe(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor, *,
              standardize: bool = True, pca: int | None = None, C: float = 10.0,
              gamma: float | str = "scale", seed: int = 0) -> ProbeScore:
    """An RBF-kernel SVC (scikit-learn's libsvm), optionally after standardisation and PCA.

    ``gamma`` is the kernel's inverse squared width.  ``"scale"`` is scikit-learn's
    default, ``1 / (D * X.var())`` with ``X.var()`` the variance of *all entries* of
    the (standardised, projected) training matrix; a number fixes it.  When
    ``gamma`` times the typical squared distance between images is far from 1, all
    kernel values are ~1 (or ~0), every training image looks alike, and the SVC
    predicts one class for everything - check ``majority_fraction``.

    The kernel matrix is computed here (``rbf_kernel``) and passed to
    ``SVC(kernel="precomputed")``: the same classifier as ``SVC(kernel="rbf")``,
    but much faster on wide features.
    """
    from sklearn.decomposition import PCA
    from sklearn.svm import SVC

    _check(train_f, train_y, test_f, test_y, "svc_probe")
    if pca is not None and not 1 <= pca <= min(train_f.shape):
        raise ValueError(f"pca={pca} components: need 1 <= pca <= min(N, D) = {min(train_f.shape)}")
    xtr, xte = train_f.float(), test_f.float()
    if standardize:
        mean, std = xtr.mean(0), xtr.std(0, unbiased=False)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant features: leave at 0, as sklearn does
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    if pca is not None:
        proj = PCA(n_components=pca, svd_solver="randomized", random_state=seed).fit(xtr.numpy())
        xtr = torch.as_tensor(proj.transform(xtr.numpy()), dtype=torch.float32)
        xte = torch.as_tensor(proj.transform(xte.numpy()), dtype=torch.float32)
    if gamma == "scale":
        var = float(xtr.double().var(unbiased=False))
        g = 1.0 / (xtr.shape[1] * var) if var > 0 else 1.0
    elif isinstance(gamma, (int, float)) and gamma > 0:
        g = float(gamma)
    else:
        raise ValueError(f"gamma must be 'scale' or a positive number, got {gamma!r}")
    clf = SVC(C=C, kernel="precomputed").fit(rbf_kernel(xtr, xtr, g).numpy(), train_y.numpy())
    pred = torch.as_tensor(clf.predict(rbf_kernel(xte, xtr, g).numpy()))
    settings = {"standardize": standardize, "pca": pca, "C": C, "gamma": gamma, "gamma_value": g}
    return ProbeScore(float((pred == test_y).float().mean()), majority_fraction(pred), settings)


def mean_sq_distance(features: Tensor, n_pairs: int = 2000, seed: int = 0) -> float:
    """Average squared Euclidean distance between random pairs of rows (the RBF kernel's natural scale)."""
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f"features must be (N >= 2, D), got {tuple(features.shape)}")
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(len(features), (n_pairs,), generator=g)
    j = torch.randint(len(features), (n_pairs,), generator=g)
    keep = i != j
    return float((features[i[keep]].float() - features[j[keep]].float()).pow(2).sum(1).mean())


# --------------------------------------------------------------------------- protocols


Probe = Callable[[Tensor, Tensor, Tensor, Tensor], ProbeScore]


def run_protocol(train_features: Mapping[str, Tensor], train_labels: Tensor, test_features: Mapping[str, Tensor],
                 test_labels: Tensor, draws: Sequence[tuple[Tensor, Tensor]], probes: Mapping[str, Probe],
                 log: Callable[[str], None] | None = print) -> dict[tuple[str, str], list[ProbeScore]]:
    """Every probe on every feature set, once per draw of (training, test) indices.

    ``train_features`` / ``test_features`` map a name (e.g. ``"MAE flat"``) to features
    of the whole training / test pool; each draw selects its rows.  Returns
    ``{(feature name, probe name): [score per draw]}``.
    """
    if train_features.keys() != test_features.keys():
        raise ValueError(f"train and test features name different sets: {sorted(train_features)} vs {sorted(test_features)}")
    if not draws:
        raise ValueError("no draws: pass at least one (train_idx, test_idx) pair")
    out: dict[tuple[str, str], list[ProbeScore]] = {}
    for d, (tr, te) in enumerate(draws):
        for feat in train_features:
            xtr, xte = train_features[feat][tr], test_features[feat][te]
            for name, probe in probes.items():
                t0 = time.perf_counter()
                score = probe(xtr, train_labels[tr], xte, test_labels[te])
                out.setdefault((feat, name), []).append(score)
                if log:
                    log(f"draw {d}: {feat:<12} {name:<10} acc {score.accuracy:.3f} "
                        f"(favourite class {score.majority_fraction:.0%} of predictions, {time.perf_counter() - t0:.1f} s)")
    return out


def accuracies(scores: Sequence[ProbeScore]) -> list[float]:
    """The accuracies of a list of scores (for ``metrics.mean_std`` / ``format_mean_std``)."""
    return [s.accuracy for s in scores]


def protocol_table(results: Mapping[tuple[str, str], Sequence[ProbeScore]]) -> str:
    """Text table: one row per feature set, one column per probe, accuracy mean +- std in %."""
    feats = list(dict.fromkeys(f for f, _ in results))
    probes = list(dict.fromkeys(p for _, p in results))
    width = max(len(f) for f in feats) + 2
    lines = ["".ljust(width) + "".join(f"{p:>18}" for p in probes)]
    for f in feats:
        cells = []
        for p in probes:
            accs = accuracies(results.get((f, p), []))
            if not accs:
                cells.append(f"{'-':>18}")
                continue
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells.append(f"{100 * statistics.fmean(accs):>10.1f} ± {100 * std:<5.1f}")
        lines.append(f.ljust(width) + "".join(cells))
    return "\n".join(lines)


def linear_probe_select_C(train_f: Tensor, train_y: Tensor, val_f: Tensor, val_y: Tensor,
                          Cs: Sequence[float] = (0.01, 0.1, 1.0), max_iter: int = 200, solver: str = "lbfgs",
                          epochs: int = 10, lr: float = 1e-3, batch_size: int = 256,
                          seed: int = 0) -> tuple[ProbeResult, dict[float, float]]:
    """Fit the standardised logistic probe for each ``C``; keep the one best on the *validation* split.

    The objective is ``evaluation.linear_probe``'s: mean cross-entropy plus
    ``||W||^2 / (2 C N)``.  ``solver="lbfgs"`` minimises it full-batch (``max_iter``
    iterations, deterministic); ``solver="adam"`` by minibatch Adam (``epochs``
    passes, cosine learning rate, seeded) - far cheaper when the features are wide
    *and* numerous (8,192-wide flattened tokens of 45,000 images: one L-BFGS
    iteration reads the whole 1.5 GB matrix two or more times, and it needs ~100).

    Returns ``(best ProbeResult, {C: validation accuracy})``; the returned classifier
    takes raw features (the standardisation is folded into it).  Evaluate it on the
    test set once, afterwards.
    """
    if not Cs:
        raise ValueError("Cs is empty; pass candidate values such as (0.01, 0.1, 1)")
    if solver not in ("lbfgs", "adam"):
        raise ValueError(f"solver must be 'lbfgs' or 'adam', got {solver!r}")
    _check(train_f, train_y, val_f, val_y, "linear_probe_select_C")
    z_train, z_val = standardized(train_f, val_f)
    mean, std = _train_stats(train_f)
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    best: ProbeResult | None = None
    scores: dict[float, float] = {}
    for C in Cs:
        if solver == "lbfgs":
            res = linear_probe(z_train, train_y, z_val, val_y, C=float(C), max_iter=max_iter, standardize=False,
                               num_classes=num_classes)
        else:
            res = _adam_probe(z_train, train_y, z_val, val_y, float(C), num_classes, epochs, lr, batch_size, seed)
        scores[float(C)] = float(res.test_accuracy)
        if best is None or res.test_accuracy > best.test_accuracy:
            best = res
    assert best is not None
    best.classifier.mean.copy_(mean)  # fold the standardisation into the classifier: it now takes raw features
    best.classifier.std.copy_(std)
    return best, scores


def _adam_probe(z_train: Tensor, train_y: Tensor, z_val: Tensor, val_y: Tensor, C: float, num_classes: int,
                epochs: int, lr: float, batch_size: int, seed: int) -> ProbeResult:
    """Minibatch Adam on ``linear_probe``'s objective, for standardised features."""
    if epochs < 1 or batch_size < 1 or not C > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and C > 0; got {epochs}, {batch_size}, {C}")
    n, d = z_train.shape
    clf = LinearClassifier(torch.zeros(d), torch.ones(d), num_classes)
    nn.init.zeros_(clf.linear.weight)
    nn.init.zeros_(clf.linear.bias)
    penalty = 1.0 / (2.0 * C * n)
    opt = torch.optim.Adam(clf.linear.parameters(), lr=lr)
    steps = epochs * -(-n // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    y = train_y.long()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=g)
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                loss = F.cross_entropy(clf.linear(z_train[idx]), y[idx]) + penalty * clf.linear.weight.pow(2).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    clf.eval().requires_grad_(False)
    return ProbeResult(train_accuracy=classifier_accuracy(clf, z_train, train_y),
                       test_accuracy=classifier_accuracy(clf, z_val, val_y), classifier=clf, C=C)


def _train_stats(train_f: Tensor) -> tuple[Tensor, Tensor]:
    x = train_f.float()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


@torch.no_grad()
def standardized(train_f: Tensor, *others: Tensor, chunk: int = 4096) -> tuple[Tensor, ...]:
    """New copies of ``train_f`` and ``others`` z-scored with the *training* mean and std, in chunks.

    Constant training features get std 1 (they stay constant).  Use it once for wide
    features instead of letting every probe step re-standardise them.
    """
    mean, std = _train_stats(train_f)
    out = []
    for t in (train_f, *others):
        if t.dim() != 2 or t.shape[1] != mean.numel():
            raise ValueError(f"features must be (N, {mean.numel()}) like the training features, got {tuple(t.shape)}")
        z = torch.empty(t.shape, dtype=torch.float32)
        for i in range(0, len(t), chunk):
            z[i:i + chunk] = (t[i:i + chunk].float() - mean) / std
        out.append(z)
    return tuple(out)


@torch.no_grad()
def classifier_accuracy(classifier: nn.Module, features: Tensor, labels: Tensor) -> float:
    """Accuracy of a fitted probe (e.g. ``ProbeResult.classifier``) on precomputed features."""
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    pred = torch.cat([classifier(features[i:i + 4096].float()).argmax(1) for i in range(0, len(features), 4096)])
    return float((pred == labels).float().mean())


# --------------------------------------------------------------------------- pretrained ViTs from torch.hub

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@torch.no_grad()
def vit_token_features(model: nn.Module, images: Tensor, image_size: int = 224, batch_size: int = 64,
                       mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                       device: torch.device | str | None = None) -> dict[str, Tensor]:
    """CLS and mean-pooled token features of a pretrained ViT (e.g. from ``torch.hub``).

    Images (uint8 or [0, 1] float) are resized to ``image_size`` and normalised with
    the ImageNet statistics the model was trained with.  The model may return tokens
    ``(N, T, D)`` (first token = CLS) or pooled features ``(N, D)`` (then only
    ``"cls"`` is filled).  Flattened tokens are deliberately not offered: for a
    ViT-L they are 197 x 1024 = 201,728 numbers per image, the report's 13 GB.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    m = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
    s = torch.tensor(std, device=dev).view(1, -1, 1, 1)
    model.eval()
    cls, avg = [], []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(dev)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False).clamp(0, 1)
        out = model((x - m) / s)
        out = out[0] if isinstance(out, (tuple, list)) else out
        if out.dim() == 3:
            cls.append(out[:, 0].float().cpu())
            avg.append(out[:, 1:].mean(1).float().cpu())
        elif out.dim() == 2:
            cls.append(out.float().cpu())
        else:
            raise ValueError(f"the model returned shape {tuple(out.shape)}; expected tokens (N, T, D) or features (N, D)")
    feats = {"cls": torch.cat(cls)}
    if avg:
        feats["mean"] = torch.cat(avg)
    return feats
