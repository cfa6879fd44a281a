"""FlipAverage: averaged probabilities over an image and its mirror."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.models import alexnet_cifar
from course_lib.tta import FlipAverage
from course_lib.train import predict


def test_output_is_log_probability_and_mirror_invariant():
    torch.manual_seed(0)
    model = alexnet_cifar(width=0.125).eval()
    x = torch.rand(4, 3, 32, 32)
    tta = FlipAverage(model)
    out = tta(x)
    assert out.shape == (4, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(4), atol=1e-5)
    assert torch.allclose(out, tta(x.flip(-1)), atol=1e-5)
    manual = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(out.exp(), manual, atol=1e-5)


def test_works_with_predict_and_keeps_the_wrapped_weights():
    torch.manual_seed(0)
    model = alexnet_cifar(width=0.125)
    x, y = torch.rand(6, 3, 32, 32), torch.arange(6) % 10
    logits, labels = predict(FlipAverage(model), [(x[:3], y[:3]), (x[3:], y[3:])])
    assert logits.shape == (6, 10) and labels.tolist() == y.tolist()
    assert model.training  # predict restored the mode
    assert set(FlipAverage(model).state_dict()) == {f"model.{k}" for k in model.state_dict()}


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="nn.Module"):
        FlipAverage(lambda x: x)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        FlipAverage(nn.Identity())(torch.zeros(3, 4, 4))
