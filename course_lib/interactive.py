"""The logic behind the notebooks' interactive panels, as plain functions.

``course_lib.widgets`` builds the sliders and buttons; everything a panel *computes*
lives here, so it can be tested without a browser or a kernel and called from
ordinary code.  Each function answers in seconds on a laptop CPU because it works on
a subset (a few hundred to a few thousand images or feature vectors).

- ``short_training_run``: train a fresh model on a subset with the chosen learning
  rate, batch size, epochs, dropout and augmentation strength, recording a history
  several times per epoch; ``should_stop`` is checked between batches, so a Stop
  button ends it within one batch and the model and history stay usable.
- ``AUGMENTATIONS`` / ``build_augmentations`` / ``augmentation_preview``: every
  random transform of ``course_lib.augment`` driven by one strength in [0, 1].
- ``few_label_accuracy``: kNN or linear-probe accuracy on precomputed features with
  ``n`` labels per class, mean +- std over several class-balanced draws.
- ``tsne_embedding``: a t-SNE map of at most 2000 points, with a number that says how
  well it keeps neighbourhoods.
- ``mae_reconstruction``: masked input, reconstruction and original for a mask ratio.

Invalid settings raise ``ValueError`` with a message that names the fix; the panels
show that message instead of a traceback.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import augment as A
from .loader import TensorLoader
from .train import History, evaluate, get_device

OPTIMIZERS = ("adam", "sgd")
MAX_TSNE_POINTS = 2000


# --------------------------------------------------------------------------- data helpers


def as_images_labels(data: Any) -> tuple[Tensor, Tensor]:
    """``(images, labels)`` from an ``ImageDataset`` (anything with ``.images`` and
    ``.labels``) or from an ``(images, labels)`` pair."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(f"expected an ImageDataset or an (images, labels) pair, got {type(data).__name__}")
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor (N, C, H, W), got {shape}; add a channel axis with x.unsqueeze(1)")
    if not isinstance(labels, Tensor) or labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must be a 1-D tensor with one label per image ({len(images)}), "
                         f"got {tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}")
    return images, labels


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 images -> float in [0, 1]; float images are returned as float32 unchanged."""
    return images.float().div(255.0) if images.dtype == torch.uint8 else images.float()


def seeded_subset(n_total: int, n: int, seed: int) -> Tensor:
    """The first ``n`` indices of a seeded permutation of ``range(n_total)``.

    Growing ``n`` keeps the smaller subset inside the larger one, so two settings
    differ only in what the student changed.
    """
    if n < 1:
        raise ValueError(f"a subset needs at least 1 element, got n={n}")
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return perm[: min(n, n_total)]


def subsample(features: Tensor, labels: Tensor, max_n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """At most ``max_n`` rows of ``(features, labels)``, chosen at random with ``seed``."""
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels; they must match")
    if len(features) <= max_n:
        return features, labels
    idx = seeded_subset(len(features), max_n, seed)
    return features[idx], labels[idx]


# --------------------------------------------------------------------------- short training runs


@dataclass(frozen=True)
class TrainSettings:
    """The knobs of a short training run (what the training panel's controls set).

    ``dropout`` is passed to ``make_model(dropout=...)`` when not None;
    ``augment_strength`` in [0, 1] scales the augmentation (0 = none).
    """

    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 3
    n_train: int = 1000
    optimizer: str = "adam"
    dropout: float | None = None
    augment_strength: float = 0.0
    seed: int = 0

    def describe(self) -> str:
        """A short label such as ``adam lr=0.001 bs=64 3 ep 1000 img``."""
        parts = [f"{self.optimizer} lr={self.lr:.3g}", f"bs={self.batch_size}", f"{self.epochs} ep",
                 f"{self.n_train} img"]
        if self.dropout:
            parts.append(f"dropout={self.dropout:.2g}")
        if self.augment_strength:
            parts.append(f"aug={self.augment_strength:.2g}")
        return " ".join(parts)


def accepts_dropout(make_model: Callable[..., nn.Module]) -> bool:
    """True if ``make_model`` takes a ``dropout`` keyword (so the panel offers a dropout slider)."""
    try:
        params = inspect.signature(make_model).parameters
    except (TypeError, ValueError):
        return False
    return "dropout" in params


def check_train_settings(settings: TrainSettings, n_available: int, dropout_supported: bool = True) -> None:
    """Raise ``ValueError`` naming the fix if ``settings`` cannot give a sensible run."""
    s = settings
    if s.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {s.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not (math.isfinite(s.lr) and s.lr > 0):
        raise ValueError(f"the learning rate must be a positive number, got {s.lr}")
    if s.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {s.epochs}")
    if s.n_train < 1:
        raise ValueError(f"use at least 1 training image, got n_train={s.n_train}")
    if s.n_train > n_available:
        raise ValueError(f"{s.n_train} training images requested but only {n_available} are available; "
                         f"lower the number of training images to at most {n_available}")
    if s.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {s.batch_size}")
    if s.batch_size > s.n_train:
        raise ValueError(f"batch size {s.batch_size} is larger than the training subset ({s.n_train} images), "
                         f"so every epoch would be one partial batch; choose a batch size of at most "
                         f"{s.n_train} or use more training images")
    if s.dropout is not None:
        if not 0.0 <= s.dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {s.dropout}")
        if s.dropout > 0 and not dropout_supported:
            raise ValueError("this model has no dropout: make_model takes no `dropout` argument; "
                             "set dropout to 0 or pass a make_model(dropout=...) factory")
    if not 0.0 <= s.augment_strength <= 1.0:
        raise ValueError(f"augmentation strength must lie in [0, 1], got {s.augment_strength}")


def strength_augment(strength: float, image_shape: Sequence[int]) -> A.Transform | None:
    """A sensible augmentation for images of ``image_shape`` (C, H, W), scaled by ``strength``.

    0 means none.  Grey images (digits, clothes) get random rotation, shift and zoom,
    up to 25 degrees, 15 % and +-20 % at strength 1.  Colour images get a padded random
    crop (up to 1/8 of the side), a horizontal flip and colour jitter (up to 0.4).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"augmentation strength must lie in [0, 1], got {strength}")
    if strength == 0:
        return None
    c, h, w = (int(v) for v in image_shape)
    s = float(strength)
    if c != 3:
        return A.RandomAffine(degrees=25 * s, translate=(0.15 * s, 0.15 * s), scale=(1 - 0.2 * s, 1 + 0.2 * s))
    pad = max(1, round(s * h / 8))
    return A.Compose([A.RandomCrop((h, w), padding=pad, padding_mode="reflect"), A.RandomHorizontalFlip(),
                      A.ColorJitter(brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s)])


@dataclass
class ShortRun:
    """Outcome of ``short_training_run``: the model, its history and how the run ended.

    ``stopped`` is True when ``should_stop`` ended it early, ``diverged`` when the loss
    became NaN or infinite.  ``train_seconds`` counts only the training steps (not the
    evaluations), which is the fair number for comparing models.
    """

    settings: TrainSettings
    model: nn.Module
    history: History
    steps: int
    total_steps: int
    train_seconds: float
    seconds: float
    stopped: bool = False
    diverged: bool = False
    num_params: int = 0

    @property
    def last(self) -> dict[str, float]:
        """The last history record (empty if no step ran)."""
        return self.history.records[-1] if self.history.records else {}

    @property
    def val_acc(self) -> float:
        return float(self.last.get("val_acc", math.nan))

    def summary(self) -> str:
        """One line for a status bar: how it ended and the final numbers."""
        if not self.history.records:
            return "stopped before the first step" if self.stopped else "no step ran"
        r = self.last
        how = ("stopped" if self.stopped else "diverged" if self.diverged else "done")
        text = (f"{how} after {self.steps}/{self.total_steps} steps ({r['epoch']:.2f} epochs) in {self.seconds:.1f} s: "
                f"train loss {r['train_loss']:.3f}, validation loss {r['val_loss']:.3f}, "
                f"validation accuracy {100 * r['val_acc']:.1f} %")
        if self.diverged:
            text += " - the loss became NaN/inf: lower the learning rate"
        return text


def build_model(make_model: Callable[..., nn.Module], dropout: float | None = None, seed: int = 0) -> nn.Module:
    """``make_model()`` (or ``make_model(dropout=...)``) with its initial weights fixed by ``seed``.

    The global RNG is forked, so building a model here does not change the
    notebook's random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model(dropout=dropout) if dropout is not None else make_model()
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_model must return a torch.nn.Module, got {type(model).__name__}")
    return model


def _channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    x = to_unit_float(images)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp(min=1e-3)
    return mean.tolist(), std.tolist()


def short_training_run(
    train: Any,
    val: Any,
    make_model: Callable[..., nn.Module],
    settings: TrainSettings,
    *,
    augment: Callable[[float, Sequence[int]], A.Transform | None] | None = strength_augment,
    normalize: tuple[Sequence[float], Sequence[float]] | str | None = "auto",
    n_val: int = 1000,
    evals_per_epoch: int = 2,
    device: torch.device | str | None = None,
    on_record: Callable[[History], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ShortRun:
    """Train a fresh model on a seeded subset of ``train`` and track it on ``val``.

    Args:
        train, val: ``ImageDataset``s or ``(images, labels)`` pairs (uint8 or [0, 1] float).
        make_model: builds the model; called with ``dropout=`` when ``settings.dropout`` is set.
        settings: learning rate, batch size, epochs, subset size, optimizer
            (``"adam"`` or ``"sgd"`` with momentum 0.9), dropout, augmentation strength, seed.
        augment: ``augment(strength, (C, H, W)) -> transform or None``; default
            ``strength_augment``.  Ignored when the strength is 0.
        normalize: ``"auto"`` (mean/std of the training subset), ``(mean, std)`` or None.
        n_val: at most this many validation images (a seeded subset) are evaluated.
        evals_per_epoch: how many history records (with a validation pass) per epoch.
        on_record: called with the history after every record (live learning curve).
        on_progress: called as ``on_progress(step, total_steps)`` after every batch.
        should_stop: checked before every batch; returning True ends the run at once.

    The learning rate is constant (no schedule), so its effect is seen undiluted.
    A history record holds ``epoch`` (fractional), ``step``, ``train_loss`` and
    ``train_acc`` (averaged since the previous record), ``val_loss``, ``val_acc``,
    ``lr`` and ``seconds``.  A NaN/inf loss ends the run with ``diverged=True``.
    The returned model is in eval mode, on ``device``.
    """
    train_x, train_y = as_images_labels(train)
    val_x, val_y = as_images_labels(val)
    dropout_ok = accepts_dropout(make_model)
    check_train_settings(settings, len(train_x), dropout_ok)
    if evals_per_epoch < 1:
        raise ValueError(f"evals_per_epoch must be at least 1, got {evals_per_epoch}")
    if len(val_x) == 0:
        raise ValueError("the validation set is empty; pass at least one validation image")
    s = settings
    device = torch.device(device) if device is not None else get_device()

    idx = seeded_subset(len(train_x), s.n_train, s.seed)
    tx, ty = train_x[idx], train_y[idx]
    vidx = seeded_subset(len(val_x), n_val, s.seed + 1)
    vx, vy = val_x[vidx], val_y[vidx]
    if normalize == "auto":
        normalize = _channel_stats(tx)
    elif isinstance(normalize, str):
        raise ValueError(f"normalize must be 'auto', (mean, std) or None, got {normalize!r}")
    transform = augment(s.augment_strength, tuple(tx.shape[1:])) if (augment and s.augment_strength > 0) else None
    loader = TensorLoader(tx, ty, s.batch_size, shuffle=True, transform=transform, normalize=normalize,
                          device=device, seed=s.seed)
    val_loader = TensorLoader(vx, vy, 512, normalize=normalize, device=device)

    dropout = s.dropout if (dropout_ok and s.dropout is not None) else None
    model = build_model(make_model, dropout, s.seed).to(device)
    if s.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=0.9)

    steps_per_epoch = len(loader)
    total = s.epochs * steps_per_epoch
    every = max(1, steps_per_epoch // evals_per_epoch)
    history = History()
    step, train_seconds, stopped, diverged = 0, 0.0, False, False
    loss_sum, correct, seen = 0.0, 0, 0
    t_start = t_record = time.perf_counter()

    def record() -> None:
        nonlocal loss_sum, correct, seen, t_record
        val = evaluate(model, val_loader)
        now = time.perf_counter()
        history.records.append({
            "epoch": round(step / steps_per_epoch, 4), "step": step,
            "train_loss": loss_sum / seen, "train_acc": correct / seen,
            "val_loss": val["loss"], "val_acc": val["acc"], "lr": s.lr, "seconds": now - t_record,
        })
        loss_sum, correct, seen, t_record = 0.0, 0, 0, now
        if on_record is not None:
            on_record(history)

    model.train()
    for epoch in range(s.epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            if should_stop is not None and should_stop():
                stopped = True
                break
            t0 = time.perf_counter()
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()
            train_seconds += time.perf_counter() - t0
            step += 1
            loss_sum += value * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
            if on_progress is not None:
                on_progress(step, total)
            if not math.isfinite(value):
                diverged = True
                break
            if step % every == 0 or step % steps_per_epoch == 0:
                record()
        if stopped or diverged:
            break
    if seen:  # the steps since the last record (a stop or divergence mid-interval)
        record()
    history.interrupted = stopped
    model.eval()
    return ShortRun(settings=s, model=model, history=history, steps=step, total_steps=total,
                    train_seconds=train_seconds, seconds=time.perf_counter() - t_start, stopped=stopped,
                    diverged=diverged, num_params=sum(p.numel() for p in model.parameters()))


# --------------------------------------------------------------------------- augmentation preview


@dataclass(frozen=True)
class AugmentationSpec:
    """One transform of ``course_lib.augment`` at a strength ``s`` in (0, 1].

    ``build(s, (C, H, W), pca)`` returns the transform; ``transform`` names its class
    in ``course_lib.augment``; ``meaning`` says what strength 1 is.
    """

    transform: str
    build: Callable[[float, tuple[int, int, int], Any], A.Transform]
    meaning: str
    rgb_only: bool = False


def _crop(s: float, shape: tuple[int, int, int], pca: Any) -> A.Transform:
    return A.RandomCrop(shape[1:], padding=max(1, round(s * shape[1] / 4)))


def _pca(s: float, shape: tuple[int, int, int], pca: Any) -> A.Transform:
    if pca is None:
        raise ValueError("PCA lighting needs the images' colour eigen-decomposition; pass "
                         "pca=pca_lighting_from_data(images) (RGB images only)")
    return A.PCALighting(*pca, alphastd=1.5 * s, clip=True)


AUGMENTATIONS: dict[str, AugmentationSpec] = {
    "horizontal flip": AugmentationSpec("RandomHorizontalFlip", lambda s, sh, p: A.RandomHorizontalFlip(p=s),
                                        "probability of a mirror image, 1 = always"),
    "vertical flip": AugmentationSpec("RandomVerticalFlip", lambda s, sh, p: A.RandomVerticalFlip(p=s),
                                      "probability of an upside-down image, 1 = always"),
    "crop": AugmentationSpec("RandomCrop", _crop, "zero padding then a random crop; 1 = a quarter of the side"),
    "resized crop": AugmentationSpec(
        "RandomResizedCrop", lambda s, sh, p: A.RandomResizedCrop(sh[1:], scale=(1 - 0.92 * s, 1.0)),
        "smallest crop area: 1 = 8 % of the image (the ImageNet setting)"),
    "rotation": AugmentationSpec("RandomRotation", lambda s, sh, p: A.RandomRotation(90 * s),
                                 "largest angle: 1 = +-90 degrees"),
    "affine": AugmentationSpec(
        "RandomAffine",
        lambda s, sh, p: A.RandomAffine(degrees=30 * s, translate=(0.2 * s, 0.2 * s),
                                        scale=(1 - 0.3 * s, 1 + 0.3 * s), shear=20 * s),
        "1 = +-30 degrees, 20 % shift, +-30 % zoom, 20 degrees shear"),
    "elastic": AugmentationSpec(
        "ElasticDistortion",
        lambda s, sh, p: A.ElasticDistortion(alpha=68 * s * sh[-1] / 28, sigma=4 * sh[-1] / 28),
        "displacement scale: 1 = alpha 68 px, twice Simard's MNIST value (alpha and sigma scale with the side)"),
    "erasing": AugmentationSpec("RandomErasing",
                                lambda s, sh, p: A.RandomErasing(p=1.0, scale=(0.02, 0.02 + 0.38 * s)),
                                "largest erased area: 1 = 40 % of the image"),
    "cutout": AugmentationSpec("Cutout", lambda s, sh, p: A.Cutout(max(1, round(s * sh[1] / 2))),
                               "side of the square: 1 = half the image side"),
    "gaussian noise": AugmentationSpec("GaussianNoise", lambda s, sh, p: A.GaussianNoise(std=0.3 * s),
                                       "noise standard deviation: 1 = 0.3 (pixels in [0, 1])"),
    "brightness": AugmentationSpec("ColorJitter", lambda s, sh, p: A.ColorJitter(brightness=0.8 * s),
                                   "brightness factor range: 1 = [0.2, 1.8]"),
    "contrast": AugmentationSpec("ColorJitter", lambda s, sh, p: A.ColorJitter(contrast=0.8 * s),
                                 "contrast factor range: 1 = [0.2, 1.8]"),
    "saturation": AugmentationSpec("ColorJitter", lambda s, sh, p: A.ColorJitter(saturation=s),
                                   "saturation factor range: 1 = [0, 2]", rgb_only=True),
    "grayscale": AugmentationSpec("RandomGrayscale", lambda s, sh, p: A.RandomGrayscale(p=s),
                                  "probability of a grey image, 1 = always", rgb_only=True),
    "PCA lighting": AugmentationSpec("PCALighting", _pca,
                                     "AlexNet colour shift along the data's principal axes: 1 = alphastd 1.5",
                                     rgb_only=True),
}

#: Names in ``course_lib.augment.__all__`` that are not random augmentations with a strength.
NOT_STRENGTH_TRANSFORMS = frozenset({"Transform", "Compose", "RandomApply", "Identity", "Normalize", "Grayscale",
                                     "pca_lighting_from_data"})


def augmentations_for(channels: int, pca_available: bool = True) -> list[str]:
    """The names in ``AUGMENTATIONS`` that apply to images with ``channels`` channels."""
    return [name for name, spec in AUGMENTATIONS.items()
            if not (spec.rgb_only and channels != 3) and (name != "PCA lighting" or pca_available)]


def build_augmentations(strengths: Mapping[str, float], image_shape: Sequence[int],
                        pca: tuple[Tensor, Tensor] | None = None) -> dict[str, A.Transform]:
    """One transform per name whose strength is above 0, in ``AUGMENTATIONS`` order.

    ``strengths`` maps names of ``AUGMENTATIONS`` to values in [0, 1]; ``pca`` is
    ``pca_lighting_from_data(images)`` for ``"PCA lighting"``.
    """
    shape = tuple(int(v) for v in image_shape)
    if len(shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
    unknown = sorted(set(strengths) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")
    out = {}
    for name, spec in AUGMENTATIONS.items():
        s = float(strengths.get(name, 0.0))
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"{name}: strength must lie in [0, 1], got {s}")
        if s == 0:
            continue
        if spec.rgb_only and shape[0] != 3:
            raise ValueError(f"{name} works on colour (RGB) images only, these have {shape[0]} channel(s); "
                             "set its strength to 0")
        out[name] = spec.build(s, shape, pca)
    return out


def augmentation_preview(images: Tensor, strengths: Mapping[str, float], seed: int = 0,
                         pca: tuple[Tensor, Tensor] | None = None) -> list[tuple[str, Tensor]]:
    """Rows for a gallery: ``("original", x)``, one row per active transform, and
    ``"all together"`` (their composition, in ``AUGMENTATIONS`` order) when two or more are active.

    Every row draws from a generator seeded with ``seed``, so moving one slider
    changes only its own row (and the combined one).  Images come back as float in [0, 1]
    (clamped for display).
    """
    x = to_unit_float(images)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    transforms = build_augmentations(strengths, x.shape[1:], pca)
    rows = [("original", x)]
    for name, t in transforms.items():
        rows.append((name, t(x.clone(), generator=torch.Generator().manual_seed(seed)).clamp(0, 1)))
    if len(transforms) > 1:
        both = A.Compose(list(transforms.values()))
        rows.append(("all together", both(x.clone(), generator=torch.Generator().manual_seed(seed)).clamp(0, 1)))
    return rows


# --------------------------------------------------------------------------- frozen features


def smallest_class_count(labels: Tensor) -> int:
    """How many examples the rarest class present in ``labels`` has."""
    counts = torch.bincount(labels.cpu().long())
    return int(counts[counts > 0].min())


def few_label_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    n_per_class: int,
    *,
    method: str = "knn",
    k: int = 20,
    T: float = 0.07,
    C: float = 1.0,
    draws: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Test accuracy of a kNN vote or a linear probe trained on ``n_per_class`` labels per class.

    Each of ``draws`` class-balanced draws (seeds ``seed, seed + 1, ...``) picks the
    labelled examples from the training pool; with ``n_per_class`` equal to the
    smallest class count the whole pool is used.  Returns ``{"mean", "std",
    "per_seed", "n_labelled", "k_used", "method"}`` (accuracies in [0, 1]).
    """
    from .evaluation import few_label_protocol, knn_classify, linear_probe

    if method not in ("knn", "probe"):
        raise ValueError(f"method must be 'knn' or 'probe', got {method!r}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    most = smallest_class_count(train_labels)
    if not 1 <= n_per_class <= most:
        raise ValueError(f"{n_per_class} labels per class requested, but the smallest class of the training "
                         f"pool has {most} examples; choose between 1 and {most}")
    num_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    n_labelled = n_per_class * int((torch.bincount(train_labels.cpu().long()) > 0).sum())
    k_used = min(k, n_labelled)
    if method == "knn":
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not T > 0:
            raise ValueError(f"the kNN temperature T must be > 0, got {T}")

        def fit_fn(xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor) -> float:
            pred = knn_classify(xtr, ytr, xte, k=k, T=T, num_classes=num_classes)
            return float((pred.cpu() == yte.cpu()).float().mean())
    else:
        if not C > 0:
            raise ValueError(f"C (inverse regularisation) must be > 0, got {C}")

        def fit_fn(xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor) -> float:
            return float(linear_probe(xtr, ytr, xte, yte, C=C, num_classes=num_classes).test_accuracy)

    if n_per_class == most and draws > 1 and int(torch.bincount(train_labels.cpu().long()).max()) == most:
        draws = 1  # every draw would be the whole pool
    res = few_label_protocol(train_features, train_labels, test_features, test_labels, n_per_class,
                             seeds=range(seed, seed + draws), fit_fn=fit_fn)
    res.update(n_labelled=n_labelled, k_used=k_used, method=method)
    return res


@dataclass
class TsneResult:
    """A 2-D t-SNE map: ``xy`` (n, 2), the points' ``labels`` and their ``indices`` in the
    input, plus leave-one-out 5-NN accuracy in the map and in the original feature space
    (close numbers = the map kept the class neighbourhoods)."""

    xy: Tensor
    labels: Tensor
    indices: Tensor
    perplexity: float
    knn_acc_map: float
    knn_acc_features: float
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def loo_knn_accuracy(points: Tensor, labels: Tensor, k: int = 5, cosine: bool = False) -> float:
    """Leave-one-out accuracy of a majority vote of each point's ``k`` nearest other points."""
    x = points.float()
    if cosine:
        x = F.normalize(x, dim=1)
        d = -(x @ x.T)
    else:
        d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    k = min(k, len(x) - 1)
    if k < 1:
        raise ValueError("leave-one-out kNN needs at least 2 points")
    nn_idx = d.topk(k, largest=False).indices
    votes = F.one_hot(labels[nn_idx].long(), int(labels.max()) + 1).sum(1)
    return float((votes.argmax(1) == labels).float().mean())


def tsne_embedding(features: Tensor, labels: Tensor, perplexity: float = 30.0, n_points: int = 1000,
                   seed: int = 0, max_iter: int = 500) -> TsneResult:
    """t-SNE (scikit-learn, PCA initialisation) of a seeded random subset of ``n_points`` points.

    At most ``MAX_TSNE_POINTS`` (2000) points: beyond that t-SNE takes minutes on a CPU.
    ``perplexity`` (roughly the number of neighbours each point attends to) must be
    smaller than the number of points.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels; they must match")
    if n_points > MAX_TSNE_POINTS:
        raise ValueError(f"t-SNE on {n_points} points takes minutes on a CPU; use at most {MAX_TSNE_POINTS}")
    n = min(n_points, len(features))
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    if not 1.0 <= perplexity < n:
        raise ValueError(f"perplexity {perplexity:g} must be at least 1 and smaller than the number of points "
                         f"({n}); lower the perplexity or use more points")
    idx = seeded_subset(len(features), n, seed)
    x = features[idx].detach().float().flatten(1).cpu()
    y = labels[idx].cpu().long()
    t0 = time.perf_counter()
    # One OpenMP thread: with torch loaded, two OpenMP runtimes (torch's and scikit-learn's)
    # spin against each other and t-SNE of 60 points took 12 s instead of 0.1 s on 2 cores.
    # The limit applies to the calling thread only.
    with threadpool_limits(limits=1, user_api="openmp"):
        xy = TSNE(n_components=2, perplexity=float(perplexity), init="pca", learning_rate="auto",
                  max_iter=max_iter, random_state=seed).fit_transform(x.numpy())
    xy = torch.as_tensor(xy, dtype=torch.float32)
    return TsneResult(xy=xy, labels=y, indices=idx, perplexity=float(perplexity),
                      knn_acc_map=loo_knn_accuracy(xy, y), knn_acc_features=loo_knn_accuracy(x, y, cosine=True),
                      seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- MAE


@dataclass
class MaeView:
    """What ``mae_reconstruction`` returns: images in [0, 1], the per-patch mask and the loss."""

    original: Tensor
    masked: Tensor
    reconstruction: Tensor
    mask: Tensor
    loss: float
    mask_ratio: float


def max_mask_ratio(num_patches: int) -> float:
    """The largest mask ratio that still keeps one patch visible (MAE keeps ``int(L * (1 - r))``)."""
    return 1.0 - 1.0 / num_patches


@torch.no_grad()
def mae_reconstruction(model: nn.Module, images: Tensor, mask_ratio: float, seed: int = 0,
                       normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                       mask_fill: float = 0.5) -> MaeView:
    """Mask ``mask_ratio`` of each image's patches at random (seeded) and let ``model``
    (a ``course_lib.ssl.mae.MAE``) fill them in.

    ``images`` are uint8 or [0, 1] float ``(N, C, H, W)``; ``normalize`` is the
    ``(mean, std)`` the model was trained with (undone for display).  Masked patches
    are painted ``mask_fill`` grey in ``masked``; ``reconstruction`` keeps the visible
    patches and shows the model's prediction in the masked ones, as in the MAE paper.
    """
    from .ssl.mae import patchify, unpatchify

    ratio = float(mask_ratio)
    L = int(getattr(model, "num_patches"))
    p, c = int(model.patch_size), int(model.in_channels)
    if not 0.0 < ratio < 1.0 or int(L * (1 - ratio)) < 1:
        raise ValueError(f"mask ratio {ratio:g} must leave at least one of the {L} patches visible and mask at "
                         f"least one: choose a ratio in (0, {max_mask_ratio(L):.3g}]")
    dev = next(model.parameters()).device
    x = to_unit_float(images).to(dev)
    mean = std = None
    if normalize is not None:
        mean = torch.as_tensor(normalize[0], dtype=x.dtype, device=dev).view(1, -1, 1, 1)
        std = torch.as_tensor(normalize[1], dtype=x.dtype, device=dev).view(1, -1, 1, 1)
    inp = (x - mean) / std if mean is not None else x
    was_training = model.training
    model.eval()
    try:
        gen = torch.Generator(device=dev).manual_seed(seed)
        loss, pred, mask = model(inp, mask_ratio=ratio, generator=gen)
        recon = model.reconstruct(pred, inp, mask)
    finally:
        model.train(was_training)
    if mean is not None:
        recon = recon * std + mean
    m = mask.unsqueeze(-1)
    masked = unpatchify(patchify(x, p) * (1 - m) + mask_fill * m, p, c)
    return MaeView(original=x.cpu(), masked=masked.clamp(0, 1).cpu(), reconstruction=recon.clamp(0, 1).cpu(),
                   mask=mask.cpu(), loss=float(loss), mask_ratio=ratio)


__all__ = [
    "AUGMENTATIONS",
    "AugmentationSpec",
    "MAX_TSNE_POINTS",
    "MaeView",
    "NOT_STRENGTH_TRANSFORMS",
    "OPTIMIZERS",
    "ShortRun",
    "TrainSettings",
    "TsneResult",
    "accepts_dropout",
    "as_images_labels",
    "augmentation_preview",
    "augmentations_for",
    "build_augmentations",
    "build_model",
    "check_train_settings",
    "few_label_accuracy",
    "loo_knn_accuracy",
    "mae_reconstruction",
    "max_mask_ratio",
    "seeded_subset",
    "short_training_run",
    "smallest_class_count",
    "strength_augment",
    "subsample",
    "to_unit_float",
    "tsne_embedding",
]
