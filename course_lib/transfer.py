"""ResNet-18 transfer learning on small grayscale images: which weights, and the course's own source checkpoint.

Fine-tuning ResNet-18 needs weights learnt on *another* task.  ImageNet weights come
from torchvision when the machine can download them; offline (CI, exam rooms, this
course's servers) the course ships its own source model instead:
``checkpoints/resnet18-fashion-mnist.pt``, a ResNet-18 trained on Fashion-MNIST
(clothes, not digits), made by ``course pretrain resnet18-fashion-mnist``.

- ``build_resnet18(weights)`` returns a 1-channel ResNet-18 and says which weights it
  started from: ``"auto"`` tries ImageNet and falls back to the course checkpoint.
- ``FrozenFeatures`` is the frozen-feature variant: the pretrained backbone is
  never trained, only a logistic-regression head on its features (what the report
  did with ResNet-50 and ImageNet weights).
- ``resnet18_fashion_mnist(...)`` is the recipe behind the shipped checkpoint.

Architecture: torchvision's ResNet-18 with its ImageNet stem (7x7 stride-2 conv,
3x3 stride-2 max-pool), a 1-channel first conv and a new 10-class head.  On 28 px
images the stages run at 7, 4, 2 and 1 px, so a forward pass costs ~33 M
multiply-adds -- 14x less than the 3x3-stem "CIFAR" variant, which is what makes
fine-tuning it on a CPU possible at all.

Storage: the checkpoint holds the backbone only (no ``fc``: a new task needs a new
head) in **fp16**, 22 MB instead of 45 MB.  ``resnet18_for`` casts it back to fp32 on
loading; the rounding changes validation accuracy by less than 0.1 %.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import augment as A
from .checkpoints import save_checkpoint, tensor_checksum
from .comparison import ModelRun
from .data import channel_stats, load_dataset, stratified_split
from .evaluation import extract_features, linear_probe
from .loader import TensorLoader
from .metrics import throughput
from .models import PretrainedUnavailableError, load_matching_weights, resnet18_for
from .paths import checkpoints_dir
from .train import evaluate, fit, get_device, seed_everything

__all__ = ["FASHION_CHECKPOINT", "RESNET18_FASHION_RECIPE", "FrozenFeatures", "build_resnet18", "resnet18_fashion_mnist"]

#: File name of the course's own ResNet-18 source checkpoint (in ``checkpoints/``).
FASHION_CHECKPOINT = "resnet18-fashion-mnist.pt"

#: Settings of ``resnet18_fashion_mnist`` (recorded in the checkpoint's metadata).
RESNET18_FASHION_RECIPE: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 128,
    "optimizer": "AdamW",
    "lr": 2e-3,
    "weight_decay": 5e-4,
    "scheduler": "onecycle",
    "label_smoothing": 0.1,
    "augment": "RandomCrop(28, padding=2, reflect) + RandomHorizontalFlip",
}


def _checkpoint_path(path: str | os.PathLike | None) -> Path:
    return Path(path) if path is not None else checkpoints_dir() / FASHION_CHECKPOINT


def build_resnet18(
    weights: str | os.PathLike | None = "auto",
    num_classes: int = 10,
    in_channels: int = 1,
    checkpoint: str | os.PathLike | None = None,
) -> tuple[nn.Module, str]:
    """A ResNet-18 (ImageNet stem, ``in_channels`` input, new head) and the name of its starting weights.

    Args:
        weights: ``"auto"`` -- ImageNet if it can be downloaded (or is cached), else the
            course checkpoint; ``"imagenet"``; ``"course"`` -- the course checkpoint;
            ``None`` (or ``"random"``) -- random initialisation; or a path to any ResNet-18 ``.pt`` file.
            The ``used`` string this function returns is accepted too, so a notebook can
            resolve ``"auto"`` once and build more models without retrying the download.
        checkpoint: where the course checkpoint is (default ``checkpoints/resnet18-fashion-mnist.pt``).

    Returns:
        ``(model, used)`` where ``used`` is ``"imagenet"``, ``"course:<file name>"``,
        ``"random"`` or the path given.  ``model.weights_info`` details what was loaded.

    Raises:
        FileNotFoundError: the course checkpoint is needed but missing (the message
            gives the command that makes it).
        PretrainedUnavailableError: ``weights="imagenet"`` offline.
    """
    kw = {"num_classes": num_classes, "in_channels": in_channels, "small_input": False}
    if weights is None or str(weights).lower() in ("random", "none"):
        return resnet18_for(**kw), "random"
    choice = str(weights).lower()
    if choice in ("auto", "imagenet"):
        try:
            return resnet18_for(weights="imagenet", **kw), "imagenet"
        except PretrainedUnavailableError as err:
            if choice == "imagenet":
                raise
            print(f"ImageNet weights unavailable ({str(err).split(':')[0]}); using the course checkpoint instead")
    if choice in ("auto", "course") or choice.startswith("course:"):
        path = _checkpoint_path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(
                f"the course's ResNet-18 source checkpoint {path} is missing; make it with "
                f"`course pretrain resnet18-fashion-mnist` (a few CPU-minutes), restore it from git "
                f"(`git checkout -- checkpoints/{FASHION_CHECKPOINT}`), or pass weights=None to start from random"
            )
        return resnet18_for(weights=path, **kw), f"course:{path.name}"
    return resnet18_for(weights=weights, **kw), str(weights)


class _Standardize(nn.Module):
    """``(x - mean) / std`` per channel: the loaders' normalisation, as a module."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FrozenFeatures:
    """The frozen-feature variant: a pretrained backbone that is never trained, plus a linear head.

    The backbone is a frozen copy of ``model`` with ``fc`` replaced by an identity, in
    eval mode.  Its features of an image tensor are computed once and remembered (by
    the tensor's identity), so probing several training subsets against the same
    validation and test images costs one pass over those images, not one per probe.

    ``probe`` fits a multinomial logistic regression (``evaluation.linear_probe``) for
    each ``C`` and keeps the one with the best **validation** accuracy; its ``ModelRun``
    holds ``backbone -> head`` as one module taking normalised images (like the
    loaders' batches), so ``comparison.evaluate_on_test`` works on it.
    ``evaluate_on_test`` does the same from cached test features.
    """

    def __init__(self, model: nn.Module, normalize: tuple[Sequence[float], Sequence[float]],
                 device: torch.device | str | None = None, batch_size: int = 500) -> None:
        if not hasattr(model, "fc"):
            raise ValueError(f"FrozenFeatures expects a torchvision ResNet (with an .fc head); got {type(model).__name__}")
        self.device = torch.device(device) if device is not None else get_device()
        self.body = copy.deepcopy(model)
        self.body.fc = nn.Identity()
        self.body.requires_grad_(False)
        self.body.to(self.device).eval()
        self.scale = _Standardize(*normalize).to(self.device)
        self.batch_size = batch_size
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(N, 512)`` of uint8 ``images`` (computed once per tensor object)."""
        for seen, feats in self._cache:
            if seen is images:
                return feats
        feats = extract_features(self.body, images, self.batch_size, self.device, transform=self.scale)
        self._cache.append((images, feats))  # holding the tensor keeps its identity unique
        return feats

    def probe(self, name: str, train_images: torch.Tensor, train_labels: torch.Tensor, val_images: torch.Tensor,
              val_labels: torch.Tensor, Cs: Sequence[float] = (0.1, 1.0, 10.0)) -> ModelRun:
        """Fit the head on ``train_images``, pick ``C`` on the validation images; return the ModelRun.

        ``train_seconds`` count feature extraction (if not cached) plus fitting;
        ``info`` records the chosen ``C`` and the validation accuracy of every ``C``.
        """
        if not Cs:
            raise ValueError("Cs is empty; give the candidate regularisation strengths, e.g. (0.1, 1.0, 10.0)")
        t0, c0 = time.perf_counter(), time.process_time()
        f_train, f_val = self(train_images), self(val_images)
        probes = {C: linear_probe(f_train, train_labels, f_val, val_labels, C=C) for C in Cs}
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        best_C = max(probes, key=lambda C: probes[C].test_accuracy)  # test_accuracy here = the validation split's
        head = probes[best_C].classifier
        net = nn.Sequential(self.body, head).to(self.device).eval()
        total = sum(p.numel() for p in net.parameters())
        trainable = sum(p.numel() for p in head.parameters())
        return ModelRun(name, total, trainable, 1, len(train_images), wall, cpu, probes[best_C].test_accuracy, None,
                        net, info={"C": best_C, "val_acc_by_C": {C: probes[C].test_accuracy for C in Cs}})

    @torch.no_grad()
    def evaluate_on_test(self, run: ModelRun, test_images: torch.Tensor, test_labels: torch.Tensor,
                         speed_batch: torch.Tensor | None = None) -> ModelRun:
        """``comparison.evaluate_on_test`` from cached features.

        ``speed_batch`` (normalised images on the device), when given, times inference
        of the whole network on it (``metrics.throughput``), as ``comparison.evaluate_on_test`` does.
        """
        if not math.isnan(run.test_acc):
            raise RuntimeError(f"{run.name} was already evaluated on the test set; the test set is used once per model")
        if run.model is None or run.model[0] is not self.body:
            raise ValueError(f"{run.name} was not made by this FrozenFeatures' probe; use comparison.evaluate_on_test")
        logits = run.model[1](self(test_images).to(self.device)).float().cpu()
        run.test_loss = F.cross_entropy(logits, test_labels).item()
        run.test_preds = logits.argmax(1)
        run.test_acc = (run.test_preds == test_labels).float().mean().item()
        if speed_batch is not None:
            run.images_per_second = throughput(run.model, speed_batch)
        return run


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def resnet18_fashion_mnist(
    out: str | os.PathLike | None = None,
    *,
    epochs: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    device: str | None = None,
    limit: int | None = None,
) -> Path:
    """Train ResNet-18 on Fashion-MNIST and save its backbone as ``checkpoints/resnet18-fashion-mnist.pt``.

    Data: the Fashion-MNIST training set, 54 k / 6 k by ``stratified_split(seed=0)``;
    its test set and all of MNIST are never touched.  Recipe: ``RESNET18_FASHION_RECIPE``
    (AdamW, one-cycle, label smoothing, random crops and flips).  The file holds the
    fp16 backbone without ``fc`` plus metadata: recipe, data checksum, validation
    accuracy (fp32, and after the fp16 round trip), wall and CPU time, load average.
    ``limit`` trains on the first ``limit`` training images only (to test the code path).
    """
    recipe = dict(RESNET18_FASHION_RECIPE)
    if epochs is not None:
        recipe["epochs"] = epochs
    dev = get_device(device)
    full = load_dataset("fashion-mnist", "train", root=root)
    train_idx, val_idx = stratified_split(full.labels, val_fraction=0.1, seed=0)
    if limit is not None:
        train_idx = train_idx[:limit]
    train, val = full.subset(train_idx), full.subset(val_idx)
    mean, std = channel_stats(train)
    normalize = (mean.tolist(), std.tolist())
    augment = A.Compose([A.RandomCrop(28, padding=2, padding_mode="reflect"), A.RandomHorizontalFlip()])
    train_loader = TensorLoader(train.images, train.labels, recipe["batch_size"], shuffle=True, transform=augment,
                                normalize=normalize, device=dev, drop_last=len(train) > recipe["batch_size"], seed=seed)
    val_loader = TensorLoader(val.images, val.labels, 1000, normalize=normalize, device=dev)

    seed_everything(seed)
    model = resnet18_for(num_classes=10, in_channels=1, small_input=False)
    load_before = _load_average()
    t0, c0 = time.perf_counter(), time.process_time()
    history = fit(model, train_loader, val_loader, epochs=recipe["epochs"], lr=recipe["lr"],
                  weight_decay=recipe["weight_decay"], label_smoothing=recipe["label_smoothing"],
                  scheduler=recipe["scheduler"], device=dev)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    backbone = copy.deepcopy(model).cpu().half()
    backbone.fc = nn.Identity()  # the head belongs to Fashion-MNIST's classes; a new task needs a new one
    # Check the fp16 round trip: the stored backbone with the trained head, on the validation split.
    reloaded = resnet18_for(num_classes=10, in_channels=1, small_input=False)
    load_matching_weights(reloaded, backbone.state_dict())
    reloaded.fc.load_state_dict(model.fc.state_dict())
    metrics = {"val_acc": history.records[-1]["val_acc"],
               "val_acc_after_fp16": evaluate(reloaded.to(dev), val_loader)["acc"]}
    metadata = {
        "name": "resnet18-fashion-mnist",
        "model": "course_lib.models.resnet18_for(num_classes, in_channels=1, small_input=False)",
        "model_config": {"in_channels": 1, "small_input": False, "head": "removed (fc)"},
        "storage": "fp16 state dict of the backbone without fc (22 MB instead of 45 MB); "
                   "resnet18_for(weights=path) casts it to fp32",
        "recipe": recipe,
        "seed": seed,
        "dataset": "fashion-mnist",
        "dataset_checksum": tensor_checksum(full.images, full.labels),
        "split": {"val_fraction": 0.1, "seed": 0, "n_train": len(train), "n_val": len(val)},
        "normalize": {"mean": normalize[0], "std": normalize[1]},
        "classes": list(full.classes),
        "epochs": len(history),
        "wall_time_s": wall,
        "cpu_time_s": cpu,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "device": str(dev),
        "metrics": metrics,
        "history": history.records,
    }
    path = _checkpoint_path(out)
    save_checkpoint(path, backbone, metadata)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB): {len(history)} epochs in {wall:.0f} s wall "
          f"({cpu:.0f} s CPU, load average {load_before} -> {metadata['load_average_after']}); {metrics}")
    return path
