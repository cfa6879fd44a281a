"""Test-suite settings: headless plots, silent progress bars, the data directory.

CI and the README's test command point ``COURSE_DATA`` at the offline copy of the
datasets (``../shared/data``); tests that need real data skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["COURSE_PROGRESS"] = "0"

REPO = Path(__file__).resolve().parent.parent


def real_data_dir() -> Path | None:
    """The configured data directory if it holds MNIST, else None."""
    d = os.environ.get("COURSE_DATA")
    if d and (Path(d) / "MNIST" / "raw").exists():
        return Path(d)
    return None


@pytest.fixture
def tiny_classification():
    """A tiny, learnable 4-class image problem: (images uint8 (N,1,8,8), labels)."""
    import torch

    g = torch.Generator().manual_seed(0)
    n, k = 256, 4
    labels = torch.arange(n) % k
    images = torch.randint(0, 60, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    for c in range(k):  # each class lights up its own quadrant
        r, q = divmod(c, 2)
        images[labels == c, :, 4 * r : 4 * r + 4, 4 * q : 4 * q + 4] += 150
    return images, labels
