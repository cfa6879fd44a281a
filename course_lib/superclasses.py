"""Regrouping classes into superclasses, and the imbalance that regrouping creates.

The Fashion-MNIST report merged the ten classes into three: tops, bottoms and
accessories.  Each original class has 6,000 training images, so the merged classes
are 5 : 1 : 4 -- only trousers are "bottoms".  Two things then matter:

- plain accuracy is dominated by the big classes: a model that never predicts
  "Bottom" still scores 90 %.  Report the **balanced accuracy** (the mean of the
  per-class recalls) next to it;
- the training loss is dominated by the big classes too; ``balanced_class_weights``
  gives each class the same total weight in the cross-entropy (scikit-learn's
  ``class_weight="balanced"``: ``n / (k * count)``).

``superclass_logits`` turns a 10-class model into a 3-class one for free (sum the
probabilities of each group), a useful baseline for a dedicated superclass model.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["FASHION_SUPERCLASSES", "balanced_accuracy", "balanced_class_weights", "group_index",
           "regroup_labels", "superclass_logits"]

#: The report's regrouping of Fashion-MNIST (class names as in ``load_dataset``).
FASHION_SUPERCLASSES: dict[str, list[str]] = {
    "Top": ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"],
    "Bottom": ["Trouser"],
    "Accessories": ["Sandal", "Sneaker", "Bag", "Ankle boot"],
}


def group_index(groups: Mapping[str, Sequence[str]], class_names: Sequence[str]) -> tuple[Tensor, list[str]]:
    """``mapping`` (int64, one superclass index per original class) and the superclass names.

    Every class of ``class_names`` must be in exactly one group, and every group member
    must be a known class; the error lists what is missing, unknown or repeated.
    """
    names = list(class_names)
    seen: dict[str, str] = {}
    unknown, repeated = [], []
    for group, members in groups.items():
        if isinstance(members, str):
            raise TypeError(f"group {group!r} must list class names, got the string {members!r}; write [{members!r}]")
        for m in members:
            if m not in names:
                unknown.append(m)
            elif m in seen:
                repeated.append(f"{m!r} in {seen[m]!r} and {group!r}")
            else:
                seen[m] = group
    missing = [c for c in names if c not in seen]
    if unknown or repeated or missing:
        parts = []
        if unknown:
            parts.append(f"unknown classes {unknown} (known: {names})")
        if repeated:
            parts.append("classes in two groups: " + "; ".join(repeated))
        if missing:
            parts.append(f"classes in no group: {missing}")
        raise ValueError("bad superclass grouping: " + "; ".join(parts) + ". Put every class in exactly one group.")
    group_names = list(groups)
    mapping = torch.tensor([group_names.index(seen[c]) for c in names], dtype=torch.long)
    return mapping, group_names


def regroup_labels(labels: Tensor, groups: Mapping[str, Sequence[str]],
                   class_names: Sequence[str]) -> tuple[Tensor, list[str]]:
    """Superclass labels ``(N,)`` for the class labels ``labels``, and the superclass names."""
    mapping, group_names = group_index(groups, class_names)
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.ndim != 1:
        raise TypeError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(mapping)):
        raise ValueError(f"labels span {int(labels.min())}..{int(labels.max())} but there are {len(mapping)} class names")
    return mapping[labels.long()], group_names


def balanced_class_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Per-class loss weights ``n / (num_classes * count)``: every class weighs the same in total.

    Pass them as ``nn.CrossEntropyLoss(weight=...)``.  A class without examples would get
    an infinite weight, so it is an error.
    """
    counts = torch.bincount(torch.as_tensor(labels).long(), minlength=num_classes).double()
    if len(counts) > num_classes:
        raise ValueError(f"labels go up to {len(counts) - 1} but num_classes={num_classes}")
    if (counts == 0).any():
        empty = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"classes {empty} have no examples, so they cannot be weighted; drop them or add data")
    return (counts.sum() / (num_classes * counts)).float()


def balanced_accuracy(labels: Tensor, preds: Tensor) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's ``balanced_accuracy_score``)."""
    y = torch.as_tensor(labels).cpu().numpy()
    p = torch.as_tensor(preds).cpu().numpy()
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels and preds must be non-empty 1-D arrays of equal length, got {y.shape} and {p.shape}")
    recalls = [np.mean(p[y == c] == c) for c in np.unique(y)]
    return float(np.mean(recalls))


def superclass_logits(logits: Tensor, mapping: Tensor) -> Tensor:
    """Log-probabilities of the superclasses: the class probabilities summed within each group.

    ``logits`` ``(N, K)`` of a K-class model, ``mapping`` ``(K,)`` from ``group_index``.
    """
    if logits.ndim != 2 or logits.shape[1] != len(mapping):
        raise ValueError(f"logits must be (N, {len(mapping)}) to match the mapping, got {tuple(logits.shape)}")
    probs = logits.float().softmax(1)
    k = int(mapping.max()) + 1
    out = torch.zeros(len(logits), k, dtype=probs.dtype, device=probs.device)
    out.index_add_(1, mapping.to(probs.device), probs)
    return out.clamp_min(1e-12).log()
