"""ResNet-18 transfer: which weights are used offline, the fp16 source checkpoint, the frozen probe."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from course_lib import transfer
from course_lib.checkpoints import save_checkpoint
from course_lib.comparison import evaluate_on_test
from course_lib.evaluation import same_state, snapshot_state
from course_lib.loader import TensorLoader
from course_lib.models import PretrainedUnavailableError, resnet18_for
from course_lib.models import resnet as resnet_module
from data_fixtures import write_mnist


@pytest.fixture
def source_checkpoint(tmp_path):
    """A ResNet-18 backbone saved the way the recipe saves it: fp16, without fc."""
    torch.manual_seed(0)
    model = resnet18_for(num_classes=10, in_channels=1, small_input=False)
    backbone = copy.deepcopy(model).half()
    backbone.fc = nn.Identity()
    path = save_checkpoint(tmp_path / transfer.FASHION_CHECKPOINT, backbone, {"name": "test"})
    return path, model


@pytest.fixture
def offline(monkeypatch):
    def no_network():
        raise PretrainedUnavailableError("could not download the ImageNet ResNet-18 weights: no network")

    monkeypatch.setattr(resnet_module, "_imagenet_state_dict", no_network)


def test_auto_falls_back_to_the_course_checkpoint_offline(source_checkpoint, offline, capsys):
    path, original = source_checkpoint
    model, used = transfer.build_resnet18("auto", checkpoint=path)
    assert used == f"course:{path.name}"
    assert transfer.build_resnet18(used, checkpoint=path)[1] == used  # resolved once, no second download attempt
    assert "using the course checkpoint" in capsys.readouterr().out
    sd = model.state_dict()
    # fp16 storage: the fp32 model holds the rounded weights; the head is new (fresh init).
    assert sd["conv1.weight"].dtype == torch.float32
    assert torch.equal(sd["layer4.1.conv2.weight"], original.state_dict()["layer4.1.conv2.weight"].half().float())
    assert sd["fc.weight"].shape == (10, 512) and "fc.weight" in model.weights_info["skipped"]


def test_explicit_imagenet_offline_raises_and_missing_checkpoint_names_the_command(tmp_path, offline):
    with pytest.raises(PretrainedUnavailableError):
        transfer.build_resnet18("imagenet")
    with pytest.raises(FileNotFoundError, match="course pretrain resnet18-fashion-mnist"):
        transfer.build_resnet18("course", checkpoint=tmp_path / "absent.pt")
    model, used = transfer.build_resnet18(None, num_classes=3)
    assert used == "random" and model.fc.out_features == 3
    assert transfer.build_resnet18(used)[1] == "random"  # the returned name builds the same kind of model


def test_frozen_features_never_change_the_backbone_and_are_computed_once(source_checkpoint, tiny_classification):
    images, labels = tiny_classification
    images = nn.functional.interpolate(images.float(), size=28).to(torch.uint8)  # 8 px -> 28 px
    model, _ = transfer.build_resnet18("course", checkpoint=source_checkpoint[0])
    before = snapshot_state(model)
    frozen = transfer.FrozenFeatures(model, normalize=([0.3], [0.3]), device="cpu")
    train_x, val_x = images[:160], images[160:]
    run = frozen.probe("frozen", train_x, labels[:160], val_x, labels[160:], Cs=(0.1, 10.0))
    assert same_state(before, snapshot_state(model))  # the caller's model is untouched ...
    assert all(not p.requires_grad for p in run.model[0].parameters())  # ... and the copy inside is frozen
    assert run.trainable_params == 512 * 4 + 4 and run.params > 11_000_000
    assert set(run.info["val_acc_by_C"]) == {0.1, 10.0} and run.val_acc == max(run.info["val_acc_by_C"].values())
    assert run.val_acc > 0.5  # random-but-fixed ResNet features still separate the quadrant classes
    assert frozen(val_x) is frozen(val_x) and len(frozen._cache) == 2  # cached by tensor identity

    # Test accuracy from cached features equals running the whole network on a loader.
    again = frozen.probe("frozen 2", images[:100], labels[:100], val_x, labels[160:], Cs=(run.info["C"],))
    frozen.evaluate_on_test(again, val_x, labels[160:], speed_batch=(val_x[:8].float() / 255 - 0.3) / 0.3)
    assert again.images_per_second > 0
    twin = dataclasses.replace(again, test_acc=math.nan, test_loss=math.nan, test_preds=None)
    evaluate_on_test(twin, TensorLoader(val_x, labels[160:], 50, normalize=([0.3], [0.3])))
    assert again.test_acc == pytest.approx(twin.test_acc) and again.test_loss == pytest.approx(twin.test_loss, rel=1e-4)
    with pytest.raises(RuntimeError, match="used once"):
        frozen.evaluate_on_test(again, val_x, labels[160:])
    with pytest.raises(ValueError, match="Cs is empty"):
        frozen.probe("x", train_x, labels[:160], val_x, labels[160:], Cs=())


def test_recipe_writes_a_small_fp16_backbone_with_metadata(tmp_path, monkeypatch):
    write_mnist(tmp_path, folder="FashionMNIST", n={"train": 100, "test": 10})
    out = transfer.resnet18_fashion_mnist(tmp_path / "r18.pt", epochs=1, root=tmp_path, device="cpu")
    payload = torch.load(out, map_location="cpu", weights_only=True)
    state, meta = payload["state_dict"], payload["metadata"]
    assert not any(k.startswith("fc.") for k in state)
    assert state["conv1.weight"].dtype == torch.float16
    assert meta["dataset"] == "fashion-mnist" and meta["split"]["n_train"] == 90 and meta["epochs"] == 1
    assert set(meta["metrics"]) == {"val_acc", "val_acc_after_fp16"}
    assert abs(meta["metrics"]["val_acc"] - meta["metrics"]["val_acc_after_fp16"]) <= 0.1
    model, used = transfer.build_resnet18("course", checkpoint=out)
    assert used == "course:r18.pt" and len(model.weights_info["loaded"]) == 120
