"""Tests for course_lib.models: shapes, parameter arithmetic, learning, weights loading."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from course_lib.models import (
    MLP,
    ORIGINAL,
    PAPER_227,
    TORCHVISION,
    AlexNet,
    FashionCNN,
    PretrainedUnavailableError,
    ReportCNN,
    RowLSTM,
    SingleAttention,
    SmallCNN,
    ViT,
    alexnet_cifar,
    alexnet_shape_walk,
    count_params,
    first_invalid_layer,
    format_layer_table,
    format_shape_walk,
    freeze_backbone,
    l1_penalty,
    l2_penalty,
    layer_table,
    load_hub_model,
    pretrained_source,
    resnet18_for,
)


def walk_total(rows: list[dict]) -> int:
    return sum(r["params"] for r in rows)


# ----------------------------------------------------------------------------- AlexNet


@pytest.mark.parametrize(
    "input_size, num_classes, width",
    [(16, 10, 0.5), (16, 1000, 0.25), (32, 10, 0.5), (32, 100, 1.0), (32, 1000, 0.5), (64, 1000, 0.25), (224, 1000, 0.25)],
)
def test_alexnet_output_shapes(input_size: int, num_classes: int, width: float) -> None:
    model = AlexNet(num_classes=num_classes, input_size=input_size, width=width, norm="batch")
    out = model(torch.rand(2, 3, input_size, input_size))
    assert out.shape == (2, num_classes)


def test_alexnet_224_matches_shape_walk_and_layer_table() -> None:
    # The paper's channels 96-256-384-384-256 in one tower (no 2-GPU grouping), conv1 padding 2.
    model = AlexNet(num_classes=1000, input_size=224, width=1.0, norm="lrn")
    assert model.stem == "imagenet"
    rows = layer_table(model, (3, 224, 224))
    walk = alexnet_shape_walk(224, ORIGINAL, num_classes=1000)
    assert walk_total(walk) == count_params(model) == sum(r["params"] for r in rows) == 62_378_344
    # the spatial sizes agree too: 55 after conv1, 6 x 6 before the classifier
    by_name = {r["name"].split(".")[-1]: r for r in rows}
    walk_by_name = {r["layer"]: r for r in walk}
    for layer in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5"):
        assert by_name[layer]["output_shape"][-1] == walk_by_name[layer]["out_size"]
    assert walk_by_name["conv1"]["out_size"] == 55 and walk_by_name["pool5"]["out_size"] == 6
    # the first FC layer holds most of the parameters
    assert walk_by_name["fc6"]["params"] == 9216 * 4096 + 4096
    assert walk_by_name["fc6"]["params"] > 0.6 * walk_total(walk)


def test_shape_walk_ten_classes_first_dense_layer_dominates() -> None:
    walk = alexnet_shape_walk(224, ORIGINAL, num_classes=10)
    fc6 = next(r for r in walk if r["layer"] == "fc6")
    assert walk_total(walk) == 58_322_314
    assert fc6["in_size"] == 9216 and fc6["params"] / walk_total(walk) > 0.64
    assert "First FC layer: 37,752,832 params (65% of the total)" in format_shape_walk(walk)


def test_shape_walk_matches_torchvision_alexnet() -> None:
    tv = torchvision.models.alexnet(weights=None)
    assert walk_total(alexnet_shape_walk(224, TORCHVISION)) == count_params(tv) == 61_100_840


def test_shape_walk_paper_padding_needs_227() -> None:
    assert {r["layer"]: r["out_size"] for r in alexnet_shape_walk(227, PAPER_227)}["conv1"] == 55
    assert {r["layer"]: r["out_size"] for r in alexnet_shape_walk(224, PAPER_227)}["conv1"] == 54


def test_shape_walk_flags_unmodified_alexnet_on_small_images() -> None:
    rows16 = alexnet_shape_walk(16, ORIGINAL)
    assert first_invalid_layer(rows16) == "pool2"
    bad = next(r for r in rows16 if r["layer"] == "pool2")
    assert bad["out_size"] < 1 and "below 1 x 1" in bad["note"]
    assert all(not r["valid"] for r in rows16[rows16.index(bad):])
    assert all(r["params"] is None for r in rows16 if r["kind"] == "fc")
    # Keras 'valid' padding on conv1 fails one layer earlier; 32 px fails at the last pool
    assert first_invalid_layer(alexnet_shape_walk(16, PAPER_227)) == "pool1"
    assert first_invalid_layer(alexnet_shape_walk(32, ORIGINAL)) == "pool5"
    assert first_invalid_layer(alexnet_shape_walk(224, ORIGINAL)) is None
    text = format_shape_walk(rows16)
    assert "INVALID" in text and "pool2" in text


def test_alexnet_rejects_too_small_input_with_a_useful_message() -> None:
    with pytest.raises(ValueError, match=r"pool2.*input_size >= 63.*stem='small'"):
        AlexNet(input_size=16, stem="imagenet")
    with pytest.raises(ValueError, match=r"pool5.*input_size >= 8"):
        AlexNet(input_size=4, overlap_pool=False)
    AlexNet(input_size=8, overlap_pool=False, width=0.25)  # the suggested size works


def test_alexnet_rejects_wrong_image_size_at_forward() -> None:
    model = alexnet_cifar()
    with pytest.raises(ValueError, match=r"input_size=28"):
        model(torch.rand(2, 3, 28, 28))


def test_alexnet_cifar_budget_and_layout() -> None:
    model = alexnet_cifar()
    assert 2_000_000 <= count_params(model) <= 6_000_000
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [48, 128, 192, 192, 128]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 5
    lrn = AlexNet(norm="lrn", width=0.5)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in lrn.modules()) == 2
    pools = [m for m in lrn.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3
    flat = AlexNet(overlap_pool=False, width=0.5)
    assert [(p.kernel_size, p.stride) for p in flat.modules() if isinstance(p, nn.MaxPool2d)] == [(2, 2)] * 3


def test_alexnet_learns_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = alexnet_cifar(dropout=0.0)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    assert overfit(model, x, y, steps=20, lr=5e-4) < 0.5


# ----------------------------------------------------------------------------- layer_table


def test_layer_table_restores_mode_and_counts_unowned_parameters() -> None:
    model = ViT(depth=1)
    model.train()
    rows = layer_table(model, (1, 28, 28))
    assert model.training
    assert sum(r["params"] for r in rows) == count_params(model)
    assert {"cls_token", "pos_embed"} <= {r["name"] for r in rows if r["type"] == "Parameter"}
    text = format_layer_table(rows, model)
    assert f"Total params: {count_params(model):,}" in text and "Trainable params" in text


def test_layer_table_reports_layers_that_did_not_run() -> None:
    class Partial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(4, 2), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    rows = layer_table(Partial(), (4,))
    assert rows[0] == {"name": "used", "type": "Linear", "output_shape": (1, 2), "params": 10}
    assert rows[1]["name"] == "unused (not called)" and rows[1]["params"] == 15


def test_layer_table_rejects_batched_shape_description() -> None:
    with pytest.raises(ValueError, match="ONE sample"):
        layer_table(SmallCNN(), "1x28x28")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- small CNNs


def overfit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> float:
    """Train on one batch with Adam; return last loss / first loss (train mode, no dropout used)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses[-1] / losses[0]


def test_small_cnn_size_and_shape() -> None:
    model = SmallCNN()
    assert 25_000 <= count_params(model) <= 40_000
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    assert SmallCNN(in_channels=3, num_classes=100)(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match=r"unsqueeze\(1\)"):
        model(torch.rand(4, 28, 28))


def test_report_cnn_filter_sweep() -> None:
    small, big = ReportCNN((16, 32, 32)), ReportCNN((64, 128, 128))
    x = torch.rand(3, 1, 28, 28)
    assert small(x).shape == big(x).shape == (3, 10)
    assert count_params(big) > 5 * count_params(small)
    with pytest.raises(ValueError, match="3 widths"):
        ReportCNN((16, 32))


def test_mlp_and_fashion_cnn_toggles() -> None:
    x = torch.rand(4, 1, 28, 28)
    assert MLP()(x).shape == (4, 10)
    assert any(isinstance(m, nn.BatchNorm1d) for m in MLP(batchnorm=True).modules())
    assert any(isinstance(m, nn.Dropout) for m in MLP(dropout=0.3).modules())
    with pytest.raises(ValueError, match="in_features=3072"):
        MLP()(torch.rand(2, 3, 32, 32))
    plain, full = FashionCNN(), FashionCNN(batchnorm=True, dropout=0.25)
    assert plain(x).shape == full(x).shape == (4, 10)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in full.modules()) == 2
    assert sum(isinstance(m, nn.Dropout) for m in full.modules()) == 2


def test_penalties_cover_weights_only() -> None:
    model = FashionCNN(batchnorm=True)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(-0.5)  # biases and BN scales too: they must not be counted
    n_weights = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    assert l1_penalty(model).item() == pytest.approx(0.5 * n_weights)
    assert l2_penalty(model).item() == pytest.approx(0.25 * n_weights)
    l1_penalty(model).backward()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.weight.grad is None
    with pytest.raises(ValueError, match="no Linear/Conv"):
        l1_penalty(nn.ReLU())


# ----------------------------------------------------------------------------- sequence models and ViT


@pytest.mark.parametrize(
    "make",
    [
        lambda: RowLSTM(hidden=64),
        lambda: RowLSTM(hidden=32, layers=2, bidirectional=True),
        lambda: SingleAttention(d_model=32),
        lambda: ViT(patch_size=7, dim=32, depth=2),
        lambda: ViT(patch_size=4, dim=32, depth=1, pool="mean"),
        lambda: ViT(patch_size=7, dim=32, depth=1, stem_channels=(8, 8)),
    ],
    ids=["lstm", "bilstm2", "attention", "vit-p7", "vit-p4-mean", "vit-p7-conv-stem"],
)
def test_sequence_and_vit_models_shape_and_overfit(make) -> None:
    torch.manual_seed(0)
    model = make()
    # 32 noisy copies of 10 random binary class templates: learnable in a few steps
    y = torch.randint(0, 10, (32,))
    x = (torch.rand(10, 1, 28, 28) > 0.5).float()[y] + 0.1 * torch.randn(32, 1, 28, 28)
    assert model(x[:3]).shape == (3, 10)
    assert overfit(model, x, y, steps=20, lr=5e-3) < 0.7


def test_row_models_accept_channelless_images_and_explain_bad_ones() -> None:
    assert RowLSTM(hidden=16)(torch.rand(2, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="one channel"):
        RowLSTM()(torch.rand(2, 3, 28, 28))
    attn = SingleAttention(d_model=32, heads=4)
    assert attn.attention_map(torch.rand(2, 1, 28, 28)).shape == (2, 4, 28, 28)
    with pytest.raises(ValueError, match="divisible"):
        SingleAttention(d_model=30, heads=4)


def test_vit_features_and_patch_validation() -> None:
    model = ViT(image_size=32, patch_size=4, in_channels=3, dim=48, depth=1, heads=3)
    assert model.forward_features(torch.rand(2, 3, 32, 32)).shape == (2, 48)
    assert model.num_patches == 64
    with pytest.raises(ValueError, match=r"multiple of patch_size \(5\).*\[2, 4, 7, 14, 28\]"):
        ViT(image_size=28, patch_size=5)
    with pytest.raises(ValueError, match="image_size"):
        ViT()(torch.rand(2, 1, 32, 32))


def test_vit_conv_stem_keeps_the_token_grid_and_the_plain_vit_has_none() -> None:
    plain = ViT(patch_size=7, dim=32, depth=1)
    hybrid = ViT(patch_size=7, dim=32, depth=1, stem_channels=(8, 16))
    x = torch.rand(3, 1, 28, 28)
    # the stem runs at full resolution (stride 1, same padding): still CLS + 16 patch tokens
    assert plain.embed(x).shape == hybrid.embed(x).shape == (3, 17, 32)
    assert len(plain.stem) == 0 and hybrid.patch_embed.in_channels == 16
    assert [m.out_channels for m in hybrid.stem if isinstance(m, torch.nn.Conv2d)] == [8, 16]
    # the plain ViT's tokens are exactly its patch embedding of the pixels (the stem is the identity)
    tokens = plain.patch_embed(x).flatten(2).transpose(1, 2)
    assert torch.allclose(plain.embed(x)[:, 1:], tokens + plain.pos_embed[:, 1:])
    with pytest.raises(ValueError, match="stem_channels"):
        ViT(stem_channels=(16, 0))


# ----------------------------------------------------------------------------- ResNet-18


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (28, 3), (32, 1)])
def test_resnet18_small_input_shapes(size: int, channels: int) -> None:
    model = resnet18_for(num_classes=10, in_channels=channels, small_input=True)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    model.eval()
    assert model(torch.rand(2, channels, size, size)).shape == (2, 10)
    assert pretrained_source(model) == "random initialisation"


def test_resnet18_standard_stem_keeps_torchvision_layout() -> None:
    model = resnet18_for(num_classes=1000, in_channels=3, small_input=False)
    tv = torchvision.models.resnet18(weights=None)
    assert count_params(model) == count_params(tv)
    assert model.conv1.kernel_size == (7, 7) and isinstance(model.maxpool, nn.MaxPool2d)


def test_freeze_backbone_leaves_only_head_trainable() -> None:
    model = resnet18_for(num_classes=10, in_channels=1)
    names = freeze_backbone(model)
    assert names == ["fc.weight", "fc.bias"]
    assert count_params(model, trainable_only=True) == 512 * 10 + 10
    F.cross_entropy(model(torch.rand(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == name.startswith("fc."), name
    assert "layer4.1.conv2.weight" in freeze_backbone(model, ("layer4", "fc"))
    with pytest.raises(ValueError, match="no parameter under 'head'"):
        freeze_backbone(model, ("head",))


def test_resnet18_loads_local_state_dict_exactly(tmp_path) -> None:
    torch.manual_seed(0)
    source = resnet18_for(num_classes=10, in_channels=1)
    path = tmp_path / "resnet.pt"
    torch.save(source.state_dict(), path)
    loaded = resnet18_for(num_classes=10, in_channels=1, weights=str(path))
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.weights_info["source"] == str(path) and not loaded.weights_info["skipped"]


def test_resnet18_loads_checkpoint_with_new_head_and_reports_it(tmp_path) -> None:
    torch.manual_seed(0)
    source = resnet18_for(num_classes=100, in_channels=1)
    path = tmp_path / "ckpt.pt"
    # the layout of course_lib.checkpoints files
    torch.save({"state_dict": source.state_dict(), "metadata": {"epochs": 3, "val_acc": 0.9}}, path)
    model = resnet18_for(num_classes=10, in_channels=1, weights=path)
    assert torch.equal(model.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    assert set(model.weights_info["skipped"]) == {"fc.weight", "fc.bias"}
    assert "new head" in model.weights_info["skipped"]["fc.weight"]
    assert "fresh init for fc.bias, fc.weight" in pretrained_source(model)


def test_resnet18_adapts_rgb_stem_to_grayscale(tmp_path) -> None:
    rgb = resnet18_for(num_classes=10, in_channels=3, small_input=False)
    path = tmp_path / "rgb.pt"
    torch.save(rgb.state_dict(), path)
    gray = resnet18_for(num_classes=10, in_channels=1, small_input=False, weights=path)
    assert torch.allclose(gray.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    # a grey image gives the same stem response as its RGB copy
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(gray.conv1(x), rgb.conv1(x.repeat(1, 3, 1, 1)), atol=1e-5)
    assert "conv1.weight: 3 -> 1" in pretrained_source(gray)


def test_resnet18_bad_weights_argument(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="'imagenet'"):
        resnet18_for(weights=str(tmp_path / "missing.pt"))
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match="no tensor .* matches ResNet-18"):
        resnet18_for(weights=path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (every urlopen fails) and an empty torch hub cache."""

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "urlopen", no_network)


def test_imagenet_weights_offline_raise_clear_error(offline) -> None:
    with pytest.raises(PretrainedUnavailableError) as info:
        resnet18_for(weights="imagenet")
    message = str(info.value)
    assert "no network" in message and "IMAGENET1K_V1" in message
    assert "weights='<path to a .pt" in message and "weights=None" in message


def test_hub_model_offline_raises_same_error(offline) -> None:
    with pytest.raises(PretrainedUnavailableError, match="needs the network"):
        load_hub_model("pytorch/vision", "resnet18", trust_repo=True)


def test_alexnet_without_batchnorm_gets_he_init_and_trains() -> None:
    """PyTorch's default init shrinks the signal ~sqrt(6)x per layer: a BN-free AlexNet starts dead."""
    torch.manual_seed(10)
    x, y = torch.randn(32, 3, 16, 16), torch.arange(32) % 10
    assert AlexNet(10, 16, width=0.25, norm="batch").init == "torch"  # BN rescales; shipped checkpoint unchanged
    assert AlexNet(10, 16, width=0.25, norm="lrn").init == "he"
    best, feature_std = {}, {}
    for init in ("torch", "he"):
        torch.manual_seed(0)
        net = AlexNet(10, 16, width=0.25, norm="lrn", dropout=0.0, init=init)
        with torch.no_grad():
            feature_std[init] = net.features(x).std().item()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        losses = []
        for _ in range(20):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        best[init] = min(losses)
    assert feature_std["torch"] < 0.03 < 0.06 < feature_std["he"]  # conv5 features: vanishing vs alive
    assert best["torch"] > 2.29  # stuck at ln(10): chance
    assert best["he"] < 1.8  # the same net, He-initialised, starts fitting the batch
    with pytest.raises(ValueError, match="init must be"):
        AlexNet(10, 32, init="xavier")


@pytest.mark.parametrize("size", [5, 4, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_local_response_norm_matches_torch_in_value_and_gradient(size: int, channels_last: bool) -> None:
    from course_lib.models.alexnet import LocalResponseNorm

    torch.manual_seed(0)
    x = (torch.randn(4, 12, 5, 5) * 4).requires_grad_(True)
    x_fast = x.detach().clone().contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x_fast.requires_grad_(True)
    ref = nn.LocalResponseNorm(size, alpha=1e-2, beta=0.75, k=2.0)(x)  # large alpha: the window sum matters
    out = LocalResponseNorm(size, alpha=1e-2, beta=0.75, k=2.0)(x_fast)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    ref.backward(g)
    out.backward(g)
    torch.testing.assert_close(x_fast.grad, x.grad)
    assert alexnet_cifar(norm="lrn").features.lrn1.__class__ is LocalResponseNorm


def test_fast_local_response_norm_backward_passes_gradcheck() -> None:
    from course_lib.models.alexnet import LocalResponseNorm

    torch.manual_seed(0)
    for size in (5, 4):
        x = (torch.randn(2, 7, 3, 3, dtype=torch.float64) * 3).requires_grad_(True)
        assert torch.autograd.gradcheck(LocalResponseNorm(size, alpha=0.05, beta=0.75, k=2.0), (x,))
