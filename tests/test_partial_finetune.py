"""course_lib.partial_finetune: the trunk/top split is exact, the head has the report's shape, batches cover the data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.partial_finetune import RandomBatches, report_head, split_encoder, trunk_activations
from course_lib.ssl.encoders import ConvEncoder


@pytest.mark.parametrize("blocks,n_last", [(0, 1), (0, 2), (1, 1)])
def test_top_of_trunk_equals_the_encoder(blocks, n_last):
    torch.manual_seed(0)
    enc = ConvEncoder(1, (4, 8, 16), blocks=blocks).eval()
    x = torch.rand(5, 1, 28, 28)
    trunk, top = split_encoder(enc, n_last)
    assert torch.allclose(top(trunk(x)), enc(x), atol=1e-5)
    n_top = sum(p.numel() for p in top.parameters())
    assert 0 < n_top < sum(p.numel() for p in enc.parameters())
    acts = trunk_activations(trunk, (x * 255).to(torch.uint8))
    assert acts.shape == (5, *trunk(x).shape[1:])
    with pytest.raises(ValueError, match="n_last"):
        split_encoder(enc, 3)
    with pytest.raises(ValueError, match="ConvEncoder"):
        split_encoder(nn.Linear(2, 2))


def test_trunk_activations_keep_the_modules_mode():
    enc = ConvEncoder(1, (4, 8))
    trunk, _ = split_encoder(enc, 1)
    trunk.train()
    trunk_activations(trunk, torch.rand(3, 1, 28, 28))
    assert trunk.training


def test_report_head_shape():
    head = report_head(32, num_classes=10, hidden=(16, 8), dropout=0.5)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "PReLU", "Dropout"] * 2 + ["Linear"]
    assert head(torch.rand(4, 32)).shape == (4, 10)


def test_random_batches_cover_the_data_once_before_repeating():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    rb = RandomBatches(x, y, batch_size=3, batches=3, seed=0)
    assert len(rb) == 3
    seen = torch.cat([b for _, b in rb])
    assert len(seen) == 9 and len(set(seen.tolist())) == 9  # one permutation, no repeats
    again = [b for _, b in RandomBatches(x, y, batch_size=3, batches=3, seed=0)]
    assert torch.equal(torch.cat(again), seen)  # deterministic
    assert len(list(rb)) == 3  # a new permutation once the old one runs out
    with pytest.raises(ValueError):
        RandomBatches(x, y[:5], 3, 3)
