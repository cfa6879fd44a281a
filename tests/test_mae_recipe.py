"""The MAE recipe: training on tiny images, multi-pool features, galleries, ``course pretrain mae-*``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import REPO
from course_lib.checkpoints import load_checkpoint
from course_lib.data import ImageDataset
from course_lib.pretrain import RECIPES
from course_lib.ssl.mae_recipe import (
    MAE_CONFIGS,
    MAELoss,
    encoder_features,
    mae_recipe,
    mae_views,
    masked_reconstructions,
    param_groups,
    pretrain_mae,
)

TINY = replace(MAE_CONFIGS["cifar10"], image_size=8, patch_size=4, enc_dim=32, enc_depth=1, enc_heads=2,
               dec_dim=16, dec_depth=1, dec_heads=2, batch_size=16, lr=3e-3, warmup_epochs=0.5,
               crop_scale=(0.8, 1.0), norm_pix_loss=False)


def _smooth_images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """uint8 colour ramps: easy to inpaint, so a few steps visibly lower the loss."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    a, b, c = (torch.rand(n, 3, 1, 1, generator=g) for _ in range(3))
    img = a * ramp.view(1, 1, -1, 1) + b * ramp.view(1, 1, 1, -1) + 0.3 * c
    return (img.clamp(0, 1) * 255).to(torch.uint8)


def test_pretraining_lowers_the_masked_loss_and_resumes(tmp_path):
    images = _smooth_images(128)
    torch.manual_seed(0)
    mae = TINY.model()
    resume = tmp_path / "mae.resume.pt"
    history = pretrain_mae(mae, images, TINY, epochs=6, checkpoint=resume, device="cpu", log=None)
    losses = history.column("loss")
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0]
    again = TINY.model()
    resumed = pretrain_mae(again, images, TINY, epochs=6, checkpoint=resume, device="cpu", log=None)
    assert resumed.column("loss") == losses  # nothing left to train: the resume file had all 6 epochs
    for a, b in zip(mae.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_pretrain_rejects_images_of_another_size():
    with pytest.raises(ValueError, match="use a config made for this dataset"):
        pretrain_mae(TINY.model(), torch.zeros(4, 1, 28, 28, dtype=torch.uint8), TINY, log=None)


def test_views_loss_and_weight_decay_groups():
    view = mae_views(TINY)(torch.rand(5, 3, 8, 8), torch.Generator().manual_seed(0))
    assert len(view) == 1 and view[0].shape == (5, 3, 8, 8)
    mae = TINY.model()
    loss = MAELoss(mae)(torch.rand(4, 3, 8, 8))
    assert loss.dim() == 0 and loss > 0
    decay, no_decay = param_groups(mae, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert any(p is mae.patch_embed.weight for p in decay["params"])
    assert any(p is mae.cls_token for p in no_decay["params"]) and any(p is mae.norm.weight for p in no_decay["params"])


def test_encoder_features_match_the_model_and_leave_it_untouched():
    torch.manual_seed(0)
    mae = TINY.model().train()
    images = _smooth_images(10)
    feats = encoder_features(mae, images, batch_size=4)
    x = images.float() / 255
    assert set(feats) == {"cls", "mean", "flat"}
    assert feats["flat"].shape == (10, 4 * 32) and feats["cls"].shape == (10, 32)
    with torch.no_grad():
        for pool, f in feats.items():
            torch.testing.assert_close(f, mae.eval().features(x, pool))
    mae.train()
    assert mae.training and not feats["mean"].requires_grad
    assert set(encoder_features(mae, images, ("mean",))) == {"mean"}
    with pytest.raises(ValueError, match="subset of"):
        encoder_features(mae, images, ("avg",))


def test_reconstructions_keep_visible_patches_and_grey_out_the_rest():
    torch.manual_seed(0)
    mae = TINY.model()
    images = _smooth_images(3, size=8)
    recs = masked_reconstructions(mae, images, (0.25, 0.75), seed=1)
    x = images.float() / 255
    for ratio, (masked, recon) in recs.items():
        visible = (masked == x).all(1)  # (N, H, W): pixels shown to the model
        assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1
        assert torch.equal(recon[visible.unsqueeze(1).expand_as(x)], x[visible.unsqueeze(1).expand_as(x)])
        hidden = 1 - visible.float().mean().item()
        assert hidden == pytest.approx(ratio, abs=0.01)  # 4 patches: 1 or 3 masked
    again = masked_reconstructions(mae, images, (0.75,), seed=1)[0.75]
    assert torch.equal(again[0], recs[0.75][0])


def test_recipe_trains_evaluates_and_saves_provenance(tmp_path, monkeypatch):
    """End to end on 96 fake 32 px images: the checkpoint loads into the notebook's model."""
    import course_lib.data as data

    g = torch.Generator().manual_seed(0)
    fake = ImageDataset(torch.randint(0, 256, (96, 3, 32, 32), generator=g, dtype=torch.uint8),
                        torch.arange(96) % 4, ["a", "b", "c", "d"], "cifar10", "train")
    monkeypatch.setattr(data, "load_dataset", lambda name, split="train", root=None: fake)
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    out = mae_recipe("cifar10")(out=tmp_path / "mae.pt", epochs=1, log=lambda _m: None)
    model = MAE_CONFIGS["cifar10"].model()
    _, meta = load_checkpoint(out, model)
    for key in ("dataset_checksum", "epochs", "wall_time_s", "metrics", "model_config", "command", "git_commit"):
        assert key in meta, key
    assert meta["epochs"] == 1 and meta["pretrain_images"] < len(fake)  # the validation split is held out
    assert {"val_probe_mean_acc_mae", "val_probe_mean_acc_random", "val_knn_mean_acc_mae"} <= set(meta["metrics"])


def test_registered_and_shipped_checkpoint_fits_the_config():
    assert "mae-cifar10" in RECIPES and "mae-cifar100" in RECIPES
    with pytest.raises(ValueError, match="known"):
        mae_recipe("mnist")
    shipped = REPO / "checkpoints" / "mae-cifar10.pt"
    if not shipped.exists():
        pytest.skip("checkpoints/mae-cifar10.pt not trained yet (course pretrain mae-cifar10)")
    _, meta = load_checkpoint(shipped, MAE_CONFIGS["cifar10"].model())
    assert meta["model_config"] == MAE_CONFIGS["cifar10"].model_kwargs()
    assert meta["metrics"]["val_probe_mean_acc_mae"] > meta["metrics"]["val_probe_mean_acc_random"]


def test_checkpoint_records_the_commit_that_launched_the_run(tmp_path, monkeypatch):
    """A commit landing while a long run trains must not be credited with the weights."""
    import course_lib.checkpoints as checkpoints
    import course_lib.data as data

    fake = ImageDataset(torch.randint(0, 256, (96, 3, 32, 32), generator=torch.Generator().manual_seed(0),
                                      dtype=torch.uint8), torch.arange(96) % 4, ["a", "b", "c", "d"], "cifar10", "train")
    monkeypatch.setattr(data, "load_dataset", lambda name, split="train", root=None: fake)
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    commits = iter(["launch0", "later11", "later11", "later11"])
    monkeypatch.setattr(checkpoints, "git_commit", lambda: next(commits))
    _, meta = load_checkpoint(mae_recipe("cifar10")(out=tmp_path / "mae.pt", epochs=1, log=lambda _m: None))
    assert meta["git_commit"] == "launch0" and meta["git_commit_at_save"] == "later11"
