"""Small image classifiers for MNIST and Fashion-MNIST, and the L1/L2 penalty helpers.

- ``SmallCNN``: conv-BN-ReLU blocks, max-pooling, global average pooling and one
  linear layer; ~26 k parameters, reaches 99 % on MNIST in a few CPU-seconds of
  training.  Global average pooling is why it is so small: no big dense layer.
- ``ReportCNN``: the MNIST model-comparison report's Keras-style CNN (3 'valid'
  3x3 convs, max-pools after the first two, a dense head), with the filter widths
  as the swept knob (16-32-32 vs 64-128-128).
- ``MLP``: the Fashion-MNIST baseline (flatten, hidden ReLU layers, optional
  BatchNorm and dropout).
- ``FashionCNN``: two conv blocks plus a dense head, with BatchNorm and dropout as
  toggles, for the Fashion-MNIST ablation (baseline MLP, +conv, +BN, +dropout, +L1,
  +L2).  L1 and L2 are not layers: add ``l1_penalty(model)`` or ``l2_penalty(model)``
  times a coefficient to the loss (or use the optimizer's ``weight_decay`` for L2).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .summary import conv_out_size

__all__ = ["FashionCNN", "MLP", "ReportCNN", "SmallCNN", "l1_penalty", "l2_penalty"]


def _check_image(x: Tensor, in_channels: int, model: str) -> None:
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{model} expects images shaped (N, {in_channels}, H, W); got {tuple(x.shape)}. "
            f"Add the channel axis with x.unsqueeze(1) or set in_channels={x.shape[1] if x.ndim == 4 else '?'}."
        )


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """A ~26 k parameter MNIST classifier: conv-BN-ReLU blocks, max-pool, global average pool, linear.

    With the default ``widths=(16, 32, 64)``: 3x3 conv 1->16 at 28 px, pool, 16->32
    at 14 px, pool, 32->64 and 64->64 (a 1x1 conv mixing channels cheaply) at 7 px,
    global average pooling, linear 64->10.  Each entry of ``widths`` after the first
    adds a pool-then-conv stage.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        if len(widths) < 1 or any(w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive channel counts; got {widths!r}")
        self.in_channels = in_channels
        layers: list[nn.Module] = _conv_bn_relu(in_channels, widths[0])
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.MaxPool2d(2), *_conv_bn_relu(cin, cout)]
        last = widths[-1]
        layers += [nn.Conv2d(last, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(last, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, self.in_channels, "SmallCNN")
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class ReportCNN(nn.Module):
    """The MNIST report's CNN: conv-ReLU-pool, conv-ReLU-pool, conv-ReLU, flatten, dense, output.

    Keras defaults throughout: 3x3 kernels with 'valid' padding (none), 2x2 max-pools.
    On 28 px: 28 -> 26 -> 13 -> 11 -> 5 -> 3, so the head sees ``filters[2] * 9`` inputs.

    Args:
        filters: the three conv widths, e.g. ``(16, 32, 32)`` or ``(64, 128, 128)``.
        dense: width of the hidden dense layer.
        dropout: dropout before the output layer (0 disables it).
    """

    def __init__(
        self,
        filters: Sequence[int] = (16, 32, 32),
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        dense: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(filters) != 3:
            raise ValueError(f"ReportCNN has exactly 3 conv layers, so filters needs 3 widths; got {filters!r}")
        f1, f2, f3 = filters
        size = input_size
        for step, (k, s) in enumerate([(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)]):
            size = conv_out_size(size, k, s)
            if size < 1:
                raise ValueError(
                    f"ReportCNN: a {input_size} px input shrinks below 1 x 1 at layer {step + 1} "
                    "(valid 3x3 convs and 2x2 pools); use input_size >= 20"
                )
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, f1, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(f1, f2, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(f2, f3, 3),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(f3 * size * size, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, self.in_channels, "ReportCNN")
        return self.head(self.features(x))


class MLP(nn.Module):
    """Flatten, then ``Linear -> [BatchNorm1d] -> ReLU -> [Dropout]`` per hidden layer, then a linear output."""

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (256, 128),
        num_classes: int = 10,
        dropout: float = 0.0,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for h in hidden:
            layers.append(nn.Linear(prev, h, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"MLP(in_features={self.in_features}) got samples of shape {tuple(x.shape[1:])} "
                f"({x[0].numel()} values each); build MLP(in_features={x[0].numel()})"
            )
        return self.net(x)


class FashionCNN(nn.Module):
    """Two 3x3 conv blocks (each ``conv -> [BN] -> ReLU -> 2x2 max-pool``) and a dense head.

    Args:
        widths: channels of the two conv blocks.
        hidden: width of the dense layer.
        batchnorm: BatchNorm after each conv and after the dense layer.
        dropout: dropout probability after the conv blocks and after the dense layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        widths: Sequence[int] = (32, 64),
        hidden: int = 128,
        batchnorm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(widths) != 2:
            raise ValueError(f"FashionCNN has two conv blocks, so widths needs 2 values; got {widths!r}")
        if input_size < 4:
            raise ValueError(f"FashionCNN pools twice by 2, so input_size must be >= 4; got {input_size}")
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        prev = in_channels
        for w in widths:
            layers.append(nn.Conv2d(prev, w, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(w))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            prev = w
        self.features = nn.Sequential(*layers)
        side = input_size // 4
        head: list[nn.Module] = [nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(prev * side * side, hidden, bias=not batchnorm))
        if batchnorm:
            head.append(nn.BatchNorm1d(hidden))
        head.append(nn.ReLU(inplace=True))
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, self.in_channels, "FashionCNN")
        return self.head(self.features(x))


def _weights(model: nn.Module) -> list[Tensor]:
    """Weight matrices/kernels of linear, conv and recurrent layers: no biases, no norm scales."""
    out = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            out.append(module.weight)
        elif isinstance(module, nn.RNNBase):
            out += [p for n, p in module.named_parameters() if n.startswith("weight")]
    return out


def l1_penalty(model: nn.Module) -> Tensor:
    """Sum of |w| over the weights of linear and conv layers (biases and norm layers excluded).

    Add ``lam * l1_penalty(model)`` to the loss; Keras' ``kernel_regularizer=l1(lam)`` is
    the same thing.
    """
    weights = _weights(model)
    if not weights:
        raise ValueError("l1_penalty: the model has no Linear/Conv/RNN weights to penalise")
    return torch.stack([w.abs().sum() for w in weights]).sum()


def l2_penalty(model: nn.Module) -> Tensor:
    """Sum of w**2 over the weights of linear and conv layers (biases and norm layers excluded).

    ``lam * l2_penalty(model)`` in the loss equals Keras' ``kernel_regularizer=l2(lam)``;
    SGD's ``weight_decay=wd`` is the same as ``wd / 2 * l2_penalty`` but also hits biases.
    """
    weights = _weights(model)
    if not weights:
        raise ValueError("l2_penalty: the model has no Linear/Conv/RNN weights to penalise")
    return torch.stack([w.pow(2).sum() for w in weights]).sum()
