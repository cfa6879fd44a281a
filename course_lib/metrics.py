"""Classification metrics: thin wrappers over scikit-learn where it already has them."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def _skm():
    """scikit-learn's metrics, imported on first use (importing sklearn costs about 1.5 s)."""
    from sklearn import metrics

    return metrics


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def accuracy(logits_or_preds: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy from logits ``(N, K)`` or predicted labels ``(N,)``."""
    preds = logits_or_preds.argmax(1) if logits_or_preds.ndim == 2 else logits_or_preds
    return (preds.cpu() == labels.cpu()).float().mean().item()


def topk_accuracy(logits: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy for each ``k``: the share of rows whose label is among its ``k`` highest logits."""
    n_classes = logits.shape[1]
    for k in ks:
        if not 1 <= k <= n_classes:
            raise ValueError(f"k={k} must be between 1 and the number of classes ({n_classes})")
    if not ks:
        return {}
    hits = logits.detach().float().cpu().topk(max(ks), dim=1).indices == labels.detach().cpu().long().view(-1, 1)
    return {k: float(hits[:, :k].any(1).float().mean()) for k in ks}


def confusion_matrix(labels: Tensor, preds: Tensor, num_classes: int, normalize: str | None = None) -> np.ndarray:
    """``(K, K)`` confusion matrix, rows = true class, columns = predicted class."""
    return _skm().confusion_matrix(_np(labels), _np(preds), labels=np.arange(num_classes), normalize=normalize)


def per_class_accuracy(labels: Tensor, preds: Tensor, num_classes: int) -> np.ndarray:
    """Recall of each class (the diagonal of the row-normalised confusion matrix)."""
    cm = confusion_matrix(labels, preds, num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(1)


def classification_report(labels: Tensor, preds: Tensor, class_names: Sequence[str]) -> str:
    """scikit-learn's per-class precision / recall / F1 text report."""
    return _skm().classification_report(_np(labels), _np(preds), labels=np.arange(len(class_names)),
                                     target_names=list(class_names), digits=4, zero_division=0)


def binomial_ci(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for an accuracy of ``correct / total`` (95 % by default).

    Why: 90 % on 50 images is anywhere between about 79 % and 96 %.
    """
    if total <= 0:
        raise ValueError("total must be positive")
    p = correct / total
    denom = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / denom
    return centre - half, centre + half


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def format_mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``"98.12 ± 0.07 (n=3)"``, percentages by default."""
    m, s = mean_std(values)
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f} (n={len(values)})"


@torch.no_grad()
def throughput(model: torch.nn.Module, x: Tensor, repeats: int = 5) -> float:
    """Inference images per second of ``model`` on the batch ``x`` (median of ``repeats``)."""
    import time

    was_training = model.training
    model.eval()
    model(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    model.train(was_training)
    return len(x) / float(np.median(times))
