"""Test-time augmentation: average a classifier's predictions over mirrored copies.

AlexNet was evaluated on ten views of each test image (four corner crops, the centre
crop and their mirror images) with the softmax outputs averaged.  On 32 px images the
crops add little, but the mirror half is nearly free accuracy for any model trained
with horizontal flips.  ``FlipAverage`` wraps a model so that everything built for
plain models (``predict``, ``evaluate``, top-k metrics) works on it unchanged.
``ShiftAverage`` does the same over small translations: the natural test-time
counterpart of training with random crops, and the right one for data whose mirror
images do not occur (Fashion-MNIST's shoes all point the same way).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FlipAverage", "ShiftAverage"]


class FlipAverage(nn.Module):
    """Wrap ``model``: output ``log(mean(softmax(model(x)), softmax(model(mirror(x)))))``.

    The output is a log-probability, so ``argmax``, top-k and cross-entropy work as on
    logits.  Use it for evaluation only (it doubles the cost of a forward pass); it has
    no parameters of its own, and its ``state_dict`` is the wrapped model's under
    ``model.``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"FlipAverage wraps an nn.Module, got {type(model).__name__}")
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"FlipAverage expects image batches (N, C, H, W); got shape {tuple(x.shape)}")
        both = self.model(torch.cat([x, x.flip(-1)]))
        probs = both.float().softmax(dim=1)
        n = x.shape[0]
        return ((probs[:n] + probs[n:]) / 2).clamp_min(1e-12).log()


class ShiftAverage(nn.Module):
    """Wrap ``model``: average its softmax over the image and copies shifted by ``pixels``.

    Five views: the image itself and the image moved ``pixels`` to the left, right, up
    and down (the border is filled by repeating the edge pixels, as the random-crop
    augmentation's padding would look on a background that is constant).  Output and
    state_dict as ``FlipAverage``; evaluation only (five forward passes per image).
    """

    def __init__(self, model: nn.Module, pixels: int = 1) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"ShiftAverage wraps an nn.Module, got {type(model).__name__}")
        if not isinstance(pixels, int) or pixels < 1:
            raise ValueError(f"pixels must be a positive int, got {pixels!r}")
        self.model = model
        self.pixels = pixels

    def views(self, x: Tensor) -> Tensor:
        """``(5N, C, H, W)``: the batch, then shifted right, left, down and up by ``pixels``."""
        if x.ndim != 4:
            raise ValueError(f"ShiftAverage expects image batches (N, C, H, W); got shape {tuple(x.shape)}")
        p, (h, w) = self.pixels, x.shape[-2:]
        padded = torch.nn.functional.pad(x, (p, p, p, p), mode="replicate")
        crops = [(p, p), (p, 0), (p, 2 * p), (0, p), (2 * p, p)]  # (top, left) of each crop in the padded image
        return torch.cat([padded[..., t:t + h, l:l + w] for t, l in crops])

    def forward(self, x: Tensor) -> Tensor:
        probs = self.model(self.views(x)).float().softmax(dim=1)
        return probs.view(5, x.shape[0], -1).mean(0).clamp_min(1e-12).log()
