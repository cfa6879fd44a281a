"""Readers for the on-disk formats the course datasets come in.

Each reader turns files into plain tensors -- ``images`` uint8 ``(N, C, H, W)`` and
``labels`` int64 ``(N,)`` -- and nothing else: where the files are, caching and
class names belong to :mod:`course_lib.data`.  A file that is truncated or is not
what its name says raises :class:`CorruptDatasetError` naming the file and what was
wrong, so a student sees "train-images-idx3-ubyte.gz: gzip error ..." instead of a
numpy traceback from deep inside a reshape.

Formats:

- IDX (MNIST, Fashion-MNIST), gzip-compressed or not (:func:`read_idx`);
- the CIFAR-10/100 "python version" pickles (:func:`read_cifar_batches`);
- the downsampled-ImageNet pickled batches of Chrabaszcz et al. 2017
  (:func:`read_imagenet_batches`);
- ImageFolder trees ``<split>/<class>/*.png|jpg|jpeg``, as folders
  (:func:`read_imagefolder_dir`) or as one ``.tar.gz`` (:func:`read_imagefolder_tar`).

Pickles are read with a restricted unpickler that only rebuilds numpy arrays and
plain Python containers, so a stray or hostile file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import warnings
import zlib
from math import prod
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class CorruptDatasetError(ValueError):
    """A dataset file exists but cannot be read: truncated, corrupt or the wrong format.

    The message names the file and what was wrong; the usual fix is to delete the
    file and fetch it again (``course data prepare NAME``).
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(
            f"{self.path}: {problem}. The file is damaged or is not what its name says; "
            "delete it and fetch it again (e.g. `course data prepare NAME`)."
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across processes
        return type(self), (self.path, self.problem)


# --------------------------------------------------------------------------- IDX


def _read_bytes_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic number."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptDatasetError(path, f"gzip error: {err}") from None


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an unsigned-byte IDX file (``.gz`` or raw) into a uint8 tensor of its dims."""
    path = Path(path)
    raw = _read_bytes_maybe_gzip(path)
    if len(raw) < 4:
        raise CorruptDatasetError(path, f"only {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise CorruptDatasetError(
            path, f"bad IDX magic 0x{raw[:4].hex()} (expected 0x000008NN: unsigned-byte IDX with NN dims)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDatasetError(path, f"IDX header cut short ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + prod(dims)
    if len(raw) != expected:
        raise CorruptDatasetError(
            path,
            f"size mismatch: header says shape {tuple(dims)} = {expected} bytes "
            f"but the {'decompressed ' if path.suffix == '.gz' else ''}file has {len(raw)} "
            f"({'truncated' if len(raw) < expected else 'trailing data'})",
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read matching IDX image (N, H, W) and label (N,) files into ((N,1,H,W) uint8, (N,) int64)."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise CorruptDatasetError(images_path, f"expected 3 dims (N, H, W), found shape {tuple(images.shape)}")
    if labels.ndim != 1:
        raise CorruptDatasetError(labels_path, f"expected 1 dim (N,), found shape {tuple(labels.shape)}")
    if len(images) != len(labels):
        raise CorruptDatasetError(
            labels_path, f"holds {len(labels)} labels but {images_path.name} holds {len(images)} images"
        )
    labels = labels.long()
    _check_label_range(labels_path, labels, 0, num_classes)
    return images.unsqueeze(1), labels


def _check_label_range(path: Path, labels: torch.Tensor, low: int, n: int) -> None:
    if len(labels) and (int(labels.min()) < low or int(labels.max()) >= low + n):
        raise CorruptDatasetError(
            path, f"labels span {int(labels.min())}..{int(labels.max())}, expected {low}..{low + n - 1}"
        )


# ----------------------------------------------------------------------- pickles

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
} | {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")
    for name in ("_reconstruct", "scalar", "_frombuffer")
}


class _DataUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and builtins only (no arbitrary code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}; not a plain dataset pickle")
        return super().find_class(module, name)


def read_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Load a dataset pickle (Python 2 or 3) as a dict with ``str`` keys.

    ``encoding="latin1"`` is what numpy needs for Python-2 pickles (CIFAR's); byte
    keys are decoded so ``d["data"]`` works for both.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _DataUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error) as err:
        kind = "truncated" if isinstance(err, EOFError) or "truncated" in str(err) else "unpickling error"
        raise CorruptDatasetError(path, f"{kind}: {err}") from None
    if not isinstance(obj, dict):
        raise CorruptDatasetError(path, f"expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _field(path: Path, d: dict[str, Any], key: str) -> Any:
    if key not in d:
        raise CorruptDatasetError(path, f"pickled dict lacks key {key!r} (has {sorted(d)})")
    return d[key]


def _image_rows(path: Path, d: dict[str, Any], channels: int, size: int) -> np.ndarray:
    data = _field(path, d, "data")
    row = channels * size * size
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptDatasetError(path, f"'data' should be a uint8 array of shape (N, {row}), found {desc}")
    return data


def _labels(path: Path, d: dict[str, Any], key: str, n: int) -> np.ndarray:
    labels = np.asarray(_field(path, d, key))
    if labels.ndim != 1 or len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
        raise CorruptDatasetError(path, f"{key!r} should be {n} integers, found {labels.dtype} of shape {labels.shape}")
    return labels


def label_names(path: str | os.PathLike, key: str) -> list[str]:
    """Class names stored under ``key`` in a CIFAR meta pickle (``batches.meta``, ``meta``)."""
    path = Path(path)
    names = _field(path, read_pickle(path), key)
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar_batches(
    paths: Iterable[Path], label_key: str, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read CIFAR python batches (``data`` (N, 3072) rows, ``label_key`` list) and concatenate."""
    chunks, targets = [], []
    for path in paths:
        d = read_pickle(path)
        rows = _image_rows(path, d, 3, 32)
        labels = _labels(path, d, label_key, len(rows))
        _check_label_range(path, torch.from_numpy(labels), 0, num_classes)
        chunks.append(rows)
        targets.append(labels)
    images = torch.from_numpy(np.concatenate(chunks)).reshape(-1, 3, 32, 32)
    return images, torch.from_numpy(np.concatenate(targets).astype(np.int64))


def read_imagenet_batches(paths: Iterable[Path], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read downsampled-ImageNet batches (``data`` CHW-planar rows, 1-based ``labels``).

    Returns 0-based labels.  The optional ``mean`` entry is ignored: the course
    computes its own statistics (:func:`course_lib.data.channel_stats`).
    """
    chunks, targets = [], []
    for path in paths:
        d = read_pickle(path)
        rows = _image_rows(path, d, 3, size)
        labels = _labels(path, d, "labels", len(rows))
        _check_label_range(path, torch.from_numpy(labels), 1, 1000)
        chunks.append(rows)
        targets.append(labels)
    images = torch.from_numpy(np.concatenate(chunks)).reshape(-1, 3, size, size)
    return images, torch.from_numpy(np.concatenate(targets).astype(np.int64) - 1)


def read_clsloc_map(path: str | os.PathLike) -> list[str]:
    """Class names from ImageNet's ``map_clsloc.txt`` (lines ``n02119789 1 kit_fox``)."""
    path = Path(path)
    names: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 3 or not parts[1].isdigit():
            raise CorruptDatasetError(path, f"line {lineno} is {line!r}, expected 'WNID INDEX NAME'")
        names[int(parts[1])] = parts[2]
    if sorted(names) != list(range(1, 1001)):
        raise CorruptDatasetError(path, f"expected indices 1..1000, found {len(names)} entries")
    return [names[i] for i in range(1, 1001)]


# ------------------------------------------------------------------ ImageFolder


def _torchvision_decoder() -> Any:
    """torchvision's C++ decoder (about twice as fast as PIL on small JPEGs), or None.

    torchvision 0.29 deprecated its image codecs in favour of TorchCodec; when they
    are gone we fall back to PIL, which decodes to the same pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return None

    def decode(blob: bytes) -> torch.Tensor:
        if blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 25 and blob[25] == 3:
            return _pil_decode(blob)  # palette PNG: torchvision would return the palette indices
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)

    return decode


def _pil_decode(blob: bytes) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as img:
        if img.mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
        array = np.asarray(img)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def _decode(blob: bytes, where: str, decoder: Any) -> torch.Tensor:
    """Decode PNG/JPEG bytes to a uint8 (C, H, W) tensor with C in {1, 3} (alpha dropped)."""
    if not blob:
        raise CorruptDatasetError(where, "empty image file")
    try:
        img = decoder(blob) if decoder is not None else _pil_decode(blob)
    except (RuntimeError, ValueError, OSError, SyntaxError) as err:  # PIL raises OSError/SyntaxError
        raise CorruptDatasetError(where, f"undecodable image: {str(err).splitlines()[0]}") from None
    if img.shape[0] in (2, 4):  # gray+alpha, RGBA
        img = img[:-1]
    return img


def _stack(decoded: list[torch.Tensor], names: list[str]) -> torch.Tensor:
    """Stack (C, H, W) images; gray ones become RGB when the folder mixes both."""
    if not decoded:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    channels = max(img.shape[0] for img in decoded)
    h, w = decoded[0].shape[1:]
    out = torch.empty(len(decoded), channels, h, w, dtype=torch.uint8)
    for i, img in enumerate(decoded):
        if img.shape[1:] != (h, w):
            raise ValueError(
                f"{names[i]} is {img.shape[2]}x{img.shape[1]} but {names[0]} is {w}x{h}; an ImageFolder "
                "dataset must hold images of one size. Resize them all first (e.g. with PIL's Image.resize)."
            )
        out[i] = img  # broadcasting turns 1 channel into 3
    return out


def _split_class(parts: tuple[str, ...], splits: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) for a path ``.../<split>/<class>/<file>``, else None."""
    if len(parts) < 3 or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    if parts[-3] not in splits or not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
        return None
    return parts[-3], parts[-2]


def _assemble(
    entries: list[tuple[str, str, str, bytes]], class_names: set[str], wanted: tuple[str, ...]
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], list[str]]:
    """Decode (split, class, name, bytes) entries into per-split tensors, ordered by class then name."""
    classes = sorted(class_names)
    decoder = _torchvision_decoder()
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for split in wanted:
        chosen = sorted((index[c], name, blob) for s, c, name, blob in entries if s == split)
        decoded = [_decode(blob, name, decoder) for _, name, blob in chosen]
        images = _stack(decoded, [name for _, name, _ in chosen])
        out[split] = images, torch.tensor([i for i, _, _ in chosen], dtype=torch.int64)
    return out, classes


def read_imagefolder_dir(
    root: str | os.PathLike, wanted: tuple[str, ...], splits: tuple[str, ...] = ("train", "test")
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], list[str]]:
    """Read ``root/<split>/<class>/*.png|jpg|jpeg`` for each split in ``wanted``.

    Classes are the sorted union of class folders over all ``splits``, so a label
    means the same class in train and test.
    """
    root = Path(root)
    class_names = {p.name for s in splits if (root / s).is_dir() for p in (root / s).iterdir() if p.is_dir()}
    entries = []
    for split in wanted:
        for path in sorted((root / split).glob("*/*")):
            sc = _split_class(path.relative_to(root).parts, (split,))
            if sc and path.is_file():
                entries.append((*sc, str(path), path.read_bytes()))
    return _assemble(entries, class_names, wanted)


def read_imagefolder_tar(
    path: str | os.PathLike, wanted: tuple[str, ...], splits: tuple[str, ...] = ("train", "test")
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], list[str]]:
    """Read an ImageFolder tree from a (gzip-compressed) tar in one sequential pass.

    Members may sit under one leading folder (``data/train/cat/1.png``).  Every split
    in ``wanted`` is decoded from the same pass, so callers can cache them all.
    """
    path = Path(path)
    entries, class_names = [], set()
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.isdir() and len(parts) >= 2 and parts[-2] in splits:
                    class_names.add(parts[-1])
                    continue
                sc = _split_class(parts, splits) if member.isfile() else None
                if sc is None:
                    continue
                class_names.add(sc[1])
                if sc[0] in wanted:
                    f = tar.extractfile(member)
                    entries.append((*sc, f"{path}:{member.name}", f.read() if f else b""))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        kind = "truncated archive" if isinstance(err, EOFError) else "archive error"
        raise CorruptDatasetError(path, f"{kind}: {err}") from None
    return _assemble(entries, class_names, wanted)


__all__ = [
    "CorruptDatasetError",
    "IMAGE_EXTENSIONS",
    "label_names",
    "read_cifar_batches",
    "read_clsloc_map",
    "read_idx",
    "read_idx_pair",
    "read_imagefolder_dir",
    "read_imagefolder_tar",
    "read_imagenet_batches",
    "read_pickle",
]
