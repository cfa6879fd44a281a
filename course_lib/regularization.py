"""One arm of a regularisation ablation: which model, augmentation, BatchNorm, dropout, L1/L2.

The Fashion-MNIST report compared seven models that each add one ingredient to the
previous one (baseline MLP, +augmentation, +conv, +BN, +dropout, +L2, +L1).  A
``Setting`` names those ingredients; ``build_model`` turns it into a network and
``train_setting`` trains it on a split with a fixed one-cycle schedule and returns the
final validation accuracy -- the same protocol for every arm, so the arms differ only
in what the setting says.

L1 and L2 here are penalties added to the loss, ``l1 * sum|w| + l2 * sum w**2`` over the
weights of linear and conv layers (what a Keras ``kernel_regularizer`` does).  With
Adam this is *not* weight decay: the penalty's gradient is rescaled by Adam's
per-parameter step size like any other gradient, so weights with large gradients are
barely decayed.  AdamW's ``weight_decay`` shrinks every weight by ``lr * wd`` per step
instead (Loshchilov & Hutter 2019, "decoupled weight decay"); ``weight_decay`` selects it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from .data import ImageDataset
from .loader import TensorLoader
from .models import MLP, FashionCNN, l1_penalty, l2_penalty
from .train import History, evaluate, fit, get_device, seed_everything

__all__ = ["Setting", "TrainedRun", "build_model", "penalty", "train_setting"]

ARCHS = ("mlp", "cnn")


@dataclass(frozen=True)
class Setting:
    """The ingredients of one arm.

    Args:
        arch: ``"mlp"`` (``MLP``, hidden 256-128) or ``"cnn"`` (``FashionCNN``, two conv blocks).
        augment: train on augmented images (the transform is passed to ``train_setting``).
        batchnorm: BatchNorm after every conv / hidden linear layer.
        dropout: dropout probability (0 = none).
        l2, l1: coefficients of the L2 / L1 penalties added to the loss.
        weight_decay: AdamW's decoupled weight decay (0 = plain Adam).
        lr: peak learning rate of the one-cycle schedule.
        widths, hidden: the CNN's conv widths and dense width (``hidden`` also sets the
            MLP's first hidden layer, the second being half of it).
    """

    arch: str = "mlp"
    augment: bool = False
    batchnorm: bool = False
    dropout: float = 0.0
    l2: float = 0.0
    l1: float = 0.0
    weight_decay: float = 0.0
    lr: float = 3e-3
    widths: tuple[int, int] = (32, 64)
    hidden: int = 256

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {self.dropout}")
        bad = {k: v for k, v in (("l1", self.l1), ("l2", self.l2), ("weight_decay", self.weight_decay)) if v < 0}
        if bad:
            raise ValueError(f"penalty coefficients must be >= 0, got {bad}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


class TrainedRun(NamedTuple):
    """A trained model, its history, its final validation accuracy, and the training time.

    ``seconds`` is wall time; ``cpu_seconds`` the CPU time of this process (all its
    threads) during training.  On a shared machine wall time grows with the other jobs'
    load, while ``cpu_seconds / torch.get_num_threads()`` approximates the wall time the
    same run takes on an idle machine.
    """

    model: nn.Module
    history: History
    val_acc: float
    seconds: float
    cpu_seconds: float = float("nan")


def build_model(setting: Setting, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> nn.Module:
    """The network ``setting`` describes (fresh weights from the current torch seed)."""
    if setting.arch == "mlp":
        return MLP(in_channels * input_size * input_size, hidden=(setting.hidden, setting.hidden // 2),
                   num_classes=num_classes, dropout=setting.dropout, batchnorm=setting.batchnorm)
    return FashionCNN(in_channels, num_classes, input_size, widths=setting.widths, hidden=setting.hidden,
                      batchnorm=setting.batchnorm, dropout=setting.dropout)


def penalty(setting: Setting) -> Callable[[nn.Module], Tensor] | None:
    """``model -> l1 * l1_penalty + l2 * l2_penalty``, or None when both are 0 (no wasted work)."""
    l1, l2 = setting.l1, setting.l2
    if l1 == 0 and l2 == 0:
        return None

    def extra(model: nn.Module) -> Tensor:
        total = l2 * l2_penalty(model) if l2 else 0.0
        return total + l1 * l1_penalty(model) if l1 else total

    return extra


def train_setting(
    setting: Setting,
    train: ImageDataset,
    val: ImageDataset | None,
    *,
    epochs: int,
    seed: int = 0,
    transform: Callable[..., Tensor] | None = None,
    normalize: tuple[list[float], list[float]] | None = None,
    batch_size: int = 128,
    class_weights: Tensor | None = None,
    device: torch.device | str | None = None,
    eval_every_epoch: bool = True,
    progress: bool = False,
) -> TrainedRun:
    """Seed, build and train ``setting`` on ``train``; validation accuracy after the last epoch.

    AdamW (``weight_decay`` from the setting) with a one-cycle schedule peaking at
    ``setting.lr``; the penalty of ``penalty(setting)`` is added to the loss.  ``seed``
    fixes the initial weights, the batch order, the augmentation and dropout draws.
    The score is the *last* epoch's validation accuracy, not the best one: picking the
    best epoch on the same validation set would flatter every arm.  ``class_weights``
    weight the cross-entropy (e.g. ``superclasses.balanced_class_weights``).
    ``eval_every_epoch=False`` evaluates ``val`` only once, after training (the history
    then has no validation columns): a seed sweep that only needs the final score
    saves one validation pass per epoch.
    """
    if setting.augment and transform is None:
        raise ValueError("the setting says augment=True but no transform was given; pass transform=Compose([...])")
    if len(train) == 0:
        raise ValueError("the training set is empty; check the subset or split")
    device = torch.device(device) if device is not None else get_device()
    seed_everything(seed)
    _, c, h, _ = train.images.shape
    model = build_model(setting, num_classes=len(train.classes), in_channels=c, input_size=h)
    train_loader = TensorLoader(train.images, train.labels, batch_size, shuffle=True,
                                transform=transform if setting.augment else None, normalize=normalize,
                                device=device, drop_last=len(train) > batch_size, seed=seed)
    val_loader = None
    if val is not None and len(val):
        val_loader = TensorLoader(val.images, val.labels, 1000, normalize=normalize, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights.to(device)) if class_weights is not None else None
    t0, c0 = time.perf_counter(), time.process_time()
    history = fit(model, train_loader, val_loader if eval_every_epoch else None, epochs=epochs, lr=setting.lr,
                  weight_decay=setting.weight_decay, loss_fn=loss_fn, scheduler="onecycle",
                  extra_loss=penalty(setting), device=device, progress=progress)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    if val_loader is None or not len(history):
        val_acc = float("nan")
    elif eval_every_epoch:
        val_acc = history.records[-1]["val_acc"]
    else:
        val_acc = evaluate(model, val_loader)["acc"]
    return TrainedRun(model, history, float(val_acc), seconds, cpu_seconds)
