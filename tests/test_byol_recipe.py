"""Tests of the BYOL recipe (notebook 03): config validation, pretraining on tiny random
data, the EMA schedule, the target's lack of gradients, and the ``byol-mnist`` entry."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.checkpoints import load_checkpoint, save_checkpoint
from course_lib.pretrain import RECIPES
from course_lib.ssl.byol_recipe import (BYOL_CONFIGS, BYOLConfig, ScheduledBYOL, build_byol, byol_views,
                                        expected_taus, pretrain_byol)
from course_lib.ssl.common import cosine_tau
from course_lib.ssl.recipes import moco_views

TINY = BYOLConfig(widths=(8, 16), projection_dim=8, hidden_dim=16, batch_size=8, epochs=1, warmup_epochs=0.0)


def tiny_images(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 1}, "batch_size"),
    ({"lr": 0.0}, "lr"),
    ({"optimizer": "lars"}, "optimizer"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"tau_base": 1.5}, "tau_base"),
    ({"tau_schedule": "linear"}, "tau_schedule"),
    ({"projection_dim": 0}, "projection_dim"),
    ({"crop_scale": (0.8, 0.5)}, "crop_scale"),
    ({"erase_p": 2.0}, "erase_p"),
    ({"elastic_alpha": -1.0}, "elastic_alpha"),
    ({"elastic_sigma": 0.0}, "elastic_sigma"),
    ({"jitter": -0.1}, "jitter must be >= 0"),
    ({"widths": ()}, "widths"),
])
def test_config_validation_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BYOLConfig(**kwargs)


def test_config_defaults_and_views_reuse_moco():
    cfg = BYOL_CONFIGS["mnist"]
    assert cfg.encoder(1).feature_dim == cfg.widths[-1]
    assert repr(byol_views(cfg)) == repr(moco_views(cfg))  # same augmentation pipeline, not a copy
    assert BYOLConfig(**cfg.to_dict()) == cfg
    assert "byol-mnist" in RECIPES


def test_two_step_pretrain_writes_a_loadable_checkpoint(tmp_path):
    torch.manual_seed(0)
    enc = TINY.encoder(1)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    hist = pretrain_byol(enc, tiny_images(), TINY, epochs=1, max_steps_per_epoch=2, log=None)
    assert len(hist.step_losses) == 2 and all(math.isfinite(v) and 0 <= v <= 4 for v in hist.step_losses)
    assert any(not torch.equal(before[k], v) for k, v in enc.state_dict().items()), "encoder weights unchanged"
    rec = hist.records[-1]
    assert {"tau", "collapse_std", "loss"} <= set(rec)
    path = save_checkpoint(tmp_path / "byol-tiny.pt", enc, {"name": "byol-tiny", "epochs": 1, "metrics": {}})
    fresh = TINY.encoder(1)
    _, meta = load_checkpoint(path, fresh)
    assert meta["name"] == "byol-tiny" and meta["command"]
    for k, v in enc.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)


def test_adamw_option_trains():
    cfg = BYOLConfig(**{**TINY.to_dict(), "optimizer": "adamw", "lr": 1e-3})
    hist = pretrain_byol(cfg.encoder(1), tiny_images(), cfg, epochs=1, max_steps_per_epoch=1, log=None)
    assert len(hist.step_losses) == 1 and math.isfinite(hist.step_losses[0])


def test_target_gets_no_gradient_and_is_not_optimised():
    torch.manual_seed(0)
    byol = build_byol(TINY.encoder(1), TINY)
    model = ScheduledBYOL(byol, total_steps=3)
    trainable = {id(p) for p in model.trainable_parameters()}
    target = list(byol.target_encoder.parameters()) + list(byol.target_projector.parameters())
    assert target and not any(id(p) in trainable for p in target)
    x = torch.rand(8, 1, 28, 28)
    out = model(x, x.flip(-1))
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in target)
    assert any(p.grad is not None for p in byol.encoder.parameters())


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_tau_follows_the_schedule_during_training(schedule):
    cfg = BYOLConfig(**{**TINY.to_dict(), "tau_schedule": schedule, "tau_base": 0.9})
    hist = pretrain_byol(cfg.encoder(1), tiny_images(48), cfg, epochs=2, max_steps_per_epoch=3, log=None)
    K = 6
    assert len(hist.taus) == K, "one EMA update per optimiser step, the last one included"
    assert hist.taus == pytest.approx(expected_taus(K, 0.9, schedule))
    if schedule == "cosine":
        assert hist.taus[0] == pytest.approx(0.9) and hist.taus[-1] == pytest.approx(cosine_tau(K - 1, K, 0.9))
        assert all(a < b for a, b in zip(hist.taus, hist.taus[1:])), "cosine tau must rise monotonically"
        assert hist.records[0]["tau"] == pytest.approx(cosine_tau(2, K, 0.9))
    else:
        assert set(hist.taus) == {0.9}


def test_target_moves_by_ema_of_the_online_network():
    torch.manual_seed(0)
    byol = build_byol(TINY.encoder(1), TINY, tau_base=0.5)
    model = ScheduledBYOL(byol, total_steps=1, schedule="constant")
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    t0 = [p.clone() for p in byol.target_encoder.parameters()]
    x = torch.rand(8, 1, 28, 28)
    model(x, x.flip(-1)).loss.backward()
    opt.step()
    model.finish()
    for before, p_t, p_o in zip(t0, byol.target_encoder.parameters(), byol.encoder.parameters()):
        assert torch.allclose(p_t, 0.5 * before + 0.5 * p_o, atol=1e-6)


def test_scheduled_byol_state_roundtrip_keeps_step_counter():
    torch.manual_seed(0)
    model = ScheduledBYOL(build_byol(TINY.encoder(1), TINY), total_steps=4)
    x = torch.rand(8, 1, 28, 28)
    model(x, x)
    model(x, x)
    other = ScheduledBYOL(build_byol(TINY.encoder(1), TINY), total_steps=4)
    other.load_state_dict(model.state_dict())
    assert other.steps_done == 2 and other.taus == model.taus and len(other.collapse) == 2
    with pytest.raises(ValueError, match="schedule"):
        ScheduledBYOL(build_byol(TINY.encoder(1), TINY), total_steps=4, schedule="linear")
