"""Datasets as in-memory tensors: ``load_dataset(name, split)`` and a few helpers.

Every dataset comes back as an :class:`ImageDataset` -- uint8 images ``(N, C, H, W)``
and int64 labels -- small enough to live in memory, so training loops slice tensors
instead of decoding files per sample.

Where the files come from, in order:

1. the data directory (``root`` argument, else ``$COURSE_DATA``, else the per-user
   cache; see :mod:`course_lib.paths`), in the layouts torchvision uses
   (``MNIST/raw/*-ubyte[.gz]``, ``cifar-10-batches-py/``, ...) or as an ImageFolder
   tar (``cifar10-jpg/cifar10-jpg.tar.gz``);
2. for Fashion-MNIST, the folder of Debian's ``dataset-fashion-mnist`` package;
3. a torchvision download into the data directory (``download=None`` tries it unless
   ``$COURSE_OFFLINE`` is set; ``False`` never; ``True`` always).

The first load converts the files into a tensor cache (``paths.tensor_cache_dir``)
keyed by the source files' size and mtime, so later loads take well under a second
and editing or replacing a file invalidates the cache.  Missing files raise
:class:`DatasetNotFoundError`, damaged ones :class:`CorruptDatasetError`; both say
which file and how to fix it.  Importing this module never touches the network.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from course_lib import paths
from course_lib.datasets_formats import (
    IMAGE_EXTENSIONS,
    CorruptDatasetError,
    label_names,
    read_cifar_batches,
    read_clsloc_map,
    read_idx_pair,
    read_imagefolder_dir,
    read_imagefolder_tar,
    read_imagenet_batches,
)

SPLITS = ("train", "test")
KNOWN_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet16", "imagenet32", "digits")
_ALIASES = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
            "cifar-100": "cifar100", "imagenet-16": "imagenet16", "imagenet-32": "imagenet32"}
_CACHE_VERSION = 1
#: Where Debian's ``dataset-fashion-mnist`` installs when ``dpkg -L`` cannot tell us.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where we looked; the message says where and how to get them."""

    def __init__(self, message: str, dataset: str = "", expected: Sequence[Path] = (), directory: Path | None = None):
        super().__init__(message)
        self.dataset, self.expected, self.directory = dataset, list(expected), directory

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(eq=False, repr=False)
class ImageDataset:
    """Images ``uint8 (N, C, H, W)``, labels ``int64 (N,)`` and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.ndim != 4:
            x = self.images
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got {got}; "
                            "convert with (x * 255).round().to(torch.uint8) and add a channel dim if needed")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise TypeError("labels must be an int64 tensor (N,); convert with torch.as_tensor(labels).long()")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels; they must match")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"image_shape={tuple(self.images.shape[1:])}, classes={len(self.classes)})")

    def subset(self, indices: Any) -> ImageDataset:
        """A new dataset of the rows ``indices`` (index tensor/list or boolean mask)."""
        idx = torch.as_tensor(indices)
        if idx.numel() == 0:
            idx = idx.long().reshape(0)
        if idx.dtype == torch.bool:
            if idx.shape != self.labels.shape:
                raise ValueError(f"boolean mask has shape {tuple(idx.shape)}, dataset has {len(self)} rows")
            idx = idx.nonzero().flatten()
        if idx.is_floating_point() or idx.ndim != 1:
            raise TypeError(f"indices must be a 1-D integer sequence or boolean mask, "
                            f"got {idx.dtype} {tuple(idx.shape)}")
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"indices span {int(idx.min())}..{int(idx.max())} but the dataset has {len(self)} rows")
        idx = idx.long()
        return ImageDataset(self.images[idx], self.labels[idx], list(self.classes), self.name, self.split)


# ------------------------------------------------------------------ dataset info

_INFO: dict[str, dict[str, Any]] = {
    "mnist": dict(title="MNIST handwritten digits", num_classes=10, image_shape=(1, 28, 28),
                  counts={"train": 60000, "test": 10000}, url="http://yann.lecun.com/exdb/mnist/", downloadable=True),
    "fashion-mnist": dict(title="Fashion-MNIST", num_classes=10, image_shape=(1, 28, 28),
                          counts={"train": 60000, "test": 10000},
                          url="https://github.com/zalandoresearch/fashion-mnist", downloadable=True),
    "cifar10": dict(title="CIFAR-10", num_classes=10, image_shape=(3, 32, 32), counts={"train": 50000, "test": 10000},
                    url="https://www.cs.toronto.edu/~kriz/cifar.html", downloadable=True),
    "cifar100": dict(title="CIFAR-100 (fine labels)", num_classes=100, image_shape=(3, 32, 32),
                     counts={"train": 50000, "test": 10000},
                     url="https://www.cs.toronto.edu/~kriz/cifar.html", downloadable=True),
    "imagenet16": dict(title="Downsampled ImageNet 16x16 (Chrabaszcz et al. 2017)", num_classes=1000,
                       image_shape=(3, 16, 16), counts={"train": 1281167, "test": 50000},
                       url="https://image-net.org/download-images.php", downloadable=False),
    "imagenet32": dict(title="Downsampled ImageNet 32x32 (Chrabaszcz et al. 2017)", num_classes=1000,
                       image_shape=(3, 32, 32), counts={"train": 1281167, "test": 50000},
                       url="https://image-net.org/download-images.php", downloadable=False),
    "digits": dict(title="scikit-learn 8x8 digits, upsampled to 28x28", num_classes=10, image_shape=(1, 28, 28),
                   counts={"train": 1438, "test": 359}, downloadable=False,
                   url="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html"),
}


def _idx_files(folder: str, split: str) -> tuple[str, ...]:
    prefix = "train" if split == "train" else "t10k"
    return (f"{folder}{prefix}-images-idx3-ubyte[.gz]", f"{folder}{prefix}-labels-idx1-ubyte[.gz]")


def _layouts(key: str) -> list[tuple[str, str, dict[str, tuple[str, ...]], tuple[str, ...]]]:
    """(reader, subfolder of the data dir, split -> required files, optional files), in lookup order.

    ``X[.gz]`` stands for ``X`` or ``X.gz``.
    """
    if key in ("mnist", "fashion-mnist"):
        folder = "MNIST/raw/" if key == "mnist" else "FashionMNIST/raw/"
        return [("idx", "", {s: _idx_files(folder, s) for s in SPLITS}, ())]
    if key == "cifar10":
        batches = {"train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
                   "test": ("cifar-10-batches-py/test_batch",)}
        jpg = ("cifar10-jpg/cifar10-jpg.tar.gz",)
        return [("cifar10", "", batches, ("cifar-10-batches-py/batches.meta",)),
                ("cifar10-jpg", "", {"train": jpg, "test": jpg}, ())]
    if key == "cifar100":
        return [("cifar100", "", {s: (f"cifar-100-python/{s}", "cifar-100-python/meta") for s in SPLITS}, ())]
    if key.startswith("imagenet"):
        s = key[len("imagenet"):]
        nested = {"train": tuple(f"Imagenet{s}_train/train_data_batch_{i}" for i in range(1, 11)),
                  "test": (f"Imagenet{s}_val/val_data",)}
        flat = {"train": tuple(f"train_data_batch_{i}" for i in range(1, 11)), "test": ("val_data",)}
        maps = ("map_clsloc.txt", f"Imagenet{s}_train/map_clsloc.txt", f"Imagenet{s}_val/map_clsloc.txt")
        return [("imagenet", "", nested, maps), ("imagenet", key, nested, maps), ("imagenet", key, flat, maps)]
    return []


def dataset_info(name: str) -> dict[str, Any]:
    """What a dataset is and which files it needs: title, num_classes, image_shape, counts,
    url, downloadable, and expected_files (split -> paths relative to the data directory,
    one list per accepted layout; ``X[.gz]`` means ``X`` or ``X.gz``)."""
    key, folder = _canonical(name)
    if key == "imagefolder":
        return dict(name=name, title=f"ImageFolder tree at {folder}", num_classes=None, image_shape=None,
                    counts=None, url=None, downloadable=False,
                    expected_files={s: [[f"{folder}/{s}/<class>/*.png|jpg|jpeg"], [f"{folder} (.tar.gz of that tree)"]]
                                    for s in SPLITS})
    info = dict(name=key, **_INFO[key])
    info["expected_files"] = {
        s: [[f"{sub}/{f}" if sub else f for f in files[s]] for _, sub, files, _ in _layouts(key)] for s in SPLITS
    }
    if key == "fashion-mnist":
        for s in SPLITS:
            info["expected_files"][s].append([str(_debian_fashion_dir() / f) for f in _idx_files("", s)])
    return info


def _canonical(name: str) -> tuple[str, Path | None]:
    """(known name or "imagefolder", folder for imagefolder); ValueError for unknown names."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    if name.strip().lower().startswith("imagefolder:"):
        folder = name.strip()[len("imagefolder:"):]
        if not folder:
            raise ValueError("imagefolder needs a path: load_dataset('imagefolder:/path/to/tree_or.tar.gz')")
        return "imagefolder", Path(folder).expanduser()
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in KNOWN_DATASETS:
        return key, None
    close = difflib.get_close_matches(key, KNOWN_DATASETS, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(KNOWN_DATASETS)}, "
                     "or 'imagefolder:<path>' for a <split>/<class>/*.png|jpg tree or a .tar.gz of one.")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(repr(s) for s in SPLITS)}")


# ----------------------------------------------------------------------- sources


@dataclass
class _Source:
    """Files found for one split: which reader, from where, and what to fingerprint."""

    reader: str
    where: str  # human-readable origin: "data dir ($COURSE_DATA)", "Debian package", ...
    base: Path
    files: list[Path]
    extras: list[Path] = field(default_factory=list)


def _dir_origin(root: str | os.PathLike | None) -> str:
    if root is not None:
        return "data dir (root argument)"
    if os.environ.get("COURSE_DATA"):
        return "data dir ($COURSE_DATA)"
    return "user cache (COURSE_DATA not set)"


def _resolve(base: Path, rel: str) -> Path | None:
    if rel.endswith("[.gz]"):
        stem = base / rel[: -len("[.gz]")]
        return next((p for p in (stem, stem.with_name(stem.name + ".gz")) if p.is_file()), None)
    p = base / rel
    return p if p.is_file() else None


def _dpkg_list(package: str) -> list[str]:
    """Paths a Debian package installed (``dpkg -L``); empty when dpkg or the package is absent."""
    try:
        out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def _debian_fashion_dir() -> Path:
    for line in _dpkg_list("dataset-fashion-mnist"):
        if line.strip().endswith("train-images-idx3-ubyte.gz"):
            return Path(line.strip()).parent
    return DEBIAN_FASHION_MNIST_DIR


def _find(key: str, split: str, root: str | os.PathLike | None, folder: Path | None = None) -> _Source | None:
    """The first place holding every file ``split`` needs, or None."""
    base = paths.data_dir(root)
    if key == "imagefolder":
        return _find_imagefolder(folder, split, base)
    origin = _dir_origin(root)
    candidates = [(reader, base / sub, files, extras, origin) for reader, sub, files, extras in _layouts(key)]
    if key == "fashion-mnist":
        candidates.append(("idx", _debian_fashion_dir(), {s: _idx_files("", s) for s in SPLITS}, (),
                           "Debian package dataset-fashion-mnist"))
    for reader, where_dir, files, extras, origin in candidates:
        found = [_resolve(where_dir, f) for f in files[split]]
        if all(found):
            extra = [p for p in (_resolve(where_dir, e) for e in extras) if p]
            return _Source(reader, origin, where_dir, found, extra)  # type: ignore[arg-type]
    return None


def _find_imagefolder(folder: Path | None, split: str, base: Path) -> _Source | None:
    assert folder is not None
    for path in ([folder] if folder.is_absolute() else [folder, base / folder]):
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
            return _Source("imagefolder-tar", "archive", path.resolve(), [path.resolve()])
        if (path / split).is_dir():
            images = sorted(p for s in SPLITS for p in (path / s).glob("*/*")
                            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            return _Source("imagefolder-dir", "folder", path.resolve(), images)
    return None


# ------------------------------------------------------------------------- cache


def _slug(key: str, source: _Source) -> str:
    if key != "imagefolder":
        return key
    return "imagefolder-" + re.sub(r"[^A-Za-z0-9._-]+", "_", source.base.name)


def _cache_path(key: str, split: str, source: _Source, root: str | os.PathLike | None) -> Path:
    h = hashlib.sha1(f"v{_CACHE_VERSION}|{source.reader}|{source.base.resolve()}".encode())
    for f in sorted(source.files + source.extras):
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return paths.tensor_cache_dir(root) / f"{_slug(key, source)}-{split}-{h.hexdigest()[:12]}.pt"


def _read_cache(path: Path, name: str, split: str) -> ImageDataset | None:
    if not path.is_file():
        return None
    try:
        d = torch.load(path, weights_only=True)
        return ImageDataset(d["images"], d["labels"], [str(c) for c in d["classes"]], name, split)
    except Exception as err:  # any unreadable cache is rebuilt from the source files
        warnings.warn(f"discarding unreadable tensor cache {path} ({type(err).__name__}: {err}); rebuilding it")
        path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, ds: ImageDataset) -> None:
    """Save atomically (temp file + os.replace) and drop stale caches of the same dataset/split."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save({"images": ds.images, "labels": ds.labels, "classes": list(ds.classes),
                        "name": ds.name, "split": ds.split, "version": _CACHE_VERSION}, f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache should stay readable
        os.replace(tmp, path)
        tmp = None
        prefix = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(prefix + "*.pt"):
            if old != path and re.fullmatch(r"[0-9a-f]{12}\.pt", old.name[len(prefix):]):
                old.unlink(missing_ok=True)
    except OSError as err:
        warnings.warn(f"could not write tensor cache {path}: {err}; later loads will decode the files again")
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# ----------------------------------------------------------------------- loading


def _decode_source(key: str, split: str, source: _Source) -> dict[str, tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """Read the source files; may return more splits than asked for (one-pass archives)."""
    r, files = source.reader, source.files
    if r == "idx":
        images, labels = read_idx_pair(files[0], files[1], 10)
        return {split: (images, labels, [str(i) for i in range(10)] if key == "mnist" else list(FASHION_CLASSES))}
    if r == "cifar10":
        classes = label_names(source.extras[0], "label_names") if source.extras else list(CIFAR10_CLASSES)
        return {split: (*read_cifar_batches(files, "labels", 10), classes)}
    if r == "cifar100":
        classes = label_names(files[-1], "fine_label_names")
        return {split: (*read_cifar_batches(files[:-1], "fine_labels", 100), classes)}
    if r == "imagenet":
        classes = read_clsloc_map(source.extras[0]) if source.extras else [f"n{i}" for i in range(1000)]
        return {split: (*read_imagenet_batches(files, int(key[len("imagenet"):])), classes)}
    if r in ("imagefolder-tar", "cifar10-jpg"):
        splits, classes = read_imagefolder_tar(files[0], SPLITS)
        if r == "cifar10-jpg" and classes != CIFAR10_CLASSES:
            raise CorruptDatasetError(files[0], f"expected class folders {CIFAR10_CLASSES}, found {classes}")
        return {s: (x, y, classes) for s, (x, y) in splits.items() if len(y) or s == split}
    if r == "imagefolder-dir":
        splits, classes = read_imagefolder_dir(source.base, (split,))
        return {split: (*splits[split], classes)}
    raise AssertionError(f"no reader {r!r}")


def _load_digits(split: str) -> ImageDataset:
    """scikit-learn's bundled 8x8 digits (0..16), upsampled bilinearly to 28x28 uint8."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().mul(255.0 / 16.0).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    images = x.round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(d.target).long()
    train_idx, test_idx = stratified_split(labels, val_fraction=0.2, seed=0)
    idx = train_idx if split == "train" else test_idx
    return ImageDataset(images[idx], labels[idx], [str(i) for i in range(10)], "digits", split)


def _want_download(download: bool | None) -> bool:
    if download is None:
        return os.environ.get("COURSE_OFFLINE", "").lower() in ("", "0", "false", "no")
    return bool(download)


def _torchvision_download(key: str, base: Path) -> None:
    """Let torchvision fetch the files into its usual layout under ``base``."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[key]
    base.mkdir(parents=True, exist_ok=True)
    cls(root=str(base), train=True, download=True)


def _collapse(files: list[str]) -> list[str]:
    """Shorten runs like ``x_1 .. x_10`` to ``x_{1..10}`` for readable messages."""
    m = [re.fullmatch(r"(.*_)(\d+)", f) for f in files]
    if len(files) > 5 and all(m) and len({g.group(1) for g in m}) == 1:  # type: ignore[union-attr]
        return [f"{m[0].group(1)}{{{m[0].group(2)}..{m[-1].group(2)}}}"]  # type: ignore[union-attr]
    return files


def _not_found(key: str, split: str, root: str | os.PathLike | None, folder: Path | None,
               tried: str) -> DatasetNotFoundError:
    base = paths.data_dir(root)
    if key == "imagefolder":
        where = [folder] if folder is not None and folder.is_absolute() else [folder, base / folder]
        msg = (f"Dataset 'imagefolder:{folder}' (split {split!r}) not found. Looked for a folder with "
               f"{split}/<class>/*.png|jpg|jpeg, or a .tar.gz of one, at: {', '.join(map(str, where))}. "
               "Pass an absolute path, or a path relative to the working directory or to the data "
               "directory (set COURSE_DATA or root=).")
        return DatasetNotFoundError(msg, f"imagefolder:{folder}", [p for p in where if p is not None], base)
    info = dataset_info(key)
    alternatives = [[str(base / f) for f in files] for files in info["expected_files"][split]]
    gz = " (X[.gz] means X or X.gz)" if "[.gz]" in str(alternatives) else ""
    lines = [f"Dataset {key!r} ({info['title']}, split {split!r}) was not found.", f"Expected these files{gz}:"]
    for i, files in enumerate(alternatives):
        lines += [("  or " if i and j == 0 else "     ") + f for j, f in enumerate(_collapse(files))]
    lines.append(f"Data directory searched: {base} -- the {_dir_origin(root)}. "
                 "Set the COURSE_DATA environment variable (or pass root=) to use a folder that has the files.")
    lines.append(tried)
    lines.append("How to get them:")
    if info["downloadable"]:
        lines.append(f"  - on a machine with internet, run `course data prepare {key}` (torchvision downloads "
                     f"into {base}), or call load_dataset({key!r}, download=True);")
        lines.append(f"  - or download them by hand from {info['url']} and put them at the paths above;")
    else:
        s = key[len("imagenet"):]
        lines.append(f"  - the downsampled ImageNet cannot be downloaded automatically (ImageNet licence): log in at "
                     f"{info['url']}, download 'Imagenet{s}_train' and 'Imagenet{s}_val' (Downsampled ImageNet "
                     f"{s}x{s}, pickle format) and unpack them into {base} so the files above exist, "
                     f"then run `course data prepare {key}`;")
    lines.append("  - or export COURSE_DATA=/path/to/folder/with/the/files (e.g. the course's offline copy).")
    expected = [Path(f) for f in alternatives[0]]
    return DatasetNotFoundError("\n".join(lines), key, expected, base)


def _load(name: str, split: str, root: str | os.PathLike | None, download: bool | None
          ) -> tuple[ImageDataset, _Source | None, Path | None]:
    key, folder = _canonical(name)
    _check_split(split)
    if key == "digits":
        return _load_digits(split), None, None
    source = _find(key, split, root, folder)
    if source is None:
        if key == "imagefolder":
            raise _not_found(key, split, root, folder, "")
        if not _INFO[key]["downloadable"]:
            tried = "No automatic download is possible for this dataset."
        elif not _want_download(download):
            tried = ("No download was attempted (download=False)." if download is False
                     else "No download was attempted ($COURSE_OFFLINE is set).")
        else:
            try:
                _torchvision_download(key, paths.data_dir(root))
                tried = ""
            except Exception as err:  # torchvision raises RuntimeError/URLError/OSError, among others
                tried = f"The automatic torchvision download failed: {type(err).__name__}: {err}".strip()
            source = _find(key, split, root, folder)
        if source is None:
            raise _not_found(key, split, root, folder, tried or "The torchvision download did not produce the files.")
    ds_name = f"imagefolder:{source.base}" if key == "imagefolder" else key
    cache = _cache_path(key, split, source, root)
    ds = _read_cache(cache, ds_name, split)
    if ds is not None:
        return ds, source, cache
    decoded = _decode_source(key, split, source)
    if split not in decoded or len(decoded[split][1]) == 0:
        raise DatasetNotFoundError(f"{source.base} holds no {split!r} images", ds_name, source.files, source.base)
    for s, (images, labels, classes) in decoded.items():
        built = ImageDataset(images, labels, list(classes), ds_name, s)
        _write_cache(cache if s == split else _cache_path(key, s, source, root), built)
        if s == split:
            ds = built
    assert ds is not None
    return ds, source, cache


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None,
                 download: bool | None = None) -> ImageDataset:
    """Load ``name``'s ``split`` ("train" or "test") as an in-memory :class:`ImageDataset`.

    ``name`` is one of :data:`KNOWN_DATASETS` or ``"imagefolder:<path>"``.  ``root``
    overrides the data directory.  ``download``: None tries a torchvision download
    when files are missing unless ``$COURSE_OFFLINE`` is set; False never downloads.
    Raises DatasetNotFoundError (what is missing, where we looked, how to get it),
    CorruptDatasetError (which file is damaged, how), or ValueError for bad names/splits.
    """
    return _load(name, split, root, download)[0]


# ----------------------------------------------------------------------- helpers


def _as_labels(labels: Any) -> torch.Tensor:
    labels = labels.labels if isinstance(labels, ImageDataset) else torch.as_tensor(labels)
    if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    return labels.long().cpu()


def few_label_subset(labels: Any, n_per_class: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of ``n_per_class`` random examples of every class (same seed, same indices).

    For semi-supervised and few-shot experiments: "100 labels per class".
    """
    labels = _as_labels(labels)
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive int, got {n_per_class!r}")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        if len(idx) < n_per_class:
            raise ValueError(f"class {c} has only {len(idx)} examples, fewer than n_per_class={n_per_class}; "
                             f"ask for at most {len(idx)} per class")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:n_per_class]])
    return torch.cat(chosen).sort().values if chosen else torch.empty(0, dtype=torch.long)


def stratified_split(labels: Any, val_fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train, val), disjoint and covering everything, keeping class proportions.

    Each class gives ``round(count * val_fraction)`` examples to val (at least one to
    each side when it has two or more).  Indices come back sorted.
    """
    labels = _as_labels(labels)
    if not isinstance(val_fraction, (int, float)) or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = round(len(idx) * val_fraction)
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    empty = torch.empty(0, dtype=torch.long)
    return (torch.cat(train).sort().values if train else empty, torch.cat(val).sort().values if val else empty)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float32 in [0, 1], same shape and device."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"to_float expects a uint8 tensor (0..255), got {got}; float images are already converted")
    return images.float().div_(255.0)


def channel_stats(ds: ImageDataset | torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the pixels in [0, 1] (float64 sums, chunked to save memory)."""
    x = ds.images if isinstance(ds, ImageDataset) else ds
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or len(x) == 0:
        raise ValueError("channel_stats needs an ImageDataset or a non-empty (N, C, H, W) tensor")
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk].to("cpu", torch.float64).div_(scale)
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    n = x.numel() / x.shape[1]
    mean = total / n
    std = (total_sq / n - mean.square()).clamp_min(0).sqrt()
    return mean.float(), std.float()


def normalize(
    x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """``(x - mean) / std`` per channel for float images ``(..., C, H, W)``."""
    if not x.is_floating_point():
        raise TypeError(f"normalize expects float images, got {x.dtype}; call to_float(images) first")
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    if x.ndim < 3 or len(mean_t) != x.shape[-3] or len(std_t) != x.shape[-3]:
        channels = x.shape[-3] if x.ndim >= 3 else "?"
        raise ValueError(f"mean/std have {len(mean_t)}/{len(std_t)} values but the images have {channels} "
                         f"channels (shape {tuple(x.shape)}); give one value per channel")
    if bool((std_t <= 0).any()):
        raise ValueError(f"std must be positive, got {std_t.flatten().tolist()}")
    return (x - mean_t) / std_t


# --------------------------------------------------------------------------- CLI


def _cmd_list(root: str | None) -> int:
    rows = [("dataset", "present", "source", "location", "cached")]
    for key in KNOWN_DATASETS:
        if key == "digits":
            rows.append((key, "yes", "scikit-learn", "(bundled)", "n/a"))
            continue
        found = {s: _find(key, s, root) for s in SPLITS}
        have = [s for s in SPLITS if found[s]]
        present = "yes" if len(have) == 2 else (f"{have[0]} only" if have else "no")
        src = found.get("train") or found.get("test")
        cached = [s for s in have if _cache_path(key, s, found[s], root).is_file()]  # type: ignore[arg-type]
        rows.append((key, present, src.where if src else "-", str(src.base) if src else "-",
                     ",".join(cached) if cached else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\ndata directory: {paths.data_dir(root)} ({_dir_origin(root)}); "
          "also loadable: imagefolder:<path> (<split>/<class>/*.png|jpg tree or a .tar.gz of one)")
    return 0


def _cmd_prepare(names: list[str], root: str | None, download: bool | None) -> int:
    failures = 0
    for name in names:
        for split in SPLITS:
            try:
                ds, source, cache = _load(name, split, root, download)
            except (DatasetNotFoundError, CorruptDatasetError, ValueError) as err:
                print(f"{name} {split}: ERROR\n{err}\n", file=sys.stderr)
                failures += 1
                continue
            where = f"from {source.where} {source.base}, cached at {cache}" if source else "(built in, no files)"
            print(f"{ds.name} {split}: {len(ds)} images {tuple(ds.images.shape[1:])} {where}")
    return 1 if failures else 0


def _verify_one(name: str, split: str, root: str | None) -> list[str]:
    ds = load_dataset(name, split, root)
    problems = []
    counts = torch.bincount(ds.labels, minlength=len(ds.classes)) if len(ds) else torch.zeros(0, dtype=torch.long)
    mean, std = channel_stats(ds) if len(ds) else (torch.zeros(0), torch.zeros(0))
    print(f"{ds.name} {split}: {len(ds)} images, shape {tuple(ds.images.shape)}, dtype {ds.images.dtype}, "
          f"labels {ds.labels.dtype}, {len(ds.classes)} classes")
    print(f"  pixel mean {[round(v, 4) for v in mean.tolist()]}  std {[round(v, 4) for v in std.tolist()]}")
    if len(ds.classes) <= 20:
        print("  per class: " + "  ".join(f"{c}:{n}" for c, n in zip(ds.classes, counts.tolist())))
    elif len(ds):
        print(f"  per class: min {int(counts.min())}, max {int(counts.max())} over {len(ds.classes)} classes")
    if len(ds) == 0:
        problems.append("no images")
    if len(ds) and (int(ds.labels.min()) < 0 or int(ds.labels.max()) >= len(ds.classes)):
        problems.append(f"labels outside 0..{len(ds.classes) - 1}")
    elif len(counts) and int((counts == 0).sum()):
        problems.append(f"{int((counts == 0).sum())} classes have no images")
    key, _ = _canonical(name)
    if key != "imagefolder":
        info = _INFO[key]
        if tuple(ds.images.shape[1:]) != info["image_shape"]:
            problems.append(f"image shape {tuple(ds.images.shape[1:])}, expected {info['image_shape']}")
        if len(ds) != info["counts"][split]:
            problems.append(f"{len(ds)} images, expected {info['counts'][split]} (incomplete or wrong files?)")
        if len(ds.classes) != info["num_classes"]:
            problems.append(f"{len(ds.classes)} classes, expected {info['num_classes']}")
    return problems


def _cmd_verify(names: list[str], root: str | None, splits: Sequence[str]) -> int:
    n_problems = 0
    for name in names:
        for split in splits:
            try:
                problems = _verify_one(name, split, root)
            except (DatasetNotFoundError, CorruptDatasetError, ValueError) as err:
                problems = [f"cannot load: {err}"]
            for p in problems:
                print(f"  PROBLEM ({name} {split}): {p}")
            n_problems += len(problems)
    print("OK" if n_problems == 0 else f"{n_problems} problem(s) found")
    return 1 if n_problems else 0


def cli(argv: list[str] | None = None) -> int:
    """``course data list|prepare|verify``; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="course data", description="List, prepare and verify the course datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="show every dataset: present?, where, cached?")
    p.add_argument("--root", help="data directory (default: $COURSE_DATA, else the user cache)")
    p = sub.add_parser("prepare", help="load (download if possible) and cache datasets")
    p.add_argument("names", nargs="+", metavar="NAME", help=f"one of {', '.join(KNOWN_DATASETS)} or imagefolder:PATH")
    p.add_argument("--root", help="data directory (default: $COURSE_DATA, else the user cache)")
    p.add_argument("--no-download", action="store_true", help="never try a torchvision download")
    p = sub.add_parser("verify", help="load datasets and print counts, shapes and pixel statistics")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--root", help="data directory (default: $COURSE_DATA, else the user cache)")
    p.add_argument("--split", choices=("train", "test", "both"), default="both")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command == "list":
        return _cmd_list(args.root)
    if args.command == "prepare":
        return _cmd_prepare(args.names, args.root, False if args.no_download else None)
    return _cmd_verify(args.names, args.root, SPLITS if args.split == "both" else (args.split,))


__all__ = [
    "CorruptDatasetError", "DatasetNotFoundError", "ImageDataset", "KNOWN_DATASETS", "channel_stats", "cli",
    "dataset_info", "few_label_subset", "load_dataset", "normalize", "stratified_split", "to_float",
]
