"""Batched data augmentation: each image of a batch gets its own random parameters.

Why not torchvision?  Its transforms were written for one PIL image at a time; the
``v2`` transforms do accept a batch tensor, but they draw *one* set of random
parameters and apply it to every image of the batch (all images flipped, or none;
the same crop offset for all).  That silently weakens augmentation when the batch is
augmented on the device, which is what we want for speed on in-memory datasets.

Every transform here is a small callable object::

    t(x, generator=None) -> Tensor

- ``x`` is a float tensor ``(N, C, H, W)`` with values nominally in ``[0, 1]``
  (``C`` is 1 or 3); the output has the same shape (except for the crops, which
  return their ``size``), dtype and device.
- Random parameters are drawn per image with ``generator`` on the generator's
  device and then moved to ``x.device``, so a seeded CPU generator gives the same
  batch whether ``x`` lives on the CPU, CUDA or MPS.  With ``generator=None`` the
  global RNG of ``x.device`` is used.
- Everything is vectorised over the batch (masks built by broadcasting, crops by
  advanced indexing, geometry by ``affine_grid`` + ``grid_sample``): no Python loop
  over images.

A whole pipeline, including the final ``Normalize``, is one ``Compose``::

    train_tf = Compose([RandomCrop(32, padding=4, padding_mode="reflect"),
                        RandomHorizontalFlip(),
                        Normalize(mean, std)])
    xb = train_tf(xb, generator=g)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Transform",
    "Compose",
    "RandomApply",
    "Identity",
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "RandomCrop",
    "RandomResizedCrop",
    "RandomAffine",
    "RandomRotation",
    "ElasticDistortion",
    "RandomErasing",
    "Cutout",
    "GaussianNoise",
    "ColorJitter",
    "Grayscale",
    "RandomGrayscale",
    "PCALighting",
    "pca_lighting_from_data",
    "Normalize",
]

#: ITU-R BT.601 luma weights for R, G, B (what PIL's ``convert("L")`` uses).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

# How many candidate boxes RandomResizedCrop / RandomErasing try per image
# (torchvision tries 10 times in a loop; we draw 10 at once and keep the first fit).
_ATTEMPTS = 10


# --------------------------------------------------------------------------- helpers


def _check_batch(x: Tensor, who: str, color: bool = False) -> None:
    """Raise a clear error unless ``x`` is a float batch ``(N, C, H, W)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{who} expects a torch.Tensor batch (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        hint = "; for a single image use x.unsqueeze(0)" if x.ndim == 3 else ""
        raise ValueError(f"{who} expects a batch of shape (N, C, H, W), got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ValueError(
            f"{who} expects a float tensor with values in [0, 1], got dtype {x.dtype}; "
            "convert uint8 images with x.float() / 255"
        )
    if color and x.shape[1] not in (1, 3):
        raise ValueError(f"{who} works on 1- or 3-channel images, got {x.shape[1]} channels")


def _gen_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def _rand(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) float32 numbers drawn on the generator's device, returned on ``device``."""
    return torch.rand(tuple(shape), generator=generator, device=_gen_device(generator, device)).to(device)


def _randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard-normal float32 numbers drawn on the generator's device, returned on ``device``."""
    return torch.randn(tuple(shape), generator=generator, device=_gen_device(generator, device)).to(device)


def _check_p(p: float, who: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{who}: p is a probability and must lie in [0, 1], got {p}")
    return float(p)


def _pair(value: int | Sequence[int], name: str, who: str) -> tuple[int, int]:
    """``size`` as (height, width) of positive ints; an int means a square."""
    if isinstance(value, int):
        value = (value, value)
    if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
        raise ValueError(f"{who}: {name} must be a positive int or a (height, width) pair of positive ints, got {value!r}")
    return int(value[0]), int(value[1])


def _range(value: Sequence[float], name: str, who: str, low: float = -math.inf, high: float = math.inf,
           strict_low: bool = False) -> tuple[float, float]:
    """A (min, max) pair with min <= max, both within [low, high] (or (low, high] if strict_low)."""
    if isinstance(value, (int, float)) or len(value) != 2:
        raise ValueError(f"{who}: {name} must be a (min, max) pair, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ValueError(f"{who}: {name} min must not exceed max, got {name}={value!r}; swap the two values")
    too_low = lo <= low if strict_low else lo < low
    if too_low or hi > high:
        bound = "(" if strict_low else "["
        raise ValueError(f"{who}: {name} values must lie in {bound}{low}, {high}], got {value!r}")
    return lo, hi


def _symmetric(value: float | Sequence[float], name: str, who: str) -> tuple[float, float]:
    """A number d >= 0 means the range (-d, d); a pair is taken as is."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{who}: {name} as a single number must be >= 0 (it means the range (-{name}, +{name})), got {value}")
        return -float(value), float(value)
    return _range(value, name, who)


def _factor_range(value: float | Sequence[float], name: str, who: str) -> tuple[float, float]:
    """ColorJitter-style factor: a number b >= 0 means factors in [max(0, 1 - b), 1 + b]."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{who}: {name} must be >= 0, got {value}")
        return max(0.0, 1.0 - float(value)), 1.0 + float(value)
    return _range(value, name, who, low=0.0)


def _uniform(u: Tensor, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * u


def _per_channel(value: float | Sequence[float], x: Tensor, who: str, name: str) -> Tensor:
    """A scalar or one value per channel, as a (1, C, 1, 1) tensor on x's device and dtype."""
    v = torch.as_tensor(value, dtype=x.dtype, device=x.device).flatten()
    if v.numel() not in (1, x.shape[1]):
        raise ValueError(f"{who}: {name} has {v.numel()} values but the batch has {x.shape[1]} channels; "
                         "give one value or one per channel")
    return v.view(1, -1, 1, 1)


def _fmt(obj: object, **kwargs: object) -> str:
    return f"{type(obj).__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def _rgb_to_gray(x: Tensor) -> Tensor:
    """Luma (N, 1, H, W) of a 1- or 3-channel batch."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _sample_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                  generator: torch.Generator | None, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per image, the first of ``_ATTEMPTS`` random boxes (area fraction in ``scale``, aspect
    w/h in ``ratio``, log-uniform) that fits inside the image, in integer pixels.

    Returns ``top, left, h, w`` (int64, shape (n,)) and ``found`` (bool, (n,)); where no
    attempt fitted, the box values are meaningless and ``found`` is False.
    """
    u = _rand((n, _ATTEMPTS, 4), generator, device).double()
    area = height * width * _uniform(u[..., 0], *scale)
    log_r = _uniform(u[..., 1], math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True (0 if none)
    pick = lambda t: t.gather(1, first).squeeze(1)  # noqa: E731
    h, w = pick(h), pick(w)
    top = (pick(u[..., 2]) * (height - h + 1)).floor().clamp(min=0)
    left = (pick(u[..., 3]) * (width - w + 1)).floor().clamp(min=0)
    return top.long(), left.long(), h.long(), w.long(), fits.any(dim=1)


# ------------------------------------------------------------------------ composition


class Transform:
    """Base class: a batched transform ``t(x, generator=None) -> Tensor``."""

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(Transform):
    """Returns its input unchanged (handy as a 'no augmentation' baseline)."""

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x


class Compose(Transform):
    """Apply ``transforms`` in order, passing the same generator to each."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if isinstance(t, type) or not callable(t):
                raise ValueError(f"Compose: item {i} ({t!r}) is not callable; pass transform objects, "
                                 "e.g. RandomHorizontalFlip(), not the class")
        self.transforms = transforms

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for t in self.transforms:
            x = t(x, generator=generator)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]

    def __repr__(self) -> str:
        if not self.transforms:
            return "Compose([])"
        body = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{body}\n])"


class RandomApply(Transform):
    """Apply ``transform`` to a random subset of the batch: each image independently with
    probability ``p``; the others pass through unchanged.

    The transform runs on the whole batch and ``torch.where`` keeps the chosen images;
    that wastes a little compute but keeps the code free of gathers and scatters.
    """

    def __init__(self, transform: Transform, p: float = 0.5) -> None:
        if isinstance(transform, type) or not callable(transform):
            raise ValueError(f"RandomApply: transform must be a transform object, e.g. GaussianNoise(0.1), "
                             f"got {transform!r}")
        self.transform = transform
        self.p = _check_p(p, "RandomApply")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "RandomApply")
        chosen = _rand((x.shape[0],), generator, x.device) < self.p
        if not chosen.any():
            return x
        y = self.transform(x, generator=generator)
        if y.shape != x.shape:
            raise ValueError(f"RandomApply: {self.transform!r} changed the shape {tuple(x.shape)} -> "
                             f"{tuple(y.shape)}; only shape-preserving transforms can be applied to a subset")
        return torch.where(chosen.view(-1, 1, 1, 1), y, x)

    def __repr__(self) -> str:
        return _fmt(self, transform=self.transform, p=self.p)


# --------------------------------------------------------------------------- geometry


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``."""

    dim = -1

    def __init__(self, p: float = 0.5) -> None:
        self.p = _check_p(p, type(self).__name__)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, type(self).__name__)
        flip = _rand((x.shape[0],), generator, x.device) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(self.dim), x)

    def __repr__(self) -> str:
        return _fmt(self, p=self.p)


class RandomVerticalFlip(RandomHorizontalFlip):
    """Mirror each image upside-down with probability ``p``."""

    dim = -2


_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}


class RandomCrop(Transform):
    """Pad the batch, then cut a ``size`` window at a random offset per image.

    ``padding`` follows torchvision: an int pads all sides, ``(lr, tb)`` pads
    left/right and top/bottom, ``(left, top, right, bottom)`` each side.
    ``padding_mode`` is ``"zeros"``, ``"reflect"`` (mirror without repeating the edge;
    padding must be smaller than the image) or ``"replicate"`` (repeat the edge pixel).
    The classic CIFAR recipe is ``RandomCrop(32, padding=4, padding_mode="reflect")``.
    The windows are gathered with advanced indexing: one kernel, no loop over images.
    """

    def __init__(self, size: int | Sequence[int], padding: int | Sequence[int] = 0,
                 padding_mode: str = "zeros") -> None:
        self.size = _pair(size, "size", "RandomCrop")
        pad = [padding] * 4 if isinstance(padding, int) else list(padding)
        if len(pad) == 2:
            pad = [pad[0], pad[1], pad[0], pad[1]]
        if len(pad) != 4 or not all(isinstance(v, int) for v in pad):
            raise ValueError(f"RandomCrop: padding must be an int, (lr, tb) or (left, top, right, bottom) ints, got {padding!r}")
        if any(v < 0 for v in pad):
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding!r}")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}")
        self.padding = padding
        self._pad = (pad[0], pad[2], pad[1], pad[3])  # F.pad order: left, right, top, bottom
        self.padding_mode = padding_mode

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "RandomCrop")
        n, c, height, width = x.shape
        th, tw = self.size
        if any(self._pad):
            if self.padding_mode == "reflect" and (max(self._pad[:2]) >= width or max(self._pad[2:]) >= height):
                raise ValueError(f"RandomCrop: reflect padding {self.padding!r} must be smaller than the image "
                                 f"({height}x{width}); lower padding or use padding_mode='replicate'")
            x = F.pad(x, self._pad, mode=_PAD_MODES[self.padding_mode])
        ph, pw = x.shape[-2:]
        if th > ph or tw > pw:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the padded image ({ph}, {pw}); "
                             "lower size or raise padding")
        u = _rand((n, 2), generator, x.device)
        top = (u[:, 0] * (ph - th + 1)).long().clamp(max=ph - th)
        left = (u[:, 1] * (pw - tw + 1)).long().clamp(max=pw - tw)
        rows = (top[:, None] + torch.arange(th, device=x.device))[:, None, :, None]  # (N,1,th,1)
        cols = (left[:, None] + torch.arange(tw, device=x.device))[:, None, None, :]  # (N,1,1,tw)
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
        return x[batch, chan, rows, cols]

    def __repr__(self) -> str:
        return _fmt(self, size=self.size, padding=self.padding, padding_mode=self.padding_mode)


def _affine_grid(theta: Tensor, size: tuple[int, int]) -> Tensor:
    """``F.affine_grid(theta, (N, C, *size), align_corners=False)`` as one matmul; the
    same numbers, but several times faster on a small CPU (one kernel instead of many)."""
    h, w = size
    xs = (torch.arange(w, dtype=theta.dtype, device=theta.device) * 2 + 1) / w - 1  # pixel centres
    ys = (torch.arange(h, dtype=theta.dtype, device=theta.device) * 2 + 1) / h - 1
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones_like(xs).expand(h, w)], dim=-1)
    return (base.view(1, h * w, 3) @ theta.transpose(1, 2)).view(-1, h, w, 2)


def _affine_sample(x: Tensor, theta: Tensor, size: tuple[int, int], fill: float | Sequence[float] | None,
                   who: str) -> Tensor:
    """Bilinear ``grid_sample`` of ``x`` through per-image normalised affine maps ``theta``
    (N, 2, 3; output coords -> input coords, ``align_corners=False``).

    Points outside the input take ``fill``: sampling ``x - fill`` with zero padding and
    adding ``fill`` back is exactly a bilinear sample of the image on a plane painted
    with ``fill`` (so a constant image filled with its own value stays constant).
    ``fill=None`` repeats the edge pixels instead, which is what a resize needs: there the
    samples lie at most half a pixel outside and must not be darkened.
    """
    theta = theta.to(device=x.device, dtype=x.dtype)
    return _grid_sample(x, _affine_grid(theta, size), fill, who)


def _grid_sample(x: Tensor, grid: Tensor, fill: float | Sequence[float] | None, who: str) -> Tensor:
    """Bilinear ``grid_sample`` of ``x`` at ``grid`` (N, H, W, 2; normalised, ``align_corners=False``),
    with ``fill`` outside the image (``None``: repeat the edge pixels), as ``_affine_sample`` explains."""
    if fill is None:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    f = _per_channel(fill, x, who, "fill")
    if not torch.any(f != 0):
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.grid_sample(x - f, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + f


class RandomResizedCrop(Transform):
    """Cut a random box per image and resize it to ``size`` (the Inception / ImageNet crop).

    Box area is a fraction ``scale`` of the image and aspect ratio w/h is log-uniform in
    ``ratio``; like torchvision, 10 boxes are tried and the first that fits is kept,
    falling back to the largest centred box with a ratio in range.  The resize is
    bilinear via ``grid_sample`` without antialiasing, so strong *down*-scaling aliases
    (on the course's 28-32 px images crops are mostly enlarged, where this does not matter).
    """

    def __init__(self, size: int | Sequence[int], scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3)) -> None:
        self.size = _pair(size, "size", "RandomResizedCrop")
        self.scale = _range(scale, "scale", "RandomResizedCrop", low=0.0, high=1.0, strict_low=True)
        self.ratio = _range(ratio, "ratio", "RandomResizedCrop", low=0.0, strict_low=True)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "RandomResizedCrop")
        n, _, height, width = x.shape
        top, left, h, w, found = _sample_boxes(n, height, width, self.scale, self.ratio, generator, x.device)
        # Fallback (torchvision's): whole image, trimmed to the nearest allowed aspect ratio.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            fw, fh = round(height * self.ratio[1]), height
        else:
            fw, fh = width, height
        h = torch.where(found, h, fh).double()
        w = torch.where(found, w, fw).double()
        top = torch.where(found, top, (height - fh) // 2).double()
        left = torch.where(found, left, (width - fw) // 2).double()
        # Box in normalised coordinates ([-1, 1] spans the image edges).
        theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=x.device)
        theta[:, 0, 0] = w / width
        theta[:, 1, 1] = h / height
        theta[:, 0, 2] = (2 * left + w) / width - 1
        theta[:, 1, 2] = (2 * top + h) / height - 1
        return _affine_sample(x, theta, self.size, None, "RandomResizedCrop")

    def __repr__(self) -> str:
        return _fmt(self, size=self.size, scale=self.scale, ratio=self.ratio)


class RandomAffine(Transform):
    """Random rotation, translation, scaling and shear, each image its own parameters.

    Same conventions as ``torchvision.transforms.v2.RandomAffine``:

    - ``degrees``: d -> angle uniform in (-d, d), or a (min, max) pair; positive is
      counter-clockwise, as in ``torchvision...functional.rotate`` (its ``affine``
      counts clockwise; for the usual symmetric ranges the two agree in distribution).
    - ``translate``: (a, b) -> shift uniform in (-a*W, a*W) and (-b*H, b*H) pixels
      (not rounded to whole pixels here).
    - ``scale``: (min, max) zoom factor.
    - ``shear``: s -> x-shear angle in (-s, s) degrees; (min, max) -> x-shear range;
      (xmin, xmax, ymin, ymax) -> both.
    - ``fill``: value (or one per channel) for pixels that come from outside the image.

    Resampling is bilinear (``affine_grid`` + ``grid_sample``).  With every parameter at
    its default the transform is the identity.
    """

    def __init__(self, degrees: float | Sequence[float] = 0, translate: Sequence[float] | None = None,
                 scale: Sequence[float] | None = None, shear: float | Sequence[float] | None = None,
                 fill: float | Sequence[float] = 0.0) -> None:
        who = type(self).__name__
        self.degrees = _symmetric(degrees, "degrees", who)
        if translate is not None:
            if isinstance(translate, (int, float)) or len(translate) != 2:
                raise ValueError(f"{who}: translate must be a pair (a, b) of fractions of width and height, got {translate!r}")
            if not all(0.0 <= float(t) <= 1.0 for t in translate):
                raise ValueError(f"{who}: translate fractions must lie in [0, 1], got {translate!r}")
            translate = (float(translate[0]), float(translate[1]))
        self.translate = translate
        self.scale = None if scale is None else _range(scale, "scale", who, low=0.0, strict_low=True)
        if shear is None:
            self.shear = None
        elif isinstance(shear, (int, float)):
            self.shear = (*_symmetric(shear, "shear", who), 0.0, 0.0)
        elif len(shear) == 2:
            self.shear = (*_range(shear, "shear", who), 0.0, 0.0)
        elif len(shear) == 4:
            self.shear = (*_range(shear[:2], "shear x", who), *_range(shear[2:], "shear y", who))
        else:
            raise ValueError(f"{who}: shear must be a number, a (min, max) pair or 4 values "
                             f"(xmin, xmax, ymin, ymax), got {shear!r}")
        if self.shear is not None and max(abs(s) for s in self.shear) >= 90:
            raise ValueError(f"{who}: shear angles must be within (-90, 90) degrees, got {shear!r}")
        self.fill = fill

    def _theta(self, n: int, height: int, width: int, generator: torch.Generator | None,
               device: torch.device) -> Tensor:
        """Per-image normalised inverse affine matrices (N, 2, 3), float64."""
        u = _rand((n, 6), generator, device).double()
        # The image y axis points down, so a counter-clockwise turn is a negative angle below.
        rot = torch.deg2rad(-_uniform(u[:, 0], *self.degrees))
        tx = _uniform(u[:, 1], -1, 1) * (self.translate[0] * width if self.translate else 0.0)
        ty = _uniform(u[:, 2], -1, 1) * (self.translate[1] * height if self.translate else 0.0)
        s = _uniform(u[:, 3], *self.scale) if self.scale else torch.ones_like(rot)
        shear = self.shear or (0.0, 0.0, 0.0, 0.0)
        sx = torch.deg2rad(_uniform(u[:, 4], shear[0], shear[1]))
        sy = torch.deg2rad(_uniform(u[:, 5], shear[2], shear[3]))
        # Forward rotation-shear R(a) SHy(sy) SHx(sx) (determinant 1), as in
        # torchvision.transforms.functional._get_inverse_affine_matrix; its inverse over s.
        a = torch.cos(rot - sy) / torch.cos(sy)
        b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
        c = torch.sin(rot - sy) / torch.cos(sy)
        d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
        inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / s.view(-1, 1, 1)
        # Pixel coords centred on the image -> normalised coords: divide by (W/2, H/2).
        half = torch.tensor([width / 2, height / 2], dtype=torch.float64, device=device)
        lin = inv * half.view(1, 1, 2) / half.view(1, 2, 1)
        shift = -(inv @ torch.stack([tx, ty], -1).unsqueeze(-1)).squeeze(-1) / half
        return torch.cat([lin, shift.unsqueeze(-1)], dim=-1)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        who = type(self).__name__
        _check_batch(x, who)
        n, _, height, width = x.shape
        theta = self._theta(n, height, width, generator, x.device)
        return _affine_sample(x, theta, (height, width), self.fill, who)

    def __repr__(self) -> str:
        return _fmt(self, degrees=self.degrees, translate=self.translate, scale=self.scale,
                    shear=self.shear, fill=self.fill)


class RandomRotation(RandomAffine):
    """Rotate each image by its own angle: ``degrees`` d -> uniform in (-d, d), or (min, max).

    A ``RandomAffine`` with only ``degrees`` set; corners outside the image take ``fill``.
    """

    def __init__(self, degrees: float | Sequence[float], fill: float | Sequence[float] = 0.0) -> None:
        super().__init__(degrees=degrees, fill=fill)

    def __repr__(self) -> str:
        return _fmt(self, degrees=self.degrees, fill=self.fill)


def _gaussian_blur(field: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (std ``sigma`` pixels, kernel cut at 3 sigma, zero padding) of (N, C, H, W)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=field.dtype, device=field.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = field.shape[1]
    field = F.conv2d(field, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(field, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


class ElasticDistortion(Transform):
    """Elastic distortion (Simard, Steinkraus & Platt 2003), each image its own displacement field.

    Every pixel gets a random displacement, uniform in (-1, 1) along x and y; the field
    is smoothed with a Gaussian of std ``sigma`` pixels and scaled by ``alpha`` pixels,
    and the image is resampled bilinearly along it.  A small ``sigma`` gives noise-like
    jitter, a large one moves the whole image almost rigidly; in between (Simard's
    ``sigma=4``, ``alpha=34`` for 28 px digits, about 1.4 px of typical displacement)
    the strokes bend the way handwriting varies from one writer to the next -- which is
    why it was the best augmentation for MNIST in that paper.  ``sigma`` and ``alpha``
    are in pixels, so they are meant for the image size they were chosen at.
    Pixels that come from outside the image take ``fill``.
    """

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0, fill: float | Sequence[float] = 0.0) -> None:
        who = type(self).__name__
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"{who}: alpha (displacement scale in pixels) must be a finite number >= 0, got {alpha!r}")
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"{who}: sigma (smoothing std in pixels) must be a finite number > 0, got {sigma!r}; "
                             "Simard et al. used 4 for 28 px digits")
        self.alpha, self.sigma, self.fill = float(alpha), float(sigma), fill

    def displacement(self, n: int, height: int, width: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> Tensor:
        """Per-image displacement fields (N, 2, H, W) in pixels (channel 0 along x, 1 along y)."""
        device = torch.device(device)
        noise = _rand((n, 2, height, width), generator, device) * 2 - 1
        return _gaussian_blur(noise, self.sigma) * self.alpha

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        who = type(self).__name__
        _check_batch(x, who)
        n, _, height, width = x.shape
        shift = self.displacement(n, height, width, generator, x.device).to(x.dtype)
        identity = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(n, 2, 3)
        scale = torch.tensor([2 / width, 2 / height], dtype=x.dtype, device=x.device)  # pixels -> normalised
        grid = _affine_grid(identity, (height, width)) + shift.permute(0, 2, 3, 1) * scale
        return _grid_sample(x, grid, self.fill, who)

    def __repr__(self) -> str:
        return _fmt(self, alpha=self.alpha, sigma=self.sigma, fill=self.fill)


# ---------------------------------------------------------------------------- erasing


class RandomErasing(Transform):
    """With probability ``p`` per image, paint a random rectangle with ``value``
    (Zhong et al. 2017; same parameters as ``torchvision.transforms.RandomErasing``).

    The rectangle covers a fraction ``scale`` of the image with aspect ratio in
    ``ratio``; of 10 candidate boxes the first that fits is used (if none fits the
    image is left alone, as in torchvision).  ``value`` is a number, one number per
    channel, or ``"random"`` for per-pixel standard-normal noise.  Meant to run *after*
    ``Normalize``, like torchvision's, but works on [0, 1] images just as well.
    """

    def __init__(self, p: float = 0.5, scale: Sequence[float] = (0.02, 0.33),
                 ratio: Sequence[float] = (0.3, 3.3), value: float | Sequence[float] | str = 0.0) -> None:
        self.p = _check_p(p, "RandomErasing")
        self.scale = _range(scale, "scale", "RandomErasing", low=0.0, high=1.0)
        self.ratio = _range(ratio, "ratio", "RandomErasing", low=0.0, strict_low=True)
        if isinstance(value, str) and value != "random":
            raise ValueError(f"RandomErasing: value must be a number, one number per channel or 'random', got {value!r}")
        self.value = value

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "RandomErasing")
        n, _, height, width = x.shape
        apply = _rand((n,), generator, x.device) < self.p
        top, left, h, w, found = _sample_boxes(n, height, width, self.scale, self.ratio, generator, x.device)
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (N, H)
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (N, W)
        mask = in_rows[:, None, :, None] & in_cols[:, None, None, :] & (apply & found).view(-1, 1, 1, 1)
        if isinstance(self.value, str):
            fill = _randn(x.shape, generator, x.device).to(x.dtype)
        else:
            fill = _per_channel(self.value, x, "RandomErasing", "value")
        return torch.where(mask, fill, x)

    def __repr__(self) -> str:
        return _fmt(self, p=self.p, scale=self.scale, ratio=self.ratio, value=self.value)


class Cutout(Transform):
    """With probability ``p`` per image, set a ``size`` x ``size`` square to ``value``
    (DeVries & Taylor 2017).  The square's centre is uniform over the image, so it may be
    clipped by the border; this is what the paper does and what makes it work best.
    """

    def __init__(self, size: int, p: float = 1.0, value: float = 0.0) -> None:
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"Cutout: size is the side of the square in pixels and must be a positive int, got {size!r}")
        self.size = size
        self.p = _check_p(p, "Cutout")
        self.value = value

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "Cutout")
        n, _, height, width = x.shape
        u = _rand((n, 3), generator, x.device)
        cy = (u[:, 0] * height).long().clamp(max=height - 1)
        cx = (u[:, 1] * width).long().clamp(max=width - 1)
        y0, x0 = cy - self.size // 2, cx - self.size // 2
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        in_rows = (rows >= y0[:, None]) & (rows < (y0 + self.size)[:, None])
        in_cols = (cols >= x0[:, None]) & (cols < (x0 + self.size)[:, None])
        mask = in_rows[:, None, :, None] & in_cols[:, None, None, :] & (u[:, 2] < self.p).view(-1, 1, 1, 1)
        return x.masked_fill(mask, self.value)

    def __repr__(self) -> str:
        return _fmt(self, size=self.size, p=self.p, value=self.value)


# ------------------------------------------------------------------------ photometric


class GaussianNoise(Transform):
    """Add independent Gaussian noise with standard deviation ``std`` to every pixel.

    ``std`` is the standard deviation, not the variance: the noise is ``std * randn``.
    (The student report this course replicates multiplied by ``std ** 2``, so its
    "std = 0.1" runs actually used std 0.01.)  ``clip`` clamps the result to [0, 1];
    turn it off when the input is already normalised.
    """

    def __init__(self, std: float = 0.1, clip: bool = True) -> None:
        if not isinstance(std, (int, float)) or std < 0:
            raise ValueError(f"GaussianNoise: std is a standard deviation and must be >= 0, got {std!r}")
        self.std = float(std)
        self.clip = clip

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "GaussianNoise")
        out = x + self.std * _randn(x.shape, generator, x.device).to(x.dtype)
        return out.clamp(0.0, 1.0) if self.clip else out

    def __repr__(self) -> str:
        return _fmt(self, std=self.std, clip=self.clip)


class ColorJitter(Transform):
    """Random brightness, contrast and saturation, a factor per image for each.

    Each argument b gives factors uniform in [max(0, 1 - b), 1 + b] (or pass a (min, max)
    pair), as in torchvision:

    - brightness: ``x * f``;
    - contrast: blend with the image's mean grey level, ``f * x + (1 - f) * mean``;
    - saturation: blend with the image's grey version (ITU-R 601).

    They are applied in that fixed order (torchvision shuffles the order per call),
    clamping to [0, 1] after each.  On 1-channel images saturation is a no-op (a grey
    image is its own grey version) and contrast uses the mean intensity.
    Hue jitter is not offered.
    """

    def __init__(self, brightness: float | Sequence[float] = 0, contrast: float | Sequence[float] = 0,
                 saturation: float | Sequence[float] = 0) -> None:
        self.brightness = _factor_range(brightness, "brightness", "ColorJitter")
        self.contrast = _factor_range(contrast, "contrast", "ColorJitter")
        self.saturation = _factor_range(saturation, "saturation", "ColorJitter")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "ColorJitter", color=True)
        u = _rand((x.shape[0], 3), generator, x.device).to(x.dtype)
        factor = lambda i, r: _uniform(u[:, i], *r).view(-1, 1, 1, 1)  # noqa: E731
        if self.brightness != (1.0, 1.0):
            x = (x * factor(0, self.brightness)).clamp(0.0, 1.0)
        if self.contrast != (1.0, 1.0):
            mean = _rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
            f = factor(1, self.contrast)
            x = (f * x + (1 - f) * mean).clamp(0.0, 1.0)
        if self.saturation != (1.0, 1.0) and x.shape[1] == 3:
            f = factor(2, self.saturation)
            x = (f * x + (1 - f) * _rgb_to_gray(x)).clamp(0.0, 1.0)
        return x

    def __repr__(self) -> str:
        return _fmt(self, brightness=self.brightness, contrast=self.contrast, saturation=self.saturation)


class Grayscale(Transform):
    """Replace each image by its ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B), keeping
    the channel count so it can sit inside a colour pipeline.  1-channel input passes through.
    """

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, type(self).__name__, color=True)
        return _rgb_to_gray(x).expand_as(x).contiguous()


class RandomGrayscale(Transform):
    """Turn each image grey (channel count kept) with probability ``p``."""

    def __init__(self, p: float = 0.1) -> None:
        self.p = _check_p(p, "RandomGrayscale")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "RandomGrayscale", color=True)
        gray = _rand((x.shape[0],), generator, x.device) < self.p
        return torch.where(gray.view(-1, 1, 1, 1), _rgb_to_gray(x), x)

    def __repr__(self) -> str:
        return _fmt(self, p=self.p)


class PCALighting(Transform):
    """AlexNet's "fancy PCA" colour augmentation (Krizhevsky et al. 2012, sec. 4.1).

    For each image draw ``alpha ~ N(0, alphastd)`` (3 numbers) and add the colour
    ``eigvecs @ (alpha * eigvals)`` to every pixel: a shift along the principal axes of
    the training set's RGB distribution, so the augmented colours stay natural.

    ``eigvals`` (3,) and ``eigvecs`` (3, 3, eigenvectors in columns) are the
    eigen-decomposition of the RGB covariance in [0, 1]-pixel units; get them from
    :func:`pca_lighting_from_data`.  The result is not clipped unless ``clip=True``
    (clipping would bias the colour statistics the shift is meant to preserve on average).
    """

    def __init__(self, eigvals: Tensor | Sequence[float], eigvecs: Tensor | Sequence[Sequence[float]],
                 alphastd: float = 0.1, clip: bool = False) -> None:
        eigvals = torch.as_tensor(eigvals, dtype=torch.float32)
        eigvecs = torch.as_tensor(eigvecs, dtype=torch.float32)
        if eigvals.shape != (3,) or eigvecs.shape != (3, 3):
            raise ValueError(f"PCALighting: expected eigvals of shape (3,) and eigvecs of shape (3, 3), got "
                             f"{tuple(eigvals.shape)} and {tuple(eigvecs.shape)}; use pca_lighting_from_data(images)")
        if (eigvals < 0).any():
            raise ValueError(f"PCALighting: eigvals are covariance eigenvalues and must be >= 0, got {eigvals.tolist()}")
        if alphastd < 0:
            raise ValueError(f"PCALighting: alphastd is a standard deviation and must be >= 0, got {alphastd}")
        self.eigvals, self.eigvecs, self.alphastd, self.clip = eigvals, eigvecs, float(alphastd), clip

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "PCALighting")
        if x.shape[1] != 3:
            raise ValueError(f"PCALighting works on RGB batches (3 channels), got {x.shape[1]} channels")
        alpha = self.alphastd * _randn((x.shape[0], 3), generator, x.device)
        eigvals = self.eigvals.to(x.device)
        eigvecs = self.eigvecs.to(x.device)
        rgb = (alpha * eigvals) @ eigvecs.T  # (N, 3): row i is eigvecs @ (alpha_i * eigvals)
        out = x + rgb.to(x.dtype).view(-1, 3, 1, 1)
        return out.clamp(0.0, 1.0) if self.clip else out

    def __repr__(self) -> str:
        vals = [round(v, 5) for v in self.eigvals.tolist()]
        return f"PCALighting(eigvals={vals}, alphastd={self.alphastd}, clip={self.clip})"


def pca_lighting_from_data(images: Tensor, max_pixels: int = 1_000_000, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Eigen-decomposition of the RGB covariance of a set of images, for :class:`PCALighting`.

    ``images`` is uint8 (0-255) or float ([0, 1]) of shape (N, 3, H, W).  At most
    ``max_pixels`` pixels, chosen at random with ``seed``, enter the covariance (plenty for
    a 3x3 matrix).  Returns ``(eigvals, eigvecs)`` in [0, 1]-pixel units, float32 on the
    CPU: eigenvalues descending and >= 0, eigenvectors as orthonormal columns, each signed
    so that its largest component is positive.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"pca_lighting_from_data expects RGB images of shape (N, 3, H, W), got {shape}")
    if max_pixels < 2:
        raise ValueError(f"pca_lighting_from_data: max_pixels must be >= 2, got {max_pixels}")
    pixels = images.detach().permute(1, 0, 2, 3).reshape(3, -1)
    if pixels.shape[1] < 2:
        raise ValueError("pca_lighting_from_data needs at least 2 pixels")
    if pixels.shape[1] > max_pixels:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(pixels.shape[1], (max_pixels,), generator=g).to(pixels.device)
        pixels = pixels[:, idx]
    pixels = pixels.double()
    if not images.is_floating_point():
        pixels = pixels / 255.0
    eigvals, eigvecs = torch.linalg.eigh(torch.cov(pixels))
    eigvals, eigvecs = eigvals.flip(0).clamp(min=0.0), eigvecs.flip(1)
    biggest = eigvecs.abs().argmax(dim=0)
    signs = torch.sign(eigvecs[biggest, torch.arange(3)])
    eigvecs = eigvecs * signs
    return eigvals.float().cpu(), eigvecs.float().cpu()


# -------------------------------------------------------------------------- normalise


class Normalize(Transform):
    """``(x - mean) / std`` per channel; deterministic (the generator is ignored).

    Put it last in a ``Compose`` so that the whole input pipeline is one object.
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = tuple(torch.as_tensor(mean, dtype=torch.float64).flatten().tolist())
        self.std = tuple(torch.as_tensor(std, dtype=torch.float64).flatten().tolist())
        if not self.mean or not self.std:
            raise ValueError("Normalize: mean and std need one value, or one per channel, each")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Normalize: std must be > 0 for every channel, got {self.std}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x, "Normalize")
        mean = _per_channel(self.mean, x, "Normalize", "mean")
        std = _per_channel(self.std, x, "Normalize", "std")
        return (x - mean) / std

    def __repr__(self) -> str:
        return _fmt(self, mean=self.mean, std=self.std)
