"""Backbones sized for small images (28-32 px) for self-supervised pretraining.

The report this course started from pretrained a ResNet-50 on 28 px MNIST digits
blown up to 224 px: 23 M parameters and 64x the pixels, for images with almost no
texture to learn from.  An encoder sized for the input is ~100x cheaper and learns
better features in the same time.  ``ConvEncoder`` is a plain ResNet-style stack:
a 3x3 stem at full resolution, then one stage per extra width, each halving the
resolution with a strided 3x3 conv and adding a residual 3x3 block, and global
average pooling to a ``feature_dim``-vector.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class ResidualBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))`` at constant width and resolution."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(width, width), nn.ReLU(inplace=True), _conv_bn(width, width))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.body(x))


class ConvEncoder(nn.Module):
    """Images ``(N, C, H, W)`` -> features ``(N, widths[-1])`` (a small ResNet for 28-32 px).

    Args:
        in_channels: 1 for MNIST / Fashion-MNIST, 3 for CIFAR.
        widths: channel width of the stem and of each following stage; every stage
            after the first halves the resolution (28 -> 14 -> 7 with three widths).
        blocks: residual blocks per downsampling stage (0 = plain strided convs).

    ``feature_dim`` is the output width; there is no classification head (add one
    with ``course_lib.evaluation.finetune`` or probe the features).
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128), blocks: int = 1) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive channel counts, got {widths!r}")
        if blocks < 0:
            raise ValueError(f"blocks must be >= 0 (residual blocks per stage), got {blocks}")
        self.in_channels, self.widths, self.blocks = in_channels, widths, blocks
        layers: list[nn.Module] = [_conv_bn(in_channels, widths[0]), nn.ReLU(inplace=True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [_conv_bn(cin, cout, stride=2), nn.ReLU(inplace=True)]
            layers += [ResidualBlock(cout) for _ in range(blocks)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvEncoder(in_channels={self.in_channels}) expects images (N, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}; build it with in_channels={x.shape[1] if x.dim() == 4 else '?'}"
            )
        return torch.flatten(self.pool(self.features(x)), 1)

    def config(self) -> dict:
        """Constructor arguments, to store in checkpoint metadata and rebuild the model."""
        return {"in_channels": self.in_channels, "widths": list(self.widths), "blocks": self.blocks}
