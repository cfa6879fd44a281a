"""Writers of tiny dataset files in the real on-disk formats, for tests, and tiny image tensors.

Each writer puts a few images where ``course_lib.data`` (and torchvision) expect
them under a data directory and returns what it wrote, so a test can compare the
loaded tensors with the truth.  Sizes are tiny: every file takes milliseconds.
``stripe_images`` makes a two-class set of 8 px images in memory.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

def stripe_images(n_per: int = 64, seed: int = 0):
    """Tiny 8 px uint8 images ``(2 * n_per, 1, 8, 8)`` of two kinds: a bright top half (label 0) or a bright
    left half (label 1), with noise; returns ``(images, labels)`` as torch tensors."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n_per, 1, 8, 8, generator=g) * 60
    x[:n_per, :, :4, :] += 180
    x[n_per:, :, :, :4] += 180
    return x.clamp(0, 255).to(torch.uint8), torch.arange(2).repeat_interleave(n_per)


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """Write a uint8 array as an IDX file (magic 0x000008NN, big-endian dims), optionally gzipped."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    blob = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


def write_mnist(root: Path, folder: str = "MNIST", n: dict | None = None, gz: dict | None = None,
                seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``; returns split -> (images, labels)."""
    n = n or {"train": 20, "test": 10}
    gz = gz or {"train": True, "test": False}
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = rng.integers(0, 256, (n[split], 28, 28), dtype=np.uint8)
        labels = (np.arange(n[split]) % 10).astype(np.uint8)
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images, gz[split])
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels, gz[split])
        out[split] = images, labels
    return out


def _py2_style_pickle(path: Path, d: dict) -> None:
    """Pickle like the CIFAR files: protocol 2, byte-string keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({k.encode(): v for k, v in d.items()}, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 3, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    out: dict[str, list] = {"train": [], "test": []}
    for split, name in [("train", f"data_batch_{i}") for i in range(1, 6)] + [("test", "test_batch")]:
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _py2_style_pickle(base / name, {"batch_label": name, "labels": labels, "data": rows,
                                        "filenames": [f"{i}.png" for i in range(per_batch)]})
        out[split].append((rows, labels))
    _py2_style_pickle(base / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch,
                                              "num_vis": 3072})
    return {s: (np.concatenate([r for r, _ in v]).reshape(-1, 3, 32, 32), np.concatenate([l for _, l in v]))
            for s, v in out.items()}


def write_cifar100(root: Path, n: int = 7, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/cifar-100-python/{train,test,meta}`` with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "test"):
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        _py2_style_pickle(root / "cifar-100-python" / split, {
            "filenames": [f"{i}.png" for i in range(n)], "batch_label": split, "fine_labels": fine,
            "coarse_labels": [f // 5 for f in fine], "data": rows})
        out[split] = rows.reshape(-1, 3, 32, 32), np.array(fine)
    _py2_style_pickle(root / "cifar-100-python" / "meta", {
        "fine_label_names": [f"fine{i:02d}" for i in range(100)],
        "coarse_label_names": [f"coarse{i:02d}" for i in range(20)]})
    return out


def write_imagenet(root: Path, size: int = 16, layout: str = "nested", per_batch: int = 2,
                   with_map: bool = False, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Downsampled-ImageNet pickles (Python 3, str keys, 1-based labels, a 'mean' entry).

    ``layout="nested"``: ``root/Imagenet{S}_train/train_data_batch_1..10`` and
    ``root/Imagenet{S}_val/val_data``; ``"flat"``: all of them in ``root/imagenet{S}/``.
    Returns 0-based labels.
    """
    rng = np.random.default_rng(seed)
    train_dir = root / f"Imagenet{size}_train" if layout == "nested" else root / f"imagenet{size}"
    val_dir = root / f"Imagenet{size}_val" if layout == "nested" else root / f"imagenet{size}"
    out: dict[str, list] = {"train": [], "test": []}
    files = [("train", train_dir / f"train_data_batch_{i}") for i in range(1, 11)] + [("test", val_dir / "val_data")]
    for split, path in files:
        rows = rng.integers(0, 256, (per_batch, 3 * size * size), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(1, 1001, per_batch)]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump({"data": rows, "labels": labels, "mean": rows.mean(0)}, f)
        out[split].append((rows, labels))
    if with_map:
        (train_dir.parent / "map_clsloc.txt").write_text(
            "".join(f"n{1000000 + i:08d} {i} name_{i}\n" for i in range(1, 1001)))
    return {s: (np.concatenate([r for r, _ in v]).reshape(-1, 3, size, size), np.concatenate([l for _, l in v]) - 1)
            for s, v in out.items()}


def encode_image(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode an (H, W, 3) or (H, W) uint8 array with PIL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def write_imagefolder(root: Path, classes: list[str], per_class: dict[str, int], size: int = 8,
                      fmt: str = "PNG", seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/<split>/<class>/NNNN.png|jpg``; returns split -> ((N, 3, H, W), labels) in class, name order."""
    rng = np.random.default_rng(seed)
    ext = "png" if fmt == "PNG" else "jpg"
    out = {}
    for split, k in per_class.items():
        images, labels = [], []
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(k):
                img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                (root / split / name / f"{i:04d}.{ext}").write_bytes(encode_image(img, fmt))
                images.append(img.transpose(2, 0, 1))
                labels.append(c)
        out[split] = np.stack(images), np.array(labels)
    return out


def make_tar_gz(src: Path, dest: Path, prefix: str = "") -> Path:
    """Tar+gzip the tree under ``src`` (members named ``prefix/<relative path>``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=str(Path(prefix) / path.relative_to(src)) if prefix else
                    str(path.relative_to(src)), recursive=False)
    return dest
