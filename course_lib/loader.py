"""An in-memory batch loader: the fast path for small image datasets.

Tutorials wrap each image in a PIL object, transform it one at a time and collate
the results in worker processes.  For datasets that fit in memory (all of this
course's) that is pure overhead.  ``TensorLoader`` keeps the whole dataset as one
uint8 tensor, draws a shuffled index permutation per epoch, moves each batch to the
device, converts it to float and augments the *whole batch* at once (each image
with its own random parameters, see ``course_lib.augment``).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

Transform = Callable[..., Tensor]


class TensorLoader:
    """Iterate over ``(x, y)`` batches of in-memory tensors.

    Args:
        images: ``(N, C, H, W)`` tensor, uint8 (scaled to [0, 1]) or float (used as is).
        labels: ``(N,)`` int64 tensor (or any per-sample tensor).
        batch_size: images per batch.
        shuffle: draw a new permutation every epoch (from ``seed`` and the epoch).
        transform: batched transform ``t(x, generator)`` applied on the device after
            scaling, e.g. ``Compose([RandomCrop(32, 4), RandomHorizontalFlip()])``.
        normalize: optional ``(mean, std)`` per channel, applied after ``transform``.
        device: where batches go; ``None`` keeps them on the tensors' device.
        drop_last: drop the last incomplete batch (useful with BatchNorm).
        seed: base seed of the shuffling and augmentation generator; epoch ``e``
            uses ``seed + e`` so a resumed run sees the same batches.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int = 256,
        shuffle: bool = False,
        transform: Transform | None = None,
        normalize: tuple[Tensor | list[float], Tensor | list[float]] | None = None,
        device: torch.device | str | None = None,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W); got shape {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and batch_size > len(images):
            raise ValueError(
                f"batch_size {batch_size} is larger than the dataset ({len(images)} images) "
                "and drop_last=True would yield no batch; use a smaller batch_size"
            )
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.transform = transform
        self.device = torch.device(device) if device is not None else images.device
        self.seed, self.epoch = seed, 0
        self.mean = self.std = None
        if normalize is not None:
            c = images.shape[1]
            self.mean = torch.as_tensor(normalize[0], dtype=torch.float32, device=self.device).view(1, c, 1, 1)
            self.std = torch.as_tensor(normalize[1], dtype=torch.float32, device=self.device).view(1, c, 1, 1)

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation and augmentation the next iteration uses."""
        self.epoch = epoch

    def _to_float(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.float().div_(255) if x.dtype == torch.uint8 else x.float()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.images)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self._to_float(self.images[idx])
            if self.transform is not None:
                x = self.transform(x, generator=gen)
            if self.mean is not None:
                x = (x - self.mean) / self.std
            yield x, self.labels[idx].to(self.device, non_blocking=True)
        self.epoch += 1
