"""Histograms of oriented gradients (HOG): a hand-engineered view of an image, batched in torch.

Dalal and Triggs (CVPR 2005) describe an image by the directions of its edges: the
gradient at every pixel votes for its orientation (unsigned, ``bins`` bins over 0-180°,
weighted by its magnitude and split linearly between the two nearest bins), the votes
are summed over ``cell`` x ``cell`` pixel cells, and every 2 x 2 block of cells is
L2-normalised, clipped at 0.2 and normalised again ("L2-Hys"), which makes the
descriptor blind to brightness and contrast.

Notebook 02 uses it as a third *view* for label propagation (``course_lib.labelprop``):
images whose edges run the same way (a sandal's straps, a shirt's collar) can be
neighbours under HOG even where their pixel intensities differ, so its graph's mistakes
differ from those of MoCo's features and of the raw pixels.  On Fashion-MNIST's
validation split HOG alone labelled the pool better than the MoCo features did
(``docs/experiments/02_labelprop.py``).  One pass over 60,000 28 px images takes
4 s on the 2-core course machine (one thread; 3 s with two).

Simplifications against the original: no spatial (trilinear) interpolation of the
votes between cells and no Gaussian weighting inside a block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def hog_features(images: Tensor, cell: int = 4, bins: int = 9, block: int = 2, clip: float = 0.2,
                 batch_size: int = 5000) -> Tensor:
    """HOG descriptors ``(N, blocks * block**2 * bins)`` of grey images ``(N, H, W)`` or ``(N, 1, H, W)``.

    Args:
        images: uint8 (0-255) or float images, one channel.
        cell: cell side in pixels; must divide H and W (4 for 28 px: 7 x 7 cells).
        bins: orientation bins over 0-180° (unsigned gradients, as Dalal and Triggs).
        block: cells per block side; blocks overlap with a stride of one cell.
        clip: the L2-Hys clipping threshold of each normalised block.
        batch_size: images per step (memory is about ``batch_size * bins * H * W`` floats).

    For 28 px images and the defaults: 6 x 6 blocks of 2 x 2 cells of 9 bins, 1,296 numbers.
    """
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3:
        raise ValueError(f"images must be grey, shaped (N, H, W) or (N, 1, H, W); got {tuple(images.shape)} "
                         "(convert colour images to grey first)")
    h, w = images.shape[1:]
    if cell < 1 or h % cell or w % cell:
        raise ValueError(f"cell must divide the image size {h}x{w} (e.g. 4 or 7 for 28 px), got {cell}")
    if not 1 <= block <= min(h, w) // cell:
        raise ValueError(f"block must be between 1 and {min(h, w) // cell} cells for {cell} px cells, got {block}")
    if bins < 2 or clip <= 0:
        raise ValueError(f"need bins >= 2 and clip > 0, got bins={bins}, clip={clip}")
    return torch.cat([_hog(images[i:i + batch_size], cell, bins, block, clip)
                      for i in range(0, len(images), batch_size)])


def _hog(x: Tensor, cell: int, bins: int, block: int, clip: float) -> Tensor:
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    x = x.unsqueeze(1)
    gx = F.pad(x, (1, 1, 0, 0), mode="replicate")
    gx = gx[..., 2:] - gx[..., :-2]  # centred differences [-1, 0, 1], as Dalal and Triggs
    gy = F.pad(x, (0, 0, 1, 1), mode="replicate")
    gy = gy[..., 2:, :] - gy[..., :-2, :]
    magnitude = torch.sqrt(gx ** 2 + gy ** 2)
    position = (torch.atan2(gy, gx) % math.pi) / math.pi * bins  # unsigned orientation, in bins
    lower = position.floor().long().clamp(max=bins - 1)
    upper_share = position - lower
    votes = torch.zeros(x.shape[0], bins, *x.shape[2:])
    votes.scatter_add_(1, lower, magnitude * (1 - upper_share))
    votes.scatter_add_(1, (lower + 1) % bins, magnitude * upper_share)  # 180° wraps to 0°
    cells = F.avg_pool2d(votes, cell)  # (N, bins, H / cell, W / cell)
    blocks = F.unfold(cells, block).transpose(1, 2)  # (N, blocks, bins * block**2)
    blocks = F.normalize(F.normalize(blocks, dim=2).clamp(max=clip), dim=2)
    return blocks.flatten(1)


__all__ = ["hog_features"]
