"""HOG descriptors (course_lib.hog): edges vote for their orientation; blocks are normalised."""

from __future__ import annotations

import pytest
import torch

from course_lib.hog import hog_features


def stripes(vertical: bool, n: int = 2, size: int = 28) -> torch.Tensor:
    """Images of alternating 4 px stripes: vertical stripes have horizontal gradients (orientation 0°)."""
    line = (torch.arange(size) // 4 % 2).float()
    img = line.expand(size, size) if vertical else line[:, None].expand(size, size)
    return img.expand(n, size, size).clone()


def test_shape_for_28px_defaults():
    x = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert hog_features(x).shape == (3, 6 * 6 * 2 * 2 * 9)
    assert hog_features(x.unsqueeze(1)).shape == (3, 1296)  # (N, 1, H, W) too
    assert hog_features(x, cell=7, block=1).shape == (3, 4 * 4 * 9)


def test_edges_vote_for_their_orientation():
    """Vertical stripes put all their weight in the 0° bin, horizontal ones in the 90° bin."""
    for vertical, expected_bin in ((True, 0), (False, 2)):  # bins=4: 0°, 45°, 90°, 135°
        f = hog_features(stripes(vertical), cell=4, bins=4, block=1).view(2, -1, 4)
        per_bin = f.sum(dim=(0, 1))
        assert per_bin.argmax() == expected_bin
        assert per_bin[expected_bin] > 0.99 * per_bin.sum()


def test_blocks_are_unit_norm_and_brightness_contrast_do_not_matter():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 28, 28, generator=g)
    f = hog_features(x)
    assert torch.allclose(f.view(4, 36, 36).norm(dim=2), torch.ones(4, 36), atol=1e-5)
    assert torch.allclose(hog_features(0.3 * x + 0.5), f, atol=1e-5)  # gradients scale; blocks are normalised


def test_batches_do_not_change_the_result_and_uint8_means_0_to_255():
    x = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    assert torch.allclose(hog_features(x, batch_size=3), hog_features(x), atol=1e-6)
    assert torch.allclose(hog_features(x), hog_features(x.float() / 255), atol=1e-6)


def test_bad_arguments_say_what_to_change():
    x = torch.zeros(2, 28, 28)
    with pytest.raises(ValueError, match="cell must divide"):
        hog_features(x, cell=5)
    with pytest.raises(ValueError, match="grey"):
        hog_features(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="block must be between"):
        hog_features(x, cell=7, block=5)
