"""Tests of the SSL pretraining pieces: ConvEncoder, train_ssl (views, schedule, resume),
the MoCo recipe helpers, the few-label helpers and ``course pretrain`` options."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from conftest import REPO
from course_lib import augment as A
from course_lib.fewlabel import (accuracy_and_logits, cv_probe_accuracy, label_efficiency, offline_augment,
                                 train_supervised)
from course_lib.ssl import MoCo
from course_lib.ssl.encoders import ConvEncoder
from course_lib.ssl.moco import SplitBatchNorm2d
from course_lib.ssl.recipes import MOCO_CONFIGS, MoCoConfig, moco_views, pretrain_moco
from course_lib.ssl.trainer import KNNMonitor, TwoViews, train_ssl, warmup_cosine


def noisy_views(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views: the image plus independent noise (cheap and deterministic given the generator)."""
    return tuple((x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1) for _ in range(2))


def tiny_moco(seed: int = 0) -> MoCo:
    torch.manual_seed(seed)
    return MoCo(ConvEncoder(1, (8, 16), blocks=0), 16, dim=16, K=32, m=0.99, bn_splits=4)


# --------------------------------------------------------------------------- encoder


def test_conv_encoder_shapes_and_config():
    enc = ConvEncoder(1, (8, 16, 32), blocks=1)
    assert enc(torch.rand(3, 1, 28, 28)).shape == (3, 32)
    assert enc.feature_dim == 32
    assert ConvEncoder(**enc.config()).state_dict().keys() == enc.state_dict().keys()
    assert ConvEncoder(3, (8,)).forward(torch.rand(2, 3, 32, 32)).shape == (2, 8)


def test_conv_encoder_errors_name_the_fix():
    with pytest.raises(ValueError, match="in_channels=3"):
        ConvEncoder(1, (8, 16))(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="widths"):
        ConvEncoder(1, ())


# --------------------------------------------------------------------------- loop pieces


def test_two_views_are_independent_augmentations():
    x = torch.rand(6, 1, 28, 28)
    v1, v2 = TwoViews(A.RandomResizedCrop(28, scale=(0.3, 1.0)))(x, torch.Generator().manual_seed(0))
    assert v1.shape == v2.shape == x.shape
    assert not torch.allclose(v1, v2)
    with pytest.raises(ValueError, match="transform objects"):
        TwoViews(A.RandomHorizontalFlip)


def test_warmup_cosine_schedule():
    f = [warmup_cosine(s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] < 0.01
    assert warmup_cosine(0, 10, 0) == pytest.approx(1.0)


def test_train_ssl_loss_falls_and_history_is_recorded():
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(128, 1, 8, 8, generator=g) * 255).to(torch.uint8)
    model = tiny_moco()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1, momentum=0.9)
    hist = train_ssl(model, images, noisy_views, epochs=15, batch_size=32, optimizer=opt, log=None)
    losses = hist.column("loss")
    assert len(hist) == 15 and len(hist.step_losses) == 15 * 4
    assert all(math.isfinite(v) for v in losses)
    # epoch 1 still sees the random initial queue; afterwards it holds real keys
    assert losses[-1] < losses[1] - 0.5
    assert hist.records[-1]["lr"] < 0.01 * 0.1 + 1e-9  # the cosine schedule ran to (almost) zero
    summary = hist.to_dict(max_steps=10)
    assert len(summary["step_losses"]) <= 10 and summary["step_stride"] == 6


def test_train_ssl_rejects_bad_models_and_batches():
    images = torch.rand(16, 1, 8, 8)
    model = tiny_moco()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        train_ssl(model, images, noisy_views, epochs=1, batch_size=64, optimizer=opt, log=None)
    with pytest.raises(ValueError, match="backbone="):
        train_ssl(model, images, noisy_views, epochs=1, batch_size=8, optimizer=opt, monitor=lambda b: 0.0, log=None)
    lin = nn.Linear(64, 3)
    with pytest.raises(TypeError, match="scalar loss"):
        train_ssl(lin, images, lambda x, g: (x.flatten(1),), epochs=1, batch_size=8,
                  optimizer=torch.optim.SGD(lin.parameters(), lr=0.1), log=None)


def test_train_ssl_resumes_to_the_same_weights(tmp_path):
    images = (torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)

    def run(interrupt_at: int | None, ckpt):
        model = tiny_moco(seed=0)
        opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1, momentum=0.9)
        calls = []

        def monitor(backbone):
            calls.append(1)
            if len(calls) == interrupt_at:
                raise KeyboardInterrupt
            return 0.5

        hist = train_ssl(model, images, noisy_views, epochs=3, batch_size=16, optimizer=opt, backbone=model.encoder_q,
                         monitor=monitor, checkpoint=ckpt, warmup_epochs=1, log=None)
        return model, hist

    reference, ref_hist = run(None, None)
    ckpt = tmp_path / "resume.pt"
    _, hist = run(2, ckpt)  # Ctrl-C during epoch 2: the resume file holds epoch 1
    assert hist.interrupted and len(hist) == 1
    resumed, hist2 = run(None, ckpt)
    assert len(hist2) == 3 and not hist2.interrupted
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    assert hist2.column("loss") == pytest.approx(ref_hist.column("loss"), abs=1e-5)
    with pytest.raises(ValueError, match="delete it"):
        model = tiny_moco()
        train_ssl(model, images, noisy_views, epochs=5, batch_size=16, checkpoint=ckpt, log=None,
                  optimizer=torch.optim.SGD(model.trainable_parameters(), lr=0.1))


def test_knn_monitor_separates_easy_classes(tiny_classification):
    images, labels = tiny_classification
    flat = nn.Flatten()  # raw pixels: the quadrant classes are separable by nearest neighbours
    acc = KNNMonitor(images[:200], labels[:200], images[200:], labels[200:], k=5)(flat)
    assert acc > 0.9


# --------------------------------------------------------------------------- MoCo recipe


def test_moco_views_and_configs():
    for cfg in MOCO_CONFIGS.values():
        v1, v2 = moco_views(cfg)(torch.rand(4, 1, 28, 28), torch.Generator().manual_seed(0))
        assert v1.shape == (4, 1, 28, 28) and not torch.equal(v1, v2)
    assert MOCO_CONFIGS["mnist"].encoder().feature_dim == MOCO_CONFIGS["mnist"].widths[-1]


def test_elastic_views_are_opt_in_and_bend_the_strokes():
    plain = MoCoConfig(crop_scale=(1.0, 1.0), degrees=0.0, shear=0.0, erase_p=0.0)
    assert "ElasticDistortion" not in repr(moco_views(plain))
    elastic = replace(plain, elastic_alpha=34.0, elastic_sigma=4.0)
    assert "ElasticDistortion(alpha=34.0, sigma=4.0" in repr(moco_views(elastic))
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a vertical bar, the same in both images
    v1, v2 = moco_views(elastic)(x, torch.Generator().manual_seed(0))
    assert not torch.equal(v1, x) and not torch.equal(v1[0], v1[1])  # every image its own field
    assert bool((v1.sum((1, 2, 3)) > 0.6 * x[0].sum()).all())  # the stroke bends; most of its ink stays
    with pytest.raises(ValueError, match="alpha"):
        moco_views(replace(plain, elastic_alpha=-1.0))


def test_jitter_views_change_brightness_and_contrast_per_image():
    plain = MoCoConfig(crop_scale=(1.0, 1.0), degrees=0.0, shear=0.0, erase_p=0.0)
    assert "ColorJitter" not in repr(moco_views(plain))
    jit = replace(plain, jitter=0.4)
    assert "ColorJitter(brightness=(0.6, 1.4), contrast=(0.6, 1.4)" in repr(moco_views(jit))
    x = torch.full((64, 1, 28, 28), 0.5)
    x[:, :, 8:20, 8:20] = 0.25  # the same garment 64 times
    v1, v2 = moco_views(jit)(x, torch.Generator().manual_seed(0))
    assert 0.0 <= float(v1.min()) and float(v1.max()) <= 1.0
    means = v1.mean((1, 2, 3))
    assert float(means.std()) > 0.02  # every image its own brightness
    assert float((means - x.mean((1, 2, 3))).abs().lt(1e-6).float().mean()) > 0.05  # some views left unjittered (p=0.8)
    assert not torch.equal(v1, v2)
    with pytest.raises(ValueError, match="brightness must be >= 0"):
        moco_views(replace(plain, jitter=-0.5))


def test_pretrain_moco_updates_the_encoder_and_keeps_plain_batchnorm():
    cfg = MoCoConfig(widths=(8, 16), batch_size=32, K=64, bn_splits=4, epochs=1)
    torch.manual_seed(0)
    enc = cfg.encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    images = (torch.rand(96, 1, 28, 28) * 255).to(torch.uint8)
    hist = pretrain_moco(enc, images, cfg, max_steps_per_epoch=2, log=None)
    assert len(hist.step_losses) == 2
    assert any(not torch.equal(before[k], v) for k, v in enc.state_dict().items())
    assert not any(isinstance(m, SplitBatchNorm2d) for m in enc.modules())
    enc.train()(torch.rand(3, 1, 28, 28))  # plain BN: any batch size works after pretraining


def test_reference_checkpoint_has_provenance_and_fits_the_config():
    path = REPO / "checkpoints" / "moco-mnist.pt"
    if not path.exists():
        pytest.skip("checkpoints/moco-mnist.pt not built yet (course pretrain moco-mnist)")
    from course_lib.checkpoints import load_checkpoint

    enc = MOCO_CONFIGS["mnist"].encoder()
    _, meta = load_checkpoint(path, enc)
    for key in ("command", "git_commit", "machine", "dataset", "dataset_checksum", "epochs", "wall_time_s",
                "metrics", "history", "model_config"):
        assert key in meta, key
    assert meta["model_config"] == enc.config()
    assert len(meta["history"]["records"]) == meta["epochs"]



@pytest.mark.parametrize("method,dataset", [("moco", "mnist"), ("moco", "fashion-mnist"), ("byol", "mnist")])
def test_scan_checkpoint_was_refined_from_the_shipped_base_checkpoint(method, dataset):
    scan_path = REPO / "checkpoints" / f"{method}-scan-{dataset}.pt"
    base_path = REPO / "checkpoints" / f"{method}-{dataset}.pt"
    if not scan_path.exists():
        pytest.skip(f"checkpoints/{method}-scan-{dataset}.pt not built yet (course pretrain {method}-scan-{dataset})")
    from course_lib.checkpoints import load_checkpoint
    from course_lib.ssl.pretraining import file_sha256
    from course_lib.ssl.scan_recipe import SCAN_CONFIGS

    enc = MOCO_CONFIGS[dataset].encoder()
    _, meta = load_checkpoint(scan_path, enc)
    assert meta["base_checkpoint"]["sha256"] == file_sha256(base_path)  # rebuild it if the base checkpoint changes
    assert meta["scan_config"] == SCAN_CONFIGS[dataset].to_dict() and meta["model_config"] == enc.config()
    assert len(meta["history"]["records"]) == meta["epochs"]


def test_shipped_byol_checkpoint_was_made_with_todays_config():
    from course_lib.checkpoints import load_checkpoint
    from course_lib.ssl.byol_recipe import BYOL_CONFIGS, BYOLConfig

    enc = BYOL_CONFIGS["mnist"].encoder(1)
    _, meta = load_checkpoint(REPO / "checkpoints" / "byol-mnist.pt", enc)
    stored = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["byol_config"].items()}
    # fields added since keep their defaults, which reproduce the old behaviour
    assert BYOLConfig(**stored) == BYOL_CONFIGS["mnist"]  # if not, retrain it: course pretrain byol-mnist
    assert meta["epochs"] == BYOL_CONFIGS["mnist"].epochs == len(meta["history"]["records"])


def test_finetuned_byol_checkpoint_starts_from_the_shipped_byol_checkpoint():
    path, base_path = REPO / "checkpoints" / "byol-mnist-finetuned.pt", REPO / "checkpoints" / "byol-mnist.pt"
    if not path.exists():
        pytest.skip("checkpoints/byol-mnist-finetuned.pt not built yet (course pretrain byol-mnist-finetuned)")
    from course_lib.checkpoints import load_checkpoint
    from course_lib.ssl.byol_recipe import BYOL_CONFIGS
    from course_lib.ssl.finetune_recipe import FINETUNE_ALL_CONFIGS, classifier_for
    from course_lib.ssl.pretraining import file_sha256

    model = classifier_for(BYOL_CONFIGS["mnist"].encoder(1), 10)
    _, meta = load_checkpoint(path, model)  # the notebook's model, strictly
    assert meta["base_checkpoint"]["sha256"] == file_sha256(base_path)  # rebuild it if byol-mnist.pt changes
    assert meta["finetune_config"] == FINETUNE_ALL_CONFIGS["mnist"].to_dict()
    assert len(meta["metrics"]["val_acc_per_epoch"]) == meta["epochs"] == len(meta["history"]["records"])


# --------------------------------------------------------------------------- few labels


def test_offline_augment_makes_fixed_copies():
    images = (torch.rand(5, 1, 12, 12) * 255).to(torch.uint8)
    labels = torch.arange(5)
    aug, y = offline_augment(images, labels, 4, A.RandomAffine(degrees=20), seed=0)
    assert aug.shape == (20, 1, 12, 12) and aug.dtype == torch.uint8
    assert torch.equal(aug[:5], images) and torch.equal(y, labels.repeat(4))
    assert torch.equal(aug, offline_augment(images, labels, 4, A.RandomAffine(degrees=20), seed=0)[0])
    with pytest.raises(ValueError, match="copies"):
        offline_augment(images, labels, 0, A.Identity())


def test_train_supervised_learns_a_tiny_problem(tiny_classification):
    images, labels = tiny_classification
    torch.manual_seed(0)
    model = train_supervised(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), images[:128], labels[:128], steps=100,
                             batch_size=32, lr=1e-2)
    acc, logits = accuracy_and_logits(model, images[128:], labels[128:])
    assert acc > 0.9 and logits.shape == (128, 4)
    with pytest.raises(ValueError, match="steps"):
        train_supervised(model, images, labels, steps=0)


def test_cv_probe_accuracy_fixes_C_where_cv_is_impossible_or_pointless(tiny_classification):
    images, labels = tiny_classification
    x = images.flatten(1).float() / 255
    one_each = torch.tensor([0, 1, 2, 3])
    _, C = cv_probe_accuracy(x[one_each], labels[one_each], x, labels, fixed_C=0.123)
    assert C == 0.123
    _, C = cv_probe_accuracy(x, labels, x, labels, cv_max=100, large_C=7.0)
    assert C == 7.0
    acc, C = cv_probe_accuracy(x[:64], labels[:64], x[64:], labels[64:], Cs=(0.01, 1.0))
    assert C in (0.01, 1.0) and acc > 0.9


def test_label_efficiency_gives_every_method_the_same_draws(tiny_classification):
    images, labels = tiny_classification
    seen: dict[str, list] = {"a": [], "b": []}

    def recorder(name):
        def fit(x, y, xte, yte):
            seen[name].append(x.sum().item())
            return 0.5
        return fit

    out = label_efficiency({"a": recorder("a"), "b": recorder("b")}, images, labels, images, labels,
                           sizes=[2, None], draws={2: 3}, log=None)
    assert seen["a"] == seen["b"] and len(seen["a"]) == 4
    assert set(out["a"]) == {8, len(labels)}
    assert out["a"][8]["mean"] == 0.5 and len(out["a"][8]["per_draw"]) == 3


# --------------------------------------------------------------------------- course pretrain


def test_pretrain_cli_lists_moco_and_checks_threads(capsys):
    from course_lib.pretrain import RECIPES, cli

    assert "moco-mnist" in RECIPES and "moco-fashion-mnist" in RECIPES
    assert cli(["--list"]) == 0
    assert "moco-mnist" in capsys.readouterr().out
    threads = torch.get_num_threads()
    assert cli(["moco-mnist", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert torch.get_num_threads() == threads


def test_torch_threads_restores_the_thread_count():
    from course_lib.fewlabel import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError
    assert torch.get_num_threads() == before


def test_probe_accuracy_few_labels_gives_one_accuracy_per_draw(tiny_classification):
    from course_lib.ssl.recipes import probe_accuracy_few_labels

    images, labels = tiny_classification
    x = images.flatten(1).float() / 255
    accs = probe_accuracy_few_labels(x, labels, x, labels, n_per_class=4, seeds=range(3), Cs=(0.1, 1.0))
    assert len(accs) == 3 and all(a > 0.8 for a in accs)


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """300 random 28 px 'digits' stand in for MNIST in every loader; runs go under tmp_path."""
    import course_lib.data as data
    from course_lib.data import ImageDataset

    g = torch.Generator().manual_seed(0)
    fake = ImageDataset(torch.randint(0, 256, (300, 1, 28, 28), generator=g, dtype=torch.uint8),
                        torch.arange(300) % 10, [str(i) for i in range(10)], "mnist", "train")
    monkeypatch.setattr(data, "load_dataset", lambda name, split="train", root=None: fake)
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    return fake


def test_moco_recipe_trains_evaluates_and_saves_provenance(tmp_path, fake_mnist):
    """End to end on 300 fake 28 px digits: validation held out, checkpoint loads into the encoder."""
    from course_lib.checkpoints import load_checkpoint
    from course_lib.ssl.recipes import moco_recipe

    logs: list[str] = []
    out = moco_recipe("mnist")(out=tmp_path / "moco.pt", epochs=1, log=logs.append)
    _, meta = load_checkpoint(out, MOCO_CONFIGS["mnist"].encoder(1))
    for key in ("dataset_checksum", "epochs", "wall_time_s", "metrics", "model_config", "moco_config", "views"):
        assert key in meta, key
    assert meta["epochs"] == 1 and meta["pretrain_images"] == 270  # the 10 % validation split is held out
    assert len(meta["metrics"]["val_probe100_acc_per_draw"]) == 5
    assert any("resume file" in line for line in logs)
    with pytest.raises(ValueError, match="known"):
        moco_recipe("cifar10")


def test_moco_scan_recipe_starts_from_the_moco_checkpoint_and_records_it(tmp_path, monkeypatch, fake_mnist):
    """End to end on 300 fake digits: base checkpoint required, validation held out, provenance kept."""
    import course_lib.ssl.scan_recipe as sr
    from course_lib.checkpoints import load_checkpoint, save_checkpoint
    from course_lib.ssl.pretraining import file_sha256

    monkeypatch.setitem(sr.SCAN_CONFIGS, "mnist", replace(sr.SCAN_CONFIGS["mnist"], scan_epochs=2, heads=2,
                                                          threshold=0.0, batch_size=64))
    with pytest.raises(FileNotFoundError, match="course pretrain moco-mnist"):
        sr.moco_scan_recipe("mnist")(out=tmp_path / "x.pt", base=tmp_path / "missing.pt", log=lambda _: None)
    base = save_checkpoint(tmp_path / "moco.pt", MOCO_CONFIGS["mnist"].encoder(1),
                           {"model_config": MOCO_CONFIGS["mnist"].encoder(1).config(), "metrics": {"x": 1}})
    logs: list[str] = []
    out = sr.moco_scan_recipe("mnist")(out=tmp_path / "scan.pt", base=base, epochs=1, log=logs.append)
    encoder = MOCO_CONFIGS["mnist"].encoder(1)
    _, meta = load_checkpoint(out, encoder)
    assert meta["pretrain_images"] == 270 and meta["confident_fraction"] == 1.0  # threshold 0 keeps every image
    assert meta["base_checkpoint"]["sha256"] == file_sha256(base) and meta["base_checkpoint"]["metrics"] == {"x": 1}
    assert len(meta["scan_losses"]) == 2 and sum(meta["cluster_sizes"]) == 270
    assert len(meta["metrics"]["val_probe100_acc_per_draw"]) == 5
    base_encoder = MOCO_CONFIGS["mnist"].encoder(1)
    load_checkpoint(base, base_encoder)
    assert any(not torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), base_encoder.state_dict().values()))
    with pytest.raises(ValueError, match="known"):
        sr.moco_scan_recipe("cifar10")


def test_finetune_all_recipe_trains_every_layer_from_the_base_checkpoint(tmp_path, monkeypatch, fake_mnist):
    """End to end on 300 fake digits: base checkpoint required, every layer trained, validation per epoch, resumable."""
    import course_lib.ssl.finetune_recipe as fr
    from course_lib.checkpoints import load_checkpoint, save_checkpoint
    from course_lib.ssl.pretraining import file_sha256

    monkeypatch.setitem(fr.FINETUNE_ALL_CONFIGS, "mnist", replace(fr.FINETUNE_ALL_CONFIGS["mnist"], batch_size=64))
    with pytest.raises(FileNotFoundError, match="course pretrain byol-mnist"):
        fr.finetune_all_recipe("byol", "mnist")(out=tmp_path / "x.pt", base=tmp_path / "missing.pt", log=print)
    encoder = MOCO_CONFIGS["mnist"].encoder(1)
    base = save_checkpoint(tmp_path / "byol.pt", encoder, {"model_config": encoder.config(), "metrics": {"x": 1}})
    out = fr.finetune_all_recipe("byol", "mnist")(out=tmp_path / "ft.pt", base=base, epochs=2, log=lambda _: None)
    model = fr.classifier_for(MOCO_CONFIGS["mnist"].encoder(1), 10)
    _, meta = load_checkpoint(out, model)
    assert meta["pretrain_images"] == 270 and "every training label" in meta["split"]
    assert len(meta["metrics"]["val_acc_per_epoch"]) == 2 and meta["finetune_config"]["batch_size"] == 64
    assert meta["base_checkpoint"]["sha256"] == file_sha256(base) and meta["base_checkpoint"]["metrics"] == {"x": 1}
    first_conv = next(k for k in encoder.state_dict() if k.endswith("weight"))
    assert not torch.equal(model.backbone.state_dict()[first_conv], encoder.state_dict()[first_conv])  # not frozen
    resume_files = list((tmp_path / "runs" / "pretrain").glob("byol-mnist-finetuned-*.resume.pt"))
    assert len(resume_files) == 1  # written every epoch: a second run with the same command continues from it
    with pytest.raises(ValueError, match="known"):
        fr.finetune_all_recipe("byol", "cifar10")


def test_finetune_all_config_names_impossible_settings():
    from course_lib.ssl.finetune_recipe import FinetuneAllConfig

    with pytest.raises(ValueError, match="lr must be > 0"):
        FinetuneAllConfig(lr=0)
    with pytest.raises(ValueError, match="epochs and batch_size"):
        FinetuneAllConfig(epochs=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        FinetuneAllConfig(label_smoothing=1.0)
    assert FinetuneAllConfig(elastic_alpha=0).augmentation() is None
    both = FinetuneAllConfig(degrees=10.0, translate=0.1).augmentation()
    assert "RandomAffine" in repr(both) and "ElasticDistortion" in repr(both)
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    y = both(x)
    assert y.shape == x.shape and not torch.equal(y[0], y[1])  # each image its own parameters
    assert FinetuneAllConfig(elastic_alpha=0).describe_augmentation() == "no augmentation"
    assert FinetuneAllConfig(translate=0.1, elastic_alpha=0).describe_augmentation() == "a shift of up to 10 %"
    assert "then Simard's elastic" in FinetuneAllConfig(degrees=10.0).describe_augmentation()


def test_scan_recipe_knows_its_bases_and_names_the_missing_one(tmp_path):
    import course_lib.ssl.scan_recipe as sr

    with pytest.raises(ValueError, match="byol-mnist"):
        sr.scan_recipe("byol", "fashion-mnist")  # no BYOL config there; the error lists what exists
    with pytest.raises(FileNotFoundError, match="course pretrain byol-mnist"):
        sr.scan_recipe("byol", "mnist")(out=tmp_path / "x.pt", base=tmp_path / "missing.pt", log=lambda _: None)
    assert "RandomResizedCrop" in repr(sr._views("byol", "mnist")) and "Elastic" in repr(sr._views("byol", "mnist"))
