"""Test-time augmentation: average a classifier's predictions over mirrored copies.

AlexNet was evaluated on ten views of each test image (four corner crops, the centre
crop and their mirror images) with the softmax outputs averaged.  On 32 px images the
crops add little, but the mirror half is nearly free accuracy for any model trained
with horizontal flips.  ``FlipAverage`` wraps a model so that everything built for
plain models (``predict``, ``evaluate``, top-k metrics) works on it unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FlipAverage"]


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
