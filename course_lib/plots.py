"""Plots the notebooks share: learning curves, confusion matrices, per-class bars, image grids.

Every function draws into a new (or given) matplotlib figure and returns it, so the
notebooks can show, save or test it.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor


def learning_curves(history, title: str = "", axes=None):
    """Loss and accuracy per epoch, train vs validation."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    fig = axes[0].figure
    ep = history["epoch"]
    for ax, key in zip(axes, ("loss", "acc")):
        ax.plot(ep, history[f"train_{key}"], "o-", label="train")
        if not all(np.isnan(history[f"val_{key}"])):
            ax.plot(ep, history[f"val_{key}"], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if key == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(cm: np.ndarray, class_names: Sequence[str], normalize: bool = True, ax=None, title: str = ""):
    """Heat map of a confusion matrix (rows true, columns predicted), row-normalised by default."""
    cm = np.asarray(cm, dtype=float)
    if normalize:
        cm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    k = len(class_names)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * k + 2.5, 0.5 * k + 2))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(k), class_names, rotation=90 if k > 3 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                v = cm[i, j]
                if v > 0.005:
                    ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                            fontsize=7, color="white" if v > 0.5 * cm.max() else "black")
    ax.set_title(title or "confusion matrix")
    ax.figure.tight_layout()
    return ax.figure


def per_class_bars(acc: Sequence[float], class_names: Sequence[str], ax=None, title: str = "per-class accuracy", err=None):
    """Horizontal bars of per-class accuracy (optionally with error bars)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.3 * len(class_names) + 1))
    ax.barh(range(len(acc)), acc, xerr=err, color="tab:blue")
    ax.set_yticks(range(len(acc)), class_names)
    ax.invert_yaxis()
    lo = max(0.0, float(np.nanmin(acc)) - 0.05)
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("accuracy")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def _as_hwc(img: Tensor) -> np.ndarray:
    img = img.detach().cpu().float()
    if img.max() > 1.5:
        img = img / 255
    img = img.clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def image_grid(images: Tensor, labels: Sequence[int] | Tensor | None = None, class_names: Sequence[str] | None = None,
               preds: Sequence[int] | Tensor | None = None, ncols: int = 8, title: str = "", scale: float = 1.3):
    """A grid of images with true labels, and predicted labels when given (wrong ones in red)."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + (0.3 if title else 0)), squeeze=False)
    name = (lambda i: class_names[int(i)]) if class_names is not None else (lambda i: str(int(i)))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(_as_hwc(images[i]), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1)
        if labels is not None and preds is not None:
            ok = int(preds[i]) == int(labels[i])
            ax.set_title(f"{name(preds[i])}" + ("" if ok else f"\n(true {name(labels[i])})"),
                         fontsize=7, color="black" if ok else "red")
        elif labels is not None:
            ax.set_title(name(labels[i]), fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def bar_with_errors(names: Sequence[str], means: Sequence[float], stds: Sequence[float], ylabel: str = "accuracy",
                    title: str = "", ax=None):
    """Bars of means with ±1 std error bars (the honest way to compare settings over seeds)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 0.9 * len(names)), 3.5))
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    lo = min(m - s for m, s in zip(means, stds))
    hi = max(m + s for m, s in zip(means, stds))
    pad = max(0.005, 0.2 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def augmentation_gallery(images: Tensor, transforms: dict, generator: torch.Generator | None = None, scale: float = 1.2):
    """One row per transform: the same images after each batched transform (row 0: originals)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    rows = [("original", x)] + [(name, t(x.clone(), generator=generator)) for name, t in transforms.items()]
    n = len(x)
    fig, axes = plt.subplots(len(rows), n, figsize=(scale * n, scale * len(rows)), squeeze=False)
    for r, (name, batch) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(_as_hwc(batch[c]), cmap="gray" if batch.shape[1] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return fig
