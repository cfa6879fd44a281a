"""Fine-tuning only the last stage(s) of a frozen encoder, fast: train on cached activations.

A common recipe (the BYOL report's, in Keras): freeze the pretrained encoder, unfreeze
its last block(s), put a new head on top (``Dense-BN-PReLU-Dropout`` twice, then the
classifier) and train with Adam, ``ReduceLROnPlateau`` and early stopping.

With the frozen part in eval mode (BatchNorm on running statistics) and no data
augmentation, the frozen trunk computes the *same* activations for an image in every
epoch.  So compute them once (``trunk_activations``) and train the unfrozen top on the
cached tensor: the result is exactly that of the slow recipe, at the price of the
top's compute only.  (With augmentation the activations change every epoch and this
shortcut does not apply.)

``split_encoder`` cuts a ``course_lib.ssl.encoders.ConvEncoder`` into the frozen
trunk and the trainable top; ``report_head`` builds the head; ``RandomBatches`` draws
a fixed number of random batches per "epoch", so that validation, the plateau
scheduler and early stopping act more often than once per pass over a large set.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from course_lib.evaluation import extract_features

__all__ = ["RandomBatches", "report_head", "split_encoder", "trunk_activations"]


def split_encoder(encoder: nn.Module, n_last: int = 1) -> tuple[nn.Sequential, nn.Sequential]:
    """``(trunk, top)`` of a ConvEncoder-like model: ``top(trunk(x)) == encoder(x)``.

    ``encoder`` needs ``features`` (an ``nn.Sequential`` of stages: a stem
    ``conv-BN, ReLU``, then per stage ``conv-BN (stride 2), ReLU`` and ``blocks``
    residual blocks) and ``pool``.  ``top`` holds the last ``n_last`` stages, the
    pooling and a flatten.  The modules are *shared* with ``encoder`` (no copy):
    deep-copy the encoder first if it must stay unchanged.
    """
    feats = getattr(encoder, "features", None)
    if not isinstance(feats, nn.Sequential) or not hasattr(encoder, "pool"):
        raise ValueError(f"{type(encoder).__name__} has no `features` Sequential and `pool`; "
                         "split_encoder expects a course_lib ConvEncoder")
    per_stage = 2 + int(getattr(encoder, "blocks", 0))
    n_stages = (len(feats) - 2) // per_stage  # after the stem
    if not 1 <= n_last <= n_stages:
        raise ValueError(f"n_last must be between 1 and the number of downsampling stages ({n_stages}), got {n_last}")
    cut = len(feats) - n_last * per_stage
    return nn.Sequential(*feats[:cut]), nn.Sequential(*feats[cut:], encoder.pool, nn.Flatten(1))


@torch.no_grad()
def trunk_activations(trunk: nn.Module, images: Tensor, batch_size: int = 512,
                      device: str | torch.device | None = None) -> Tensor:
    """Activations ``(N, C, H, W)`` (CPU, float32) of the frozen ``trunk`` in eval mode."""
    return extract_features(trunk, images, batch_size=batch_size, device=device, flatten=False)


def report_head(in_dim: int, num_classes: int = 10, hidden: Sequence[int] = (256, 128),
                dropout: float = 0.3) -> nn.Sequential:
    """``(Linear-BatchNorm-PReLU-Dropout) x len(hidden)``, then ``Linear`` to ``num_classes``."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.PReLU(h), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class RandomBatches:
    """``batches`` shuffled batches per iteration ("epoch"), walking through the data without replacement.

    Successive epochs continue the same permutation stream, so every example is seen
    once before any is seen twice; a new permutation is drawn when one runs out.
    Deterministic for a given ``seed``.  Works with ``course_lib.train.fit``.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, batches: int, seed: int = 0) -> None:
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"need as many labels as inputs (and at least one), got {len(x)} and {len(y)}")
        if batch_size < 1 or batches < 1:
            raise ValueError(f"batch_size and batches must be >= 1, got {batch_size} and {batches}")
        self.x, self.y, self.batch_size, self.batches = x, y, min(batch_size, len(x)), batches
        self._gen = torch.Generator().manual_seed(seed)
        self._order, self._pos = torch.randperm(len(x), generator=self._gen), 0

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for _ in range(self.batches):
            if self._pos + self.batch_size > len(self._order):
                self._order, self._pos = torch.randperm(len(self.x), generator=self._gen), 0
            idx = self._order[self._pos:self._pos + self.batch_size]
            self._pos += self.batch_size
            yield self.x[idx], self.y[idx]
