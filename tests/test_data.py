"""The data layer: every format on tiny real-format files, caching, errors, helpers, CLI."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import data
from course_lib.data import CorruptDatasetError, DatasetNotFoundError, ImageDataset, load_dataset
from data_fixtures import (
    CIFAR10_CLASSES,
    encode_image,
    make_tar_gz,
    write_cifar10,
    write_cifar100,
    write_idx,
    write_imagefolder,
    write_imagenet,
    write_mnist,
)


@pytest.fixture
def datadir(tmp_path, monkeypatch):
    """An empty data directory set as $COURSE_DATA; downloads are switched off."""
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    return tmp_path


def cache_files(root: Path) -> list[Path]:
    return sorted((root / "_tensors").glob("*"))


# ------------------------------------------------------------------------ import


def test_import_touches_neither_network_nor_torchvision():
    code = (
        "import socket, sys\n"
        "def no_net(*a, **k): raise AssertionError('network touched')\n"
        "socket.socket.connect = no_net; socket.create_connection = no_net\n"
        "import course_lib, course_lib.data\n"
        "print(sorted(m for m in ('torchvision', 'sklearn', 'PIL') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------- formats


def test_mnist_idx_gzip_and_raw(datadir):
    truth = write_mnist(datadir, gz={"train": True, "test": False})
    assert (datadir / "MNIST/raw/train-images-idx3-ubyte.gz").exists()
    assert (datadir / "MNIST/raw/t10k-images-idx3-ubyte").exists()
    for split in ("train", "test"):
        ds = load_dataset("mnist", split)
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        assert ds.images.shape == (len(truth[split][0]), 1, 28, 28)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(truth[split][0]))
        assert ds.labels.tolist() == truth[split][1].tolist()
        assert ds.classes == [str(i) for i in range(10)] and ds.name == "mnist" and ds.split == split


def test_fashion_mnist_from_data_dir_and_from_debian_package(datadir, tmp_path_factory, monkeypatch):
    write_mnist(datadir, folder="FashionMNIST")
    ds = load_dataset("fashion_mnist")  # alias
    assert ds.classes[0] == "T-shirt/top" and len(ds) == 20

    debian = tmp_path_factory.mktemp("debian")
    truth = write_mnist(debian, folder="", gz={"train": True, "test": True}, seed=3)
    empty = tmp_path_factory.mktemp("empty")
    lines = ["/.", "/usr/share/datasets"] + [str(p) for p in sorted(debian.glob("raw/*"))]
    monkeypatch.setattr(data, "_dpkg_list", lambda package: lines if package == "dataset-fashion-mnist" else [])
    ds = load_dataset("fashion-mnist", "test", root=empty)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(truth["test"][0]))
    assert data._find("fashion-mnist", "test", empty).where == "Debian package dataset-fashion-mnist"


def test_debian_lookup_tolerates_missing_dpkg(monkeypatch):
    def no_dpkg(*args, **kwargs):
        raise FileNotFoundError("dpkg")

    monkeypatch.setattr(subprocess, "run", no_dpkg)
    assert data._dpkg_list("dataset-fashion-mnist") == []
    assert data._debian_fashion_dir() == data.DEBIAN_FASHION_MNIST_DIR


def test_cifar10_python_pickles(datadir):
    truth = write_cifar10(datadir)
    for split in ("train", "test"):
        ds = load_dataset("cifar10", split)
        assert ds.images.shape == (15 if split == "train" else 3, 3, 32, 32)
        assert torch.equal(ds.images, torch.from_numpy(truth[split][0]))  # CHW-planar rows
        assert ds.labels.tolist() == list(truth[split][1]) and ds.classes == CIFAR10_CLASSES


def test_cifar10_jpg_tar_decodes_both_splits_in_one_pass(datadir):
    tree = datadir / "tree"
    write_imagefolder(tree, CIFAR10_CLASSES, {"train": 2, "test": 1}, size=32, fmt="JPEG")
    make_tar_gz(tree, datadir / "cifar10-jpg" / "cifar10-jpg.tar.gz")
    ds = load_dataset("cifar10", "train")
    assert ds.images.shape == (20, 3, 32, 32) and ds.classes == CIFAR10_CLASSES
    assert ds.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert {p.name.split("-")[1] for p in cache_files(datadir)} == {"train", "test"}  # test cached too
    assert len(load_dataset("cifar10", "test")) == 10


def test_cifar100_pickles_fine_labels(datadir):
    truth = write_cifar100(datadir)
    ds = load_dataset("cifar100", "test")
    assert torch.equal(ds.images, torch.from_numpy(truth["test"][0]))
    assert ds.labels.tolist() == truth["test"][1].tolist()
    assert len(ds.classes) == 100 and ds.classes[3] == "fine03"


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_downsampled_imagenet_pickles(datadir, layout):
    truth = write_imagenet(datadir, size=16, layout=layout)
    train = load_dataset("imagenet16", "train")
    test = load_dataset("imagenet16", "test")
    assert train.images.shape == (20, 3, 16, 16) and test.images.shape == (2, 3, 16, 16)
    assert torch.equal(train.images, torch.from_numpy(truth["train"][0]))
    assert train.labels.tolist() == truth["train"][1].tolist()  # 1-based on disk, 0-based here
    assert train.classes[:2] == ["n0", "n1"] and len(train.classes) == 1000


def test_downsampled_imagenet_class_names_from_map_clsloc(datadir):
    write_imagenet(datadir, size=32, with_map=True, per_batch=1)
    ds = load_dataset("imagenet32", "test")
    assert ds.images.shape == (1, 3, 32, 32) and ds.classes[0] == "name_1" and ds.classes[-1] == "name_1000"


def test_imagefolder_tree_and_tar(datadir):
    classes = ["zebra", "ant", "moth"]
    truth = write_imagefolder(datadir / "bugs", classes, {"train": 2, "test": 1})
    ds = load_dataset(f"imagefolder:{datadir / 'bugs'}", "train")
    order = np.argsort(classes)  # classes sorted alphabetically: ant, moth, zebra
    assert ds.classes == ["ant", "moth", "zebra"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    expected = np.concatenate([truth["train"][0][truth["train"][1] == c] for c in order])
    assert torch.equal(ds.images, torch.from_numpy(expected))  # PNG is lossless

    make_tar_gz(datadir / "bugs", datadir / "bugs.tar.gz", prefix="bugs")
    from_tar = load_dataset("imagefolder:bugs.tar.gz", "train")  # relative to the data directory
    assert torch.equal(from_tar.images, ds.images) and from_tar.classes == ds.classes
    assert len(load_dataset("imagefolder:bugs.tar.gz", "test")) == 3


def test_imagefolder_grayscale_and_size_mismatch(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "0.png").write_bytes(encode_image(np.full((5, 6), 7, np.uint8)))
    ds = load_dataset(f"imagefolder:{tmp_path}", "train", root=tmp_path)
    assert ds.images.shape == (1, 1, 5, 6) and int(ds.images.max()) == 7
    (tmp_path / "train" / "a" / "1.png").write_bytes(encode_image(np.zeros((6, 6, 3), np.uint8)))
    with pytest.raises(ValueError, match="one size.*Resize"):
        load_dataset(f"imagefolder:{tmp_path}", "train", root=tmp_path)


def test_png_modes_decode_alike_with_torchvision_and_pil(tmp_path, monkeypatch):
    from PIL import Image

    from course_lib import datasets_formats

    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    modes = {"a_gray": Image.fromarray(rgb[:, :, 0]), "b_rgb": Image.fromarray(rgb),
             "c_rgba": Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])), "d_palette": Image.fromarray(rgb).convert("P")}
    for name, img in modes.items():
        (tmp_path / "train" / name).mkdir(parents=True)
        img.save(tmp_path / "train" / name / "0.png")
    with_tv = load_dataset(f"imagefolder:{tmp_path}", root=tmp_path)
    for cache in cache_files(tmp_path):
        cache.unlink()
    monkeypatch.setattr(datasets_formats, "_torchvision_decoder", lambda: None)
    with_pil = load_dataset(f"imagefolder:{tmp_path}", root=tmp_path)
    assert torch.equal(with_tv.images, with_pil.images) and with_tv.images.shape == (4, 3, 4, 5)
    hwc = with_tv.images.permute(0, 2, 3, 1).numpy()
    assert (hwc[0] == rgb[:, :, :1]).all()  # gray repeated over RGB when the folder mixes modes
    assert (hwc[1] == rgb).all() and (hwc[2] == rgb).all()  # alpha dropped
    assert (hwc[3] == np.asarray(modes["d_palette"].convert("RGB"))).all()  # palette colours, not indices


def test_digits_needs_no_files(datadir):
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.images.shape == (1438, 1, 28, 28) and len(test) == 359
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    assert torch.bincount(test.labels).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    assert torch.equal(load_dataset("digits", "test").images, test.images)
    assert not any(datadir.iterdir())


# ------------------------------------------------------------------------ caching


def test_cache_hit_skips_decoding_and_stale_cache_is_rebuilt(datadir, monkeypatch):
    truth = write_mnist(datadir)
    first = load_dataset("mnist")
    [cache] = [p for p in cache_files(datadir) if "-train-" in p.name]
    assert not [p for p in cache_files(datadir) if p.suffix == ".tmp"]  # temp file was renamed away

    def must_not_decode(*args):
        raise AssertionError("decoded despite a valid cache")

    monkeypatch.setattr(data, "_decode_source", must_not_decode)
    assert torch.equal(load_dataset("mnist").images, first.images)
    monkeypatch.undo()
    monkeypatch.setenv("COURSE_DATA", str(datadir))

    images = truth["train"][0].copy()
    images[0] = 0  # same size, new content, new mtime: the fingerprint changes
    path = write_idx(datadir / "MNIST/raw/train-images-idx3-ubyte", images, gz=True)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert int(load_dataset("mnist").images[0].max()) == 0
    train_caches = [p for p in cache_files(datadir) if "-train-" in p.name]
    assert len(train_caches) == 1 and train_caches[0] != cache  # old one removed


def test_corrupt_cache_is_discarded_and_rebuilt(datadir):
    write_mnist(datadir)
    good = load_dataset("mnist", "test")
    [cache] = [p for p in cache_files(datadir) if "-test-" in p.name]
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.warns(UserWarning, match="discarding unreadable tensor cache"):
        again = load_dataset("mnist", "test")
    assert torch.equal(again.images, good.images) and cache.stat().st_size > 100


# --------------------------------------------------------------- corrupt files


def test_idx_bad_magic_truncation_and_gzip_errors(datadir):
    write_mnist(datadir, gz={"train": True, "test": False})
    raw = datadir / "MNIST/raw"
    images = raw / "t10k-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(b"\x00\x00\x09\x03" + good[4:])
    with pytest.raises(CorruptDatasetError, match="t10k-images-idx3-ubyte: bad IDX magic"):
        load_dataset("mnist", "test")
    images.write_bytes(good[:-50])
    with pytest.raises(CorruptDatasetError, match=r"size mismatch.*truncated") as err:
        load_dataset("mnist", "test")
    assert isinstance(err.value, ValueError) and str(images) in str(err.value)

    gz = raw / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-12])  # cut the gzip trailer and some data
    with pytest.raises(CorruptDatasetError, match="train-labels-idx1-ubyte.gz: gzip error"):
        load_dataset("mnist", "train")
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x03" + bytes([1, 2, 3])))
    with pytest.raises(CorruptDatasetError, match="holds 3 labels but train-images-idx3-ubyte.gz holds 20"):
        load_dataset("mnist", "train")


def test_cifar_pickle_truncated_and_corrupt(datadir):
    write_cifar10(datadir)
    batch = datadir / "cifar-10-batches-py" / "data_batch_3"
    good = batch.read_bytes()
    batch.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptDatasetError, match="data_batch_3: truncated"):
        load_dataset("cifar10")
    batch.write_bytes(b"this is not a pickle")
    with pytest.raises(CorruptDatasetError, match="data_batch_3: unpickling error"):
        load_dataset("cifar10")
    batch.write_bytes(b"cos\nsystem\n(S'echo hacked'\ntR.")  # a pickle that would run a command
    with pytest.raises(CorruptDatasetError, match="refusing to load os.system"):
        load_dataset("cifar10")

    write_cifar100(datadir)
    meta = datadir / "cifar-100-python" / "meta"
    meta.write_bytes(meta.read_bytes()[:30])
    with pytest.raises(CorruptDatasetError, match="meta: truncated"):
        load_dataset("cifar100", "test")


def test_imagenet_pickle_truncated_and_bad_content(datadir):
    write_imagenet(datadir, size=16)
    val = datadir / "Imagenet16_val" / "val_data"
    good = val.read_bytes()
    val.write_bytes(good[:-40])
    with pytest.raises(CorruptDatasetError, match="val_data: truncated"):
        load_dataset("imagenet16", "test")
    write_imagenet(datadir, size=32)  # 32x32 rows where 16x16 are expected
    for path in (datadir / "Imagenet32_val").iterdir():
        val.write_bytes(path.read_bytes())
    with pytest.raises(CorruptDatasetError, match=r"val_data: 'data' should be a uint8 array of shape \(N, 768\)"):
        load_dataset("imagenet16", "test")


def test_imagefolder_undecodable_image_and_truncated_tar(datadir):
    write_imagefolder(datadir / "tree", ["a", "b"], {"train": 1, "test": 1})
    bad = datadir / "tree" / "train" / "b" / "0000.png"
    good = bad.read_bytes()
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(CorruptDatasetError, match="0000.png: undecodable image"):
        load_dataset(f"imagefolder:{datadir / 'tree'}")
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptDatasetError, match="0000.png: undecodable image"):
        load_dataset(f"imagefolder:{datadir / 'tree'}")

    bad.write_bytes(good)
    tar = make_tar_gz(datadir / "tree", datadir / "tree.tar.gz")
    tar.write_bytes(tar.read_bytes()[:-30])
    with pytest.raises(CorruptDatasetError, match="tree.tar.gz: (truncated archive|archive error)"):
        load_dataset(f"imagefolder:{tar}")


# ---------------------------------------------------------------- missing files


def _assert_helpful(message: str, *needles: str) -> None:
    for needle in needles:
        assert needle in message, f"{needle!r} missing from:\n{message}"


def test_missing_mnist_with_failed_download(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    calls = []

    def offline(self):
        calls.append(self.root)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", "test")
    assert isinstance(err.value, FileNotFoundError) and calls == [str(tmp_path)]
    _assert_helpful(str(err.value), "'mnist'", str(tmp_path / "MNIST/raw/t10k-images-idx3-ubyte[.gz]"),
                    "t10k-labels-idx1-ubyte", "COURSE_DATA", "URLError", "course data prepare mnist",
                    "yann.lecun.com")


def test_missing_cifar10_download_oserror_and_download_false(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(self):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", "train", root=tmp_path)
    _assert_helpful(str(err.value), "data_batch_1", "cifar10-jpg.tar.gz", str(tmp_path), "Network is unreachable",
                    "COURSE_DATA", "course data prepare cifar10", "cs.toronto.edu")

    def must_not_run(self):
        raise AssertionError("download attempted")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", must_not_run)
    with pytest.raises(DatasetNotFoundError, match=r"download=False"):
        load_dataset("cifar10", "test", root=tmp_path, download=False)


def test_missing_imagenet_says_where_to_get_it(datadir):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("imagenet32", "test", download=True)
    _assert_helpful(str(err.value), "imagenet32", str(datadir / "Imagenet32_val" / "val_data"), "image-net.org",
                    "cannot be downloaded automatically", "COURSE_DATA", "Imagenet32_train")
    with pytest.raises(DatasetNotFoundError, match="imagefolder"):
        load_dataset("imagefolder:nowhere")


def test_unknown_name_and_bad_split():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar-1O'.*Did you mean 'cifar10'.*mnist, fashion-mnist"):
        load_dataset("cifar-1O")
    with pytest.raises(ValueError, match=r"unknown split 'val'; valid splits are 'train', 'test'"):
        load_dataset("digits", "val")


def test_dataset_info():
    info = data.dataset_info("MNIST")
    assert info["num_classes"] == 10 and info["image_shape"] == (1, 28, 28)
    assert info["expected_files"]["train"][0] == ["MNIST/raw/train-images-idx3-ubyte[.gz]",
                                                  "MNIST/raw/train-labels-idx1-ubyte[.gz]"]
    assert data.dataset_info("imagenet16")["downloadable"] is False
    assert set(data.KNOWN_DATASETS) >= {"mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet16",
                                        "imagenet32", "digits"}


# ----------------------------------------------------------------------- helpers


def test_few_label_subset_balanced_deterministic_and_checked():
    labels = torch.arange(100) % 4
    idx = data.few_label_subset(labels, 5, seed=1)
    assert torch.bincount(labels[idx]).tolist() == [5, 5, 5, 5] and len(idx.unique()) == 20
    assert torch.equal(idx, data.few_label_subset(labels, 5, seed=1))
    assert not torch.equal(idx, data.few_label_subset(labels, 5, seed=2))
    with pytest.raises(ValueError, match="class 3 has only 1 examples"):
        data.few_label_subset(torch.tensor([0, 0, 3]), 2)
    with pytest.raises(ValueError, match="positive int"):
        data.few_label_subset(labels, 0)


def test_stratified_split_disjoint_covering_proportional():
    labels = torch.tensor([0] * 80 + [1] * 20)
    train, val = data.stratified_split(labels, val_fraction=0.25, seed=0)
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    assert torch.bincount(labels[val]).tolist() == [20, 5]
    again = data.stratified_split(labels, 0.25, seed=0)
    assert torch.equal(again[0], train) and torch.equal(again[1], val)
    for bad in (0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            data.stratified_split(labels, bad)


def test_image_dataset_subset_and_validation():
    ds = ImageDataset(torch.arange(24, dtype=torch.uint8).reshape(6, 1, 2, 2), torch.arange(6), ["a"] * 6, "x", "train")
    sub = ds.subset([4, 1])
    assert sub.labels.tolist() == [4, 1] and torch.equal(sub.images[0], ds.images[4]) and sub.name == "x"
    assert ds.subset(ds.labels % 2 == 0).labels.tolist() == [0, 2, 4]
    assert "n=6" in repr(ds) and len(ds.subset([])) == 0
    with pytest.raises(IndexError, match="dataset has 6 rows"):
        ds.subset([6])
    with pytest.raises(TypeError, match="uint8"):
        ImageDataset(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long), ["a"])
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), ["a"])


def test_to_float_channel_stats_normalize():
    x = torch.zeros(4, 2, 3, 3, dtype=torch.uint8)
    x[:2, 0] = 255  # channel 0: half the images white -> mean 0.5, std 0.5
    x[:, 1] = 51  # channel 1: constant 0.2
    f = data.to_float(x)
    assert f.dtype == torch.float32 and float(f.max()) == 1.0
    mean, std = data.channel_stats(x, chunk=3)
    assert torch.allclose(mean, torch.tensor([0.5, 0.2])) and torch.allclose(std, torch.tensor([0.5, 0.0]), atol=1e-6)
    z = data.normalize(f, [0.5, 0.2], [0.5, 1.0])
    assert torch.allclose(z[:, 0].abs(), torch.ones(4, 3, 3)) and torch.allclose(z[:, 1], torch.zeros(4, 3, 3))
    with pytest.raises(TypeError, match="to_float"):
        data.normalize(x, [0.5, 0.2], [0.5, 1.0])
    with pytest.raises(ValueError, match="one value per channel"):
        data.normalize(f, [0.5], [0.5])
    with pytest.raises(TypeError, match="uint8"):
        data.to_float(f)


# --------------------------------------------------------------------------- CLI


def test_cli_verify_digits(capsys):
    assert data.cli(["verify", "digits"]) == 0
    out = capsys.readouterr().out
    assert "digits train: 1438 images" in out and "0:142" in out and "digits test: 359 images" in out
    assert out.strip().endswith("OK")


def test_cli_list_prepare_verify_on_tiny_files(datadir, capsys):
    write_mnist(datadir)
    assert data.cli(["list"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("mnist ")][0].split()[:2] == ["mnist", "yes"]
    assert "cifar100       no" in out

    assert data.cli(["prepare", "mnist", "--root", str(datadir)]) == 0
    assert "mnist train: 20 images" in capsys.readouterr().out
    data.cli(["list"])
    assert "train,test" in [line for line in capsys.readouterr().out.splitlines() if line.startswith("mnist ")][0]

    assert data.cli(["verify", "mnist"]) == 1  # 20 images, not 60000: a problem worth reporting
    out = capsys.readouterr().out
    assert "20 images, expected 60000" in out and "0:2" in out
    assert data.cli(["prepare", "cifar100"]) == 1
    assert "cifar-100-python" in capsys.readouterr().err
    assert data.cli(["frobnicate"]) == 2


# ---------------------------------------------------------------- real datasets


def _real_data_dir() -> Path | None:
    for d in (os.environ.get("COURSE_DATA"), "/work/shared/data", Path(data.__file__).parents[2] / "shared/data"):
        if d and (Path(d) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
            return Path(d)
    return None


@pytest.mark.slow
@pytest.mark.skipif(_real_data_dir() is None, reason="no offline MNIST copy ($COURSE_DATA or /work/shared/data)")
def test_real_mnist_and_cifar10_jpg(tmp_path, monkeypatch):
    """Decodes the real files each run (caches go to tmp_path, not the shared folder); prints timings."""
    root = _real_data_dir()
    monkeypatch.setattr(data.paths, "tensor_cache_dir", lambda root=None: tmp_path)

    def timed(name: str, split: str) -> ImageDataset:
        start = time.perf_counter()
        ds = load_dataset(name, split, root=root, download=False)
        print(f"{name} {split}: {len(ds)} images in {time.perf_counter() - start:.2f}s")
        return ds

    train = timed("mnist", "train")  # decode
    train = timed("mnist", "train")  # cache hit
    test = timed("mnist", "test")
    assert torch.bincount(train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert "".join(map(str, train.labels[:10].tolist())) == "5041921314"
    mean, std = data.channel_stats(train)
    assert abs(float(mean) - 0.1307) < 1e-3 and abs(float(std) - 0.3081) < 1e-3

    if (root / "cifar10-jpg" / "cifar10-jpg.tar.gz").exists():
        assert len(timed("cifar10", "train")) == 50000  # one pass decodes and caches both splits
        cifar = timed("cifar10", "test")
        assert cifar.images.shape == (10000, 3, 32, 32) and cifar.classes == CIFAR10_CLASSES
        assert torch.bincount(cifar.labels).tolist() == [1000] * 10
        mean, _ = data.channel_stats(cifar)
        assert torch.allclose(mean, torch.tensor([0.494, 0.485, 0.450]), atol=2e-3)
