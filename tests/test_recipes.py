"""Training recipes and `course pretrain`: real (tiny) training, the augmentation, the CLI."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from course_lib import augment as A
from course_lib.checkpoints import load_checkpoint
from course_lib.data import ImageDataset
from course_lib.models import AlexNet
from course_lib.pretrain import RECIPES, cli
from course_lib.recipes import ALEXNET_CIFAR10, SGDRecipe, alexnet_config, alexnet_for, alexnet_transform, train_classifier


def _colour_blobs(n: int = 240, size: int = 16, seed: int = 0) -> ImageDataset:
    """3 classes of 16 px RGB images: a red, green or blue square at a random place."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 50, (n, 3, size, size), generator=g, dtype=torch.uint8)
    for i in range(n):
        r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
        images[i, labels[i], r : r + 6, c : c + 6] = 220
    return ImageDataset(images, labels, ["red", "green", "blue"], "blobs", "train")


def test_train_classifier_learns_and_records_validation():
    train, val = _colour_blobs(128, seed=0), _colour_blobs(30, seed=1)
    torch.manual_seed(0)
    model = alexnet_for(train, width=0.125)
    recipe = replace(ALEXNET_CIFAR10, epochs=3, batch_size=32, lr=0.05)
    history = train_classifier(model, train, val, recipe, seed=0, device="cpu", progress=False)
    assert len(history) == 3
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.6  # chance is 1/3


def test_same_seed_same_run():
    train = _colour_blobs(32)
    recipe = replace(ALEXNET_CIFAR10, epochs=1, batch_size=16)
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = alexnet_for(train, width=0.125)
        losses.append(train_classifier(model, train, None, recipe, seed=3, device="cpu", progress=False)["train_loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_transform_follows_the_recipe():
    rgb = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    names = [type(t).__name__ for t in alexnet_transform(rgb)]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "PCALighting"]
    assert alexnet_transform(rgb)[0].padding == 4  # one eighth of 32 px
    assert alexnet_transform(rgb[..., :16, :16])[0].padding == 2
    assert [type(t).__name__ for t in alexnet_transform(rgb, replace(ALEXNET_CIFAR10, pca_lighting=False))] == [
        "RandomCrop", "RandomHorizontalFlip"]
    gray = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    assert not any(isinstance(t, A.PCALighting) for t in alexnet_transform(gray))  # no colour to shift
    out = alexnet_transform(rgb)(rgb.float() / 255, generator=torch.Generator().manual_seed(0))
    assert out.shape == (32, 3, 32, 32)


def test_headline_model_fits_every_dataset_size():
    for size, classes in ((32, 10), (32, 100), (16, 1000), (32, 1000)):
        model = AlexNet(num_classes=classes, **alexnet_config(size, width=0.125))
        assert model(torch.zeros(2, 3, size, size)).shape == (2, classes)
    assert alexnet_config(32, norm="lrn")["norm"] == "lrn"


def test_recipe_and_inputs_are_checked():
    with pytest.raises(ValueError, match="schedule must be one of"):
        SGDRecipe(schedule="cosine-restarts")
    with pytest.raises(ValueError, match="epochs and batch_size"):
        SGDRecipe(epochs=0)
    with pytest.raises(ValueError, match="needs val data"):
        train_classifier(alexnet_for(_colour_blobs(8), width=0.125), _colour_blobs(8), None,
                         replace(ALEXNET_CIFAR10, schedule="plateau"), device="cpu")
    odd = ImageDataset(torch.zeros(2, 3, 16, 12, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ["a"])
    with pytest.raises(ValueError, match="square"):
        alexnet_for(odd)


def test_pretrain_cli_lists_and_rejects_unknown_names(capsys):
    assert cli(["--list"]) == 0
    assert "alexnet-cifar10" in capsys.readouterr().out
    assert cli(["alexnet-imagenet"]) == 2
    err = capsys.readouterr().err
    assert "unknown checkpoint 'alexnet-imagenet'" in err and "RECIPES" in err


def test_pretrain_cli_runs_a_registered_recipe(tmp_path, monkeypatch):
    seen = {}

    def fake_recipe(out, epochs, seed, root, device):
        seen.update(out=out, epochs=epochs, seed=seed)
        return tmp_path / "x.pt"

    monkeypatch.setitem(RECIPES, "toy", (fake_recipe, "a test recipe"))
    assert cli(["toy", "--epochs", "2", "--seed", "5", "--out", str(tmp_path / "x.pt")]) == 0
    assert seen == {"out": str(tmp_path / "x.pt"), "epochs": 2, "seed": 5}


def test_shipped_checkpoint_matches_the_recipe():
    from course_lib.paths import checkpoints_dir

    path = checkpoints_dir() / "alexnet-cifar10.pt"
    if not path.exists():
        pytest.skip("checkpoints/alexnet-cifar10.pt not built yet (course pretrain alexnet-cifar10)")
    state, meta = load_checkpoint(path)
    model = AlexNet(**meta["model_config"])
    model.load_state_dict(state)
    assert meta["dataset"] == "cifar10" and meta["split"]["n_train"] == 45000
    assert meta["recipe"]["epochs"] == meta["epochs"] and meta["command"] and meta["wall_time_s"] > 0
    assert path.stat().st_size < 12e6


def test_alexnet_run_returns_checkpoint_metadata(tmp_path):
    from course_lib.checkpoints import load_or_train
    from course_lib.recipes import alexnet_run

    train, val = _colour_blobs(48, seed=0), _colour_blobs(12, seed=1)
    recipe = replace(ALEXNET_CIFAR10, epochs=2, batch_size=16)
    torch.manual_seed(0)
    model = alexnet_for(train, width=0.125)
    model, meta = load_or_train("blobs", model, lambda m: alexnet_run(m, train, val, recipe, device="cpu", progress=False),
                                profile="smoke", reference_dir=tmp_path, save_dir=tmp_path, verbose=False)
    assert meta["epochs"] == 2 and meta["recipe"]["batch_size"] == 16 and len(meta["history"]) == 2
    assert set(meta["metrics"]) == {"val_top1", "val_top1_flip"}  # top-5 needs 5 classes
    assert len(meta["normalize"]["mean"]) == 3 and meta["train_seconds"] > 0 and meta["command"]
    again, meta2 = load_or_train("blobs", alexnet_for(train, width=0.125), lambda m: {}, profile="smoke",
                                 reference_dir=tmp_path, save_dir=tmp_path, verbose=False)
    assert meta2["metrics"] == meta["metrics"]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
