"""Does an augmentation produce images that the data contain?  Ask a model trained without it.

An augmentation is a claim: "this transformed image is another example of the same
class, as it could occur in the data".  For Fashion-MNIST a random 2-pixel shift is
such an image; a vertically flipped ankle boot is not -- every boot in the training and
test sets stands on its sole.  A cheap test of the claim: train a model *without*
augmentation, then measure its accuracy on validation images passed through each
transform.  Where accuracy barely moves, the transformed images look like the data;
where it collapses, the transform leaves the data distribution, and training on it
spends capacity on images the test set never shows (and may blur classes that differ
only by orientation).  The per-class view shows *which* classes a transform breaks.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .loader import TensorLoader
from .metrics import per_class_accuracy
from .train import predict

__all__ = ["TransformAccuracy", "accuracy_under_transforms"]


class TransformAccuracy(NamedTuple):
    """Accuracy of a model on transformed images: overall and per class (recall)."""

    acc: float
    per_class: np.ndarray


def accuracy_under_transforms(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    transforms: Mapping[str, Callable[..., Tensor] | None],
    *,
    normalize: tuple[list[float], list[float]] | None = None,
    num_classes: int | None = None,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> dict[str, TransformAccuracy]:
    """Evaluate ``model`` on ``images`` passed through each transform (``None`` = unchanged).

    ``images`` are uint8 ``(N, C, H, W)`` (or float in [0, 1]); each transform is a batched
    ``t(x, generator)`` from :mod:`course_lib.augment` acting on [0, 1] images, applied
    before ``normalize`` exactly as in training.  Random transforms draw from a generator
    seeded with ``seed``, so every call sees the same transformed images.
    """
    if not transforms:
        raise ValueError("transforms is empty; pass e.g. {'none': None, 'vertical flip': RandomVerticalFlip(p=1.0)}")
    if len(images) == 0:
        raise ValueError("images is empty; pass the validation images")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    k = num_classes if num_classes is not None else int(labels.max()) + 1
    out: dict[str, TransformAccuracy] = {}
    for name, t in transforms.items():
        if t is not None and not callable(t):
            raise TypeError(f"transform {name!r} must be callable as t(x, generator=...) or None, got {type(t).__name__}")
        loader = TensorLoader(images, labels, batch_size, transform=t, normalize=normalize, device=device, seed=seed)
        logits, y = predict(model, loader, device=device)
        preds = logits.argmax(1)
        out[name] = TransformAccuracy((preds == y).float().mean().item(), per_class_accuracy(y, preds, k))
    return out
