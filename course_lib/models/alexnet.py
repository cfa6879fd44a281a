"""AlexNet, parameterised by input size and width, so it runs on 16-224 px images.

The original network (Krizhevsky, Sutskever & Hinton 2012) is built for 224 px:
an 11x11 stride-4 stem, three overlapping 3x3/2 max-pools, 5 conv + 3 FC layers,
ReLU, local response normalisation after conv1 and conv2, dropout before FC6 and
FC7.  Run unmodified on a 32 px CIFAR image the spatial size falls below one pixel
(see ``summary.alexnet_shape_walk``); and at its native size, even with 10 classes,
it has 58.3 M parameters, 65 % of them in the first dense layer (the student
report's Keras CIFAR-10 AlexNet had 59 M, "mostly in the first dense layer").

Design of the two layouts built here (``stem=``):

- ``"imagenet"`` (default for ``input_size >= 128``): the original layout.  Conv1 is
  11x11 stride 4 padding 2 (torchvision's choice, so 224 px gives the paper's
  55 -> 27 -> 13 -> 6); pools are 3x3 stride 2 without padding; channels
  96-256-384-384-256 and FC 4096-4096 at ``width=1`` (one tower, no two-GPU
  grouping: 62.4 M parameters with 1000 classes).  It needs ``input_size >= 63``.
- ``"small"`` (default below 128 px): the same sequence of layers, scaled down.
  Conv1 is 5x5 with stride 1 (below 32 px), 2 (32-63 px) or 4 (64 px and up) --
  the strided stem is AlexNet's character: it throws resolution away early, which
  is also what makes it cheap.  Every max-pool gets padding 1, so a pool halves the
  size (rounding up) and never shrinks it below 1 x 1.  Sizes: 16 -> 16 -> 8 -> 4 -> 2,
  32 -> 16 -> 8 -> 4 -> 2, 64 -> 16 -> 8 -> 4 -> 2.  (``overlap_pool=False`` uses
  2x2/2 pools without padding: same sizes for these inputs, but 4 px fails.)

Parameter budget: the first FC layer has ``C5 * S * S * fc_dim`` weights, so the
layout keeps the final map small (2 x 2 in the small layout) and the FC width
scales with ``width`` (default ``fc_dim`` = 4096 * width for the imagenet layout,
2048 * width for the small one).  ``alexnet_cifar()`` (width 0.5: 48-128-192-192-128
channels, FC 1024) has 2.5 M parameters instead of 59 M, and trains on a laptop CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .summary import conv_out_size

__all__ = ["AlexNet", "alexnet_cifar", "alexnet_plan"]

_BASE_CHANNELS = (96, 256, 384, 384, 256)
_NORMS = ("lrn", "batch", "none")
_STEMS = ("imagenet", "small")


def _default_stem(input_size: int) -> str:
    return "imagenet" if input_size >= 128 else "small"


def _small_stem_stride(input_size: int) -> int:
    return 1 if input_size < 32 else 2 if input_size < 64 else 4


def alexnet_plan(input_size: int, stem: str | None = None, overlap_pool: bool = True) -> list[dict]:
    """The conv/pool geometry ``AlexNet`` would use, with the spatial size after each layer.

    Arithmetic only (nothing is built).  Rows: ``layer, kernel, stride, padding,
    out_size``.  ``AlexNet`` uses this to validate ``input_size`` before building.
    """
    stem = stem or _default_stem(input_size)
    if stem not in _STEMS:
        raise ValueError(f"stem must be one of {_STEMS}; got {stem!r}")
    if stem == "imagenet":
        conv1 = (11, 4, 2)
        pool = (3, 2, 0) if overlap_pool else (2, 2, 0)
    else:
        conv1 = (5, _small_stem_stride(input_size), 2)
        pool = (3, 2, 1) if overlap_pool else (2, 2, 0)
    layers = [
        ("conv1", *conv1),
        ("pool1", *pool),
        ("conv2", 5, 1, 2),
        ("pool2", *pool),
        ("conv3", 3, 1, 1),
        ("conv4", 3, 1, 1),
        ("conv5", 3, 1, 1),
        ("pool5", *pool),
    ]
    rows, size = [], input_size
    for name, k, s, p in layers:
        size = conv_out_size(size, k, s, p)
        rows.append({"layer": name, "kernel": k, "stride": s, "padding": p, "out_size": size})
    return rows


def _smallest_valid_size(stem: str, overlap_pool: bool, start: int) -> int:
    for n in range(max(1, start), 4097):
        if all(r["out_size"] >= 1 for r in alexnet_plan(n, stem, overlap_pool)):
            return n
    raise RuntimeError("no valid AlexNet input size up to 4096 px")  # unreachable for the built-in layouts


def _channel_window_sum(z: Tensor, before: int, after: int) -> Tensor:
    """``out[:, c] = z[:, c - before] + ... + z[:, c + after]`` (zeros beyond the ends), via a cumulative sum."""
    csum = F.pad(z, (0, 0, 0, 0, before + 1, after)).cumsum(1)
    size = before + 1 + after
    return csum[:, size:] - csum[:, :-size]


class _LRNFunction(torch.autograd.Function):
    """LRN with a hand-written backward pass: 3 saved tensors instead of autograd's chain.

    ``y = x * d**-beta`` with ``d = k + alpha/size * W(x**2)`` (``W``: the channel window
    sum), so ``dL/dx = g * d**-beta - 2 * alpha * beta / size * x * W^T(g * x * d**(-beta - 1))``,
    where ``W^T`` is the window sum with ``before`` and ``after`` swapped.
    """

    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:  # type: ignore[override]
        before, after = size // 2, (size - 1) // 2
        d = _channel_window_sum(x * x, before, after).mul_(alpha / size).add_(k)
        p = d.pow(-beta)
        ctx.save_for_backward(x, d, p)
        ctx.lrn = (size, alpha, beta, before, after)
        return x * p

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, d, p = ctx.saved_tensors
        size, alpha, beta, before, after = ctx.lrn
        t = _channel_window_sum(g * x * p / d, after, before)
        return g * p - (2.0 * alpha * beta / size) * x * t, None, None, None, None


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` with the same output, about 3x faster on CPU (forward + backward).

    LRN divides each activation by ``(k + alpha/size * sum of squares over `size`
    neighbouring channels) ** beta``.  PyTorch sums the window with a 3-D average pool,
    which is slow on CPU (in the forward and even more in the backward pass); here the
    window sum is the difference of two slices of a cumulative sum over channels, and
    the backward pass is written out (``_LRNFunction``).  Same window (``size // 2``
    channels before, ``(size - 1) // 2`` after), same parameters, no state: checkpoints
    made with either class load into the other.  (Not twice differentiable.)
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            return super().forward(x)
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)


class AlexNet(nn.Module):
    """AlexNet-style classifier: 5 conv + 3 FC layers, ReLU, overlapping max-pools, dropout.

    Args:
        num_classes: outputs (10 for CIFAR-10, 100 for CIFAR-100, 1000 for ImageNet).
        input_size: side of the square input in pixels; images must have exactly this
            size (the first FC layer's width depends on it).
        width: multiplier on the channels 96-256-384-384-256 (and on the default FC width).
        in_channels: 3 for RGB, 1 for grayscale.
        norm: ``"lrn"`` -- LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2) after the
            ReLU of conv1 and conv2, as in the paper; ``"batch"`` -- BatchNorm2d between
            every conv and its ReLU (the usual "AlexNet-BN"; with BN on conv1/conv2 only,
            one-cycle SGD at lr 0.1 reached 38 % after 2 CIFAR-10 epochs instead of 61 %;
            and LRN costs extra time even in the fast ``LocalResponseNorm`` below); ``"none"``.
        dropout: dropout probability before FC6 and FC7 (the paper's 0.5).
        overlap_pool: True for the paper's overlapping 3x3 stride-2 pools, False for
            non-overlapping 2x2 stride-2 pools (the paper's ablation).
        fc_dim: width of FC6 and FC7; default 4096 * width (imagenet layout) or
            2048 * width (small layout).
        stem: ``"imagenet"`` (11x11/4 stem, needs >= 63 px) or ``"small"``; default by
            size (see the module docstring).
        init: ``"he"`` -- Kaiming-normal weights for ReLU (variance 2 / fan_in) and zero
            biases (fc8, which feeds the softmax, gets std 0.01 so training starts from uniform
            class probabilities); ``"torch"`` -- PyTorch's layer defaults (variance 1 / (3 fan_in)).
            Default: ``"he"`` without BatchNorm, ``"torch"`` with it.  Why: with the
            torch defaults every conv/FC + ReLU pair shrinks the signal by about
            sqrt(6), so after 8 layers without BatchNorm the logits are ~1e-3 of the
            input scale, the loss sits at ln(10) and the gradients vanish -- on the
            course's 80-step ablation budget the LRN net stayed at 10 % (chance) at every
            learning rate tried.  BatchNorm rescales each layer, so it needs no special init.

    Raises:
        ValueError: if the spatial size would fall below 1 x 1 at some layer (the message
            names the layer and the smallest input size that works).
    """

    def __init__(
        self,
        num_classes: int = 10,
        input_size: int = 32,
        width: float = 1.0,
        in_channels: int = 3,
        norm: str = "lrn",
        dropout: float = 0.5,
        overlap_pool: bool = True,
        fc_dim: int | None = None,
        stem: str | None = None,
        init: str | None = None,
    ) -> None:
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}; got {norm!r}")
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size must be a positive int (pixels per side); got {input_size!r}")
        if width <= 0:
            raise ValueError(f"width must be positive (1.0 = the paper's 96-256-384-384-256 channels); got {width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        if init not in (None, "he", "torch"):
            raise ValueError(f"init must be 'he', 'torch' or None (he without BatchNorm); got {init!r}")
        stem = stem or _default_stem(input_size)
        plan = alexnet_plan(input_size, stem, overlap_pool)
        bad = next((r for r in plan if r["out_size"] < 1), None)
        if bad is not None:
            ok = _smallest_valid_size(stem, overlap_pool, input_size)
            hint = f"use input_size >= {ok}" + (
                " (e.g. resize the images), or stem='small' for small images" if stem == "imagenet" else ""
            )
            raise ValueError(
                f"AlexNet(stem={stem!r}) cannot take {input_size} x {input_size} inputs: the spatial size "
                f"becomes {bad['out_size']} x {bad['out_size']} at {bad['layer']} (below 1 x 1); {hint}"
            )
        self.input_size = input_size
        self.in_channels = in_channels
        self.stem = stem
        self.norm = norm

        c1, c2, c3, c4, c5 = (max(1, int(round(c * width))) for c in _BASE_CHANNELS)
        if fc_dim is None:
            fc_dim = max(1, int(round((4096 if stem == "imagenet" else 2048) * width)))
        geo = {r["layer"]: r for r in plan}

        def conv(name: str, cin: int, cout: int, normed: bool) -> list[tuple[str, nn.Module]]:
            g = geo[name]
            idx = name[-1]
            use_bn = norm == "batch"
            layers: list[tuple[str, nn.Module]] = [
                (name, nn.Conv2d(cin, cout, g["kernel"], g["stride"], g["padding"], bias=not use_bn))
            ]
            if use_bn:
                layers.append((f"bn{idx}", nn.BatchNorm2d(cout)))
            layers.append((f"relu{idx}", nn.ReLU(inplace=True)))
            if normed and norm == "lrn":
                layers.append((f"lrn{idx}", LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)))
            return layers

        def pool(name: str) -> tuple[str, nn.Module]:
            g = geo[name]
            return name, nn.MaxPool2d(g["kernel"], g["stride"], g["padding"])

        self.features = nn.Sequential(
            OrderedDict(
                [
                    *conv("conv1", in_channels, c1, normed=True),
                    pool("pool1"),
                    *conv("conv2", c1, c2, normed=True),
                    pool("pool2"),
                    *conv("conv3", c2, c3, normed=False),
                    *conv("conv4", c3, c4, normed=False),
                    *conv("conv5", c4, c5, normed=False),
                    pool("pool5"),
                ]
            )
        )
        final = geo["pool5"]["out_size"]
        self.flat_features = c5 * final * final
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("drop6", nn.Dropout(dropout)),
                    ("fc6", nn.Linear(self.flat_features, fc_dim)),
                    ("relu6", nn.ReLU(inplace=True)),
                    ("drop7", nn.Dropout(dropout)),
                    ("fc7", nn.Linear(fc_dim, fc_dim)),
                    ("relu7", nn.ReLU(inplace=True)),
                    ("fc8", nn.Linear(fc_dim, num_classes)),
                ]
            )
        )
        self.init = init or ("torch" if norm == "batch" else "he")
        if self.init == "he":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
            # fc8 feeds the softmax, not a ReLU: small weights start every class near 1/num_classes
            nn.init.normal_(self.classifier.fc8.weight, std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"AlexNet was built for (N, {self.in_channels}, {self.input_size}, {self.input_size}) inputs; "
                f"got {tuple(x.shape)}. Resize the images or build AlexNet(input_size={x.shape[-1]}, "
                f"in_channels={x.shape[1] if x.ndim == 4 else '?'})."
            )
        return self.classifier(torch.flatten(self.features(x), 1))


def alexnet_cifar(num_classes: int = 10, **kw: Any) -> AlexNet:
    """The recommended CPU-friendly AlexNet for 32 px images (CIFAR-10/100, ImageNet 32x32).

    Width 0.5 (48-128-192-192-128 channels, FC 1024-1024), BatchNorm after every conv,
    the small layout (5x5 stride-2 stem, padded overlapping pools), dropout 0.5:
    about 2.5 M parameters.  Any ``AlexNet`` argument can be overridden, e.g.
    ``alexnet_cifar(norm="lrn")`` for the paper's normalisation.
    """
    config: dict[str, Any] = {"input_size": 32, "width": 0.5, "norm": "batch", "dropout": 0.5}
    config.update(kw)
    return AlexNet(num_classes=num_classes, **config)
