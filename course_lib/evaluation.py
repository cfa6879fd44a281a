"""Evaluating learned representations: frozen features, probes, kNN, fine-tuning.

The protocol questions matter as much as the code:

- A *linear probe* trains only a linear classifier on features of a **frozen**
  backbone.  Extract the features once (``extract_features``, eval mode, no grad)
  and fit on them; the backbone must come out byte-identical
  (``linear_probe_on_backbone`` checks that).
- The *kNN monitor* (InstDisc / MoCo) classifies by a similarity-weighted vote of the
  ``k`` nearest training features; it needs no training at all.
- With few labels (say 10 per class) there is no room for a validation set:
  hyperparameters are fixed in advance or chosen by cross-validation *inside* the
  labelled set (``cv_select_C``), never on the test set; and a single draw of 100
  labels is noisy, so report mean +- std over several class-balanced draws
  (``few_label_protocol``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .train import wants_channels_last

Transform = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- helpers


def _module_device(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def _as_float_images(x: Tensor) -> Tensor:
    """uint8 images -> float in [0, 1]; float images unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _check_pair(x: Tensor, y: Tensor, what: str) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{what}: {x.shape[0]} inputs but {y.shape[0]} labels; they must have the same length")
    if y.dim() != 1 or y.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
        raise ValueError(f"{what}: labels must be a 1-D integer tensor of class indices, got {y.dtype} {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{what}: no samples")


def snapshot_state(module: nn.Module) -> dict[str, Tensor]:
    """A CPU copy of ``module.state_dict()`` (to check later that nothing changed)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    """True if two state dicts have the same keys, dtypes, shapes and bytes."""
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k].detach().cpu(), b[k].detach().cpu()
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        xb = x.contiguous().reshape(-1).view(torch.uint8)
        yb = y.contiguous().reshape(-1).view(torch.uint8)
        if not torch.equal(xb, yb):
            return False
    return True


# --------------------------------------------------------------------------- features


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images: Tensor,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    transform: Transform | None = None,
    channels_last: bool | None = None,
    flatten: bool = True,
) -> Tensor:
    """Features ``(N, D)`` of ``images`` under a frozen backbone, as a CPU float tensor.

    Args:
        backbone: maps a float batch ``(B, C, H, W)`` to features (flattened to ``(B, D)``).
        images: ``(N, C, H, W)``; uint8 is scaled to [0, 1], float is used as is.
        batch_size: images per forward pass.
        device: where to compute; default the backbone's device.  The backbone is
            moved there for the call and moved back afterwards.
        transform: optional deterministic batched transform applied on the device
            after scaling (e.g. normalisation).  Do not pass random augmentation.
        channels_last: run the batches in the NHWC layout; ``None`` (default) decides
            with ``course_lib.train.wants_channels_last`` (conv nets on CPU and CUDA).
            The backbone's parameters keep their values (only their memory layout may change).
        flatten: ``False`` keeps the backbone's output shape, e.g. ``(N, C, H, W)``
            activations of a convolutional trunk.

    The backbone runs in eval mode under ``torch.no_grad`` (BatchNorm uses running
    statistics and is not updated); its previous train/eval mode is restored.
    """
    if images.dim() < 2 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch (N, C, H, W), got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    home = _module_device(backbone)
    dev = torch.device(device) if device is not None else home
    was_training = backbone.training
    backbone.to(dev).eval()
    if channels_last is None:
        channels_last = wants_channels_last(backbone, dev)
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
    try:
        feats = []
        for i in range(0, images.shape[0], batch_size):
            x = _as_float_images(images[i : i + batch_size].to(dev))
            if transform is not None:
                x = transform(x)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out = backbone(x).float()
            feats.append((out.flatten(1) if flatten else out).cpu().contiguous())
    finally:
        backbone.to(home).train(was_training)
    return torch.cat(feats)


# --------------------------------------------------------------------------- linear probe


class LinearClassifier(nn.Module):
    """Standardise features with fixed (training-set) statistics, then one Linear layer."""

    def __init__(self, mean: Tensor, std: Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.linear = nn.Linear(mean.numel(), num_classes)

    def standardize(self, features: Tensor) -> Tensor:
        """Features flattened to (N, D) and z-scored with the stored training statistics."""
        return (features.flatten(1) - self.mean) / self.std

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(self.standardize(features))


@dataclass
class ProbeResult:
    """Outcome of ``linear_probe``: accuracies in [0, 1] and the fitted classifier."""

    train_accuracy: float
    test_accuracy: float | None
    classifier: LinearClassifier
    C: float


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor | None = None,
    test_labels: Tensor | None = None,
    *,
    C: float = 1.0,
    max_iter: int = 200,
    standardize: bool = True,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
) -> ProbeResult:
    """Multinomial logistic regression on precomputed (frozen) features.

    Minimises ``mean cross-entropy + ||W||^2 / (2 * C * N)`` (bias not penalised) by
    full-batch L-BFGS from zero weights, so the result is deterministic.  This is
    scikit-learn's ``LogisticRegression(C=C)`` objective: larger ``C`` = weaker
    regularisation.  With ``standardize`` the features are centred and scaled by the
    *training* features' mean and std (the classifier keeps them as buffers).

    Args:
        train_features, train_labels: ``(N, D)`` features and ``(N,)`` class indices.
        test_features, test_labels: optional held-out set to report accuracy on.
        C: inverse regularisation strength (> 0).
        max_iter: L-BFGS iterations.
        standardize: z-score features with training statistics.
        num_classes: default ``max label + 1`` over train and test labels.
        device: where to fit (default CPU); the classifier is returned on CPU.
    """
    _check_pair(train_features, train_labels, "train")
    if (test_features is None) != (test_labels is None):
        raise ValueError("pass both test_features and test_labels, or neither")
    if test_features is not None:
        _check_pair(test_features, test_labels, "test")  # type: ignore[arg-type]
    if not C > 0:
        raise ValueError(f"C must be > 0 (inverse regularisation strength, as in scikit-learn), got {C}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x = train_features.detach().flatten(1).float().to(dev)
    y = train_labels.to(dev).long()
    if num_classes is None:
        num_classes = int(y.max()) + 1
        if test_labels is not None:
            num_classes = max(num_classes, int(test_labels.max()) + 1)
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got range [{int(y.min())}, {int(y.max())}]")

    if standardize:
        mean = x.mean(0)
        std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(mean)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
    else:
        mean, std = torch.zeros(x.shape[1], device=dev), torch.ones(x.shape[1], device=dev)
    clf = LinearClassifier(mean, std, num_classes).to(dev)
    nn.init.zeros_(clf.linear.weight)
    nn.init.zeros_(clf.linear.bias)
    n = x.shape[0]
    penalty = 1.0 / (2.0 * C * n)
    opt = torch.optim.LBFGS(
        clf.linear.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
        tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe",
    )

    # Standardise once, not in every L-BFGS evaluation: the same numbers as ``clf(x)``,
    # without re-reading and re-writing the whole (N, D) matrix hundreds of times.
    with torch.no_grad():
        xs = clf.standardize(x)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(clf.linear(xs), y) + penalty * clf.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    clf = clf.cpu().eval()
    clf.requires_grad_(False)
    train_acc = _accuracy(clf, train_features, train_labels)
    test_acc = _accuracy(clf, test_features, test_labels) if test_features is not None else None
    return ProbeResult(train_accuracy=train_acc, test_accuracy=test_acc, classifier=clf, C=float(C))


@torch.no_grad()
def _accuracy(clf: nn.Module, features: Tensor, labels: Tensor) -> float:
    pred = clf(features.detach().flatten(1).float().cpu()).argmax(1)
    return float((pred == labels.cpu()).float().mean())


def linear_probe_on_backbone(
    backbone: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor | None = None,
    test_labels: Tensor | None = None,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    transform: Transform | None = None,
    **probe_kwargs,
) -> ProbeResult:
    """``extract_features`` + ``linear_probe``, checking that the backbone is untouched.

    Raises ``RuntimeError`` if the backbone's ``state_dict`` is not byte-identical
    afterwards (e.g. a backbone that updates statistics even in eval mode).
    ``probe_kwargs`` go to ``linear_probe`` (``C``, ``max_iter``, ...).
    """
    before = snapshot_state(backbone)
    train_f = extract_features(backbone, train_images, batch_size, device, transform)
    test_f = extract_features(backbone, test_images, batch_size, device, transform) if test_images is not None else None
    if not same_state(before, snapshot_state(backbone)):
        raise RuntimeError(
            "the backbone's state_dict changed during feature extraction; a linear probe must use a frozen "
            "backbone (check for modules that update buffers in eval mode)"
        )
    return linear_probe(train_f, train_labels, test_f, test_labels, **probe_kwargs)


def cv_select_C(
    features: Tensor,
    labels: Tensor,
    Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0),
    folds: int = 5,
    seed: int = 0,
    **probe_kwargs,
) -> tuple[float, dict[float, float]]:
    """Choose the probe's ``C`` by stratified k-fold CV *inside* the labelled set.

    Uses ``min(folds, smallest class count)`` folds (at least 2 examples per class are
    needed).  Returns ``(best_C, {C: mean validation accuracy})``; ties go to the
    smallest ``C`` (strongest regularisation).  Never touches a test set.
    """
    from sklearn.model_selection import StratifiedKFold

    _check_pair(features, labels, "cv_select_C")
    if not Cs:
        raise ValueError("Cs is empty; pass candidate values such as (0.01, 0.1, 1, 10)")
    counts = torch.bincount(labels.cpu().long())
    smallest = int(counts[counts > 0].min())
    n_splits = min(folds, smallest)
    if n_splits < 2:
        raise ValueError(
            "cross-validation needs at least 2 labelled examples per class; with 1 per class fix C in advance"
        )
    num_classes = int(labels.max()) + 1
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    y_np = labels.cpu().numpy()
    scores: dict[float, float] = {}
    for c in sorted(float(c) for c in Cs):
        accs = []
        for tr, va in skf.split(y_np, y_np):
            tr_t, va_t = torch.as_tensor(tr), torch.as_tensor(va)
            res = linear_probe(
                features[tr_t], labels[tr_t], features[va_t], labels[va_t],
                C=c, num_classes=num_classes, **probe_kwargs,
            )
            accs.append(res.test_accuracy)
        scores[c] = float(sum(accs) / len(accs))
    best = max(scores, key=lambda c: (scores[c], -c))
    return best, scores


# --------------------------------------------------------------------------- kNN


@torch.no_grad()
def knn_neighbours(train_features: Tensor, test_features: Tensor, k: int = 20,
                   batch_size: int = 1024, exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    """Cosine similarities and indices ``(N_test, k)`` of each test feature's ``k`` nearest training features.

    Features are L2-normalised first; ``k`` larger than the training set is clamped to
    it.  Kept apart from the vote (``knn_vote``) so that several labellings of the same
    training set (e.g. pseudo-labels of several draws) share one neighbour search.
    ``exclude_self`` (test set = training set, e.g. for a kNN graph): row ``i`` never
    lists training item ``i``, even when another item is an exact duplicate of it.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if test_features.shape[1:] != train_features.shape[1:]:
        raise ValueError(
            f"test features {tuple(test_features.shape)} and train features {tuple(train_features.shape)} differ in width"
        )
    dev = train_features.device
    train = F.normalize(train_features.float().flatten(1), dim=1)
    k = min(k, train.shape[0])
    if exclude_self and test_features.shape[0] != train.shape[0]:
        raise ValueError(f"exclude_self needs the test set to be the training set; got {test_features.shape[0]} "
                         f"and {train.shape[0]} rows")
    sims, idxs = [], []
    for i in range(0, test_features.shape[0], batch_size):
        q = F.normalize(test_features[i : i + batch_size].to(dev).float().flatten(1), dim=1)
        s = q @ train.T
        if exclude_self:
            s[torch.arange(len(s)), torch.arange(i, i + len(s))] = -2.0  # below any cosine similarity
        sim, idx = s.topk(k, dim=1)
        sims.append(sim)
        idxs.append(idx)
    return torch.cat(sims), torch.cat(idxs)


def knn_vote_scores(sim: Tensor, idx: Tensor, train_labels: Tensor, T: float = 0.07,
                    num_classes: int | None = None) -> Tensor:
    """Class weights ``(N_test, C)`` from ``knn_neighbours``, each row summing to 1: neighbour ``i``
    votes for its class with weight ``exp(sim_i / T)``.  Normalised so that votes of several
    feature sets can be averaged."""
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    labels = train_labels.to(idx.device).long()
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    votes = torch.zeros(idx.shape[0], c, device=idx.device)
    votes.scatter_add_(1, labels[idx], (sim / T).exp())
    return votes / votes.sum(1, keepdim=True)


def knn_vote(sim: Tensor, idx: Tensor, train_labels: Tensor, T: float = 0.07, num_classes: int | None = None) -> Tensor:
    """Class predictions from ``knn_neighbours``: the largest of ``knn_vote_scores``."""
    return knn_vote_scores(sim, idx, train_labels, T, num_classes).argmax(1)


def knn_classify(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    k: int = 20,
    T: float = 0.07,
    num_classes: int | None = None,
    batch_size: int = 1024,
) -> Tensor:
    """Weighted kNN on L2-normalised features (the InstDisc / MoCo kNN monitor).

    Each test feature takes its ``k`` most cosine-similar training features; neighbour
    ``i`` votes for its class with weight ``exp(sim_i / T)``.  Returns the predicted
    class indices ``(N_test,)`` on the training features' device.  ``k`` larger than
    the training set is clamped to it.
    """
    _check_pair(train_features, train_labels, "knn train")
    sim, idx = knn_neighbours(train_features, test_features, k, batch_size)
    return knn_vote(sim, idx, train_labels, T, num_classes)


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """Fraction of samples whose label is among the ``k`` highest logits, for each ``k``."""
    ks = tuple(ks)
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be (N, classes) with N = len(labels); got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if not ks or max(ks) > logits.shape[1] or min(ks) < 1:
        raise ValueError(f"each k must be in [1, {logits.shape[1]}] (number of classes), got {ks}")
    top = logits.topk(max(ks), dim=1).indices
    hit = top == labels.to(top.device).view(-1, 1)
    return {k: float(hit[:, :k].any(dim=1).float().mean()) for k in ks}


# --------------------------------------------------------------------------- fine-tuning


class Classifier(nn.Module):
    """``head(flatten(backbone(x)))``: a backbone with a classification head."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x).flatten(1))


@dataclass
class FinetuneResult:
    """Per-epoch history of ``finetune`` and the trained ``Classifier``."""

    model: Classifier
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)  # the head's learning rate at the end of each epoch


def _matches(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _unfrozen_prefixes(backbone: nn.Module, unfreeze: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Normalise ``unfreeze``; ``None`` means every backbone parameter is trainable ("all")."""
    if unfreeze == "all":
        return None
    if unfreeze is None:
        return ()
    prefixes = (unfreeze,) if isinstance(unfreeze, str) else tuple(unfreeze)
    names = [n for n, _ in backbone.named_parameters()]
    for p in prefixes:
        if not any(_matches(n, (p,)) for n in names):
            children = [n for n, _ in backbone.named_children()]
            raise ValueError(
                f"unfreeze prefix {p!r} matches no backbone parameter; use names such as {children} "
                "(or 'all' / None)"
            )
    return prefixes


@torch.no_grad()
def _evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, dev: torch.device, transform) -> float:
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        xb = _as_float_images(x[i : i + batch_size].to(dev))
        if transform is not None:
            xb = transform(xb)
        correct += int((model(xb).argmax(1) == y[i : i + batch_size].to(dev)).sum())
    return correct / x.shape[0]


def finetune(
    backbone: nn.Module,
    head: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    *,
    val_images: Tensor | None = None,
    val_labels: Tensor | None = None,
    unfreeze: str | Sequence[str] | None = "all",
    epochs: int = 10,
    lr: float = 1e-3,
    backbone_lr: float | None = None,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    schedule: str = "constant",
    train_transform: Transform | None = None,
    eval_transform: Transform | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    channels_last: bool | None = None,
) -> FinetuneResult:
    """Train ``head`` (and some or all of ``backbone``) on labelled images with AdamW.

    Args:
        backbone, head: the model is ``head(flatten(backbone(x)))``; both are trained
            in place.
        train_images, train_labels: ``(N, C, H, W)`` uint8 or float images, ``(N,)`` labels.
        val_images, val_labels: optional set evaluated after every epoch.
        unfreeze: ``"all"`` (full fine-tuning), ``None`` (backbone frozen: a linear
            probe trained by SGD), or parameter-name prefixes of the backbone to train,
            e.g. ``("layer4",)`` or ``("layer3", "layer4")``.
        epochs, lr, weight_decay, batch_size: optimisation settings.
        backbone_lr: learning rate of the unfrozen backbone parameters (default ``lr``).
        schedule: ``"constant"`` learning rates, or ``"cosine"``: every group's rate decays
            to 0 along a cosine over all steps (a few epochs of fine-tuning with a constant
            rate end on a noisy step; the decay settles them).
        train_transform: batched augmentation ``t(x)`` applied after scaling to [0, 1].
        eval_transform: deterministic transform for evaluation (e.g. normalisation);
            with a normalising ``train_transform``, pass the same normalisation here.
        device: default the backbone's device.
        seed: seeds the batch order.
        channels_last: train in the NHWC memory layout; ``None`` (default) decides as
            ``fit`` does, with ``course_lib.train.wants_channels_last`` (on for conv nets
            on CPU and CUDA, where it is 1.2-1.7x faster; same numbers up to rounding).

    Frozen parameters get ``requires_grad=False`` during training (restored after).
    BatchNorm layers in the frozen part are kept in eval mode, so their running
    statistics do not drift: with ``unfreeze=None`` the backbone is left unchanged.
    """
    _check_pair(train_images, train_labels, "train")
    if (val_images is None) != (val_labels is None):
        raise ValueError("pass both val_images and val_labels, or neither")
    if val_images is not None:
        _check_pair(val_images, val_labels, "val")  # type: ignore[arg-type]
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    prefixes = _unfrozen_prefixes(backbone, unfreeze)
    dev = torch.device(device) if device is not None else _module_device(backbone)
    model = Classifier(backbone, head).to(dev)
    if channels_last is None:
        channels_last = wants_channels_last(model, dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    saved_flags = {p: p.requires_grad for p in model.parameters()}
    frozen_norms = []
    backbone_params = []
    for name, p in backbone.named_parameters():
        trainable = prefixes is None or _matches(name, prefixes)
        p.requires_grad_(trainable)
        if trainable:
            backbone_params.append(p)
    for name, m in backbone.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not (prefixes is None or _matches(name, prefixes)):
            frozen_norms.append(m)
    head.requires_grad_(True)
    groups = [{"params": list(head.parameters()), "lr": lr}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": lr if backbone_lr is None else backbone_lr})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    n = train_images.shape[0]
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * math.ceil(n / batch_size)))
             if schedule == "cosine" else None)

    result = FinetuneResult(model=model)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    try:
        for _ in range(epochs):
            model.train()
            for m in frozen_norms:
                m.eval()
            perm = torch.randperm(n, generator=gen)
            total_loss, correct = 0.0, 0
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                xb = _as_float_images(train_images[idx].to(dev))
                yb = train_labels[idx].to(dev)
                if train_transform is not None:
                    xb = train_transform(xb)
                if channels_last and xb.dim() == 4:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total_loss += float(loss.detach()) * idx.numel()
                correct += int((logits.argmax(1) == yb).sum())
            if not math.isfinite(total_loss):
                raise FloatingPointError("fine-tuning loss became NaN/inf; lower lr")
            result.train_loss.append(total_loss / n)
            result.train_accuracy.append(correct / n)
            result.lr.append(opt.param_groups[0]["lr"])
            if val_images is not None:
                result.val_accuracy.append(
                    _evaluate(model, val_images, val_labels, 2 * batch_size, dev, eval_transform)  # type: ignore[arg-type]
                )
    finally:
        for p, flag in saved_flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
    return result


# --------------------------------------------------------------------------- few labels


def class_balanced_indices(labels: Tensor, n_per_class: int, seed: int) -> Tensor:
    """Indices of ``n_per_class`` random examples of every class present (sorted).

    Raises if some class has fewer than ``n_per_class`` examples.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    labels = labels.cpu().long()
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() < n_per_class:
            raise ValueError(f"class {c} has only {idx.numel()} examples, fewer than n_per_class={n_per_class}")
        chosen.append(idx[torch.randperm(idx.numel(), generator=gen)[:n_per_class]])
    return torch.sort(torch.cat(chosen)).values


def few_label_protocol(
    train_inputs: Tensor,
    train_labels: Tensor,
    test_inputs: Tensor,
    test_labels: Tensor,
    n_per_class: int,
    seeds: Iterable[int] = range(5),
    fit_fn: Callable[[Tensor, Tensor, Tensor, Tensor], float] | None = None,
    indices: Sequence[Tensor] | None = None,
    C: float = 1.0,
) -> dict:
    """Accuracy with ``n_per_class`` labels per class, as mean +- std over draws.

    For each seed a class-balanced subset of the training pool is drawn
    (``class_balanced_indices``), or the given ``indices`` lists are used, and
    ``fit_fn(train_x, train_y, test_x, test_y) -> test accuracy`` is called on it.

    Args:
        train_inputs, train_labels: the pool the labelled examples are drawn from;
            frozen features for a probe, or raw images for a ``fit_fn`` that trains a
            model (e.g. a supervised baseline with ``finetune``).
        test_inputs, test_labels: the fixed test set.
        n_per_class: labelled examples per class.
        seeds: one draw per seed.
        fit_fn: default ``linear_probe(..., C=C)`` (C fixed in advance; choose it with
            ``cv_select_C`` *inside* each draw if it must be tuned).
        indices: explicit index tensors, one per draw (overrides ``seeds``).
        C: the default probe's regularisation.

    Returns ``{"mean", "std", "per_seed", "seeds", "n_per_class"}``; ``std`` is the
    sample standard deviation (0 with a single draw).
    """
    _check_pair(train_inputs, train_labels, "train")
    _check_pair(test_inputs, test_labels, "test")
    if fit_fn is None:

        def fit_fn(xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor) -> float:
            return linear_probe(xtr, ytr, xte, yte, C=C).test_accuracy  # type: ignore[return-value]

    if indices is not None:
        draws = [torch.as_tensor(i).long() for i in indices]
        seed_list = list(range(len(draws)))
    else:
        seed_list = list(seeds)
        draws = [class_balanced_indices(train_labels, n_per_class, s) for s in seed_list]
    if not draws:
        raise ValueError("no draws: pass at least one seed or index list")
    per_seed = [float(fit_fn(train_inputs[i], train_labels[i], test_inputs, test_labels)) for i in draws]
    std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return {
        "mean": statistics.fmean(per_seed),
        "std": std,
        "per_seed": per_seed,
        "seeds": seed_list,
        "n_per_class": n_per_class,
    }
