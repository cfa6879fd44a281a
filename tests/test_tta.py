"""FlipAverage / ShiftAverage: averaged probabilities over an image and its mirror / shifted copies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.models import alexnet_cifar
from course_lib.tta import FlipAverage, ShiftAverage
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


def test_shift_average_uses_five_shifted_views():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 6, 6)
    views = ShiftAverage(nn.Identity()).views(x)
    assert views.shape == (15, 1, 6, 6) and torch.equal(views[:3], x)
    assert torch.equal(views[3:6, ..., 1:], x[..., :-1])  # moved right by one pixel
    assert torch.equal(views[6:9, ..., :-1], x[..., 1:])  # moved left
    assert torch.equal(views[9:12, ..., 1:, :], x[..., :-1, :])  # moved down
    assert torch.equal(views[12:15, ..., :-1, :], x[..., 1:, :])  # moved up
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 4)).eval()
    out = ShiftAverage(model)(x)
    manual = torch.stack([model(v).softmax(1) for v in views.split(3)]).mean(0)
    assert out.shape == (3, 4) and torch.allclose(out.exp(), manual, atol=1e-6)
    assert set(ShiftAverage(model).state_dict()) == {f"model.{k}" for k in model.state_dict()}
    with pytest.raises(ValueError, match="pixels"):
        ShiftAverage(model, pixels=0)
