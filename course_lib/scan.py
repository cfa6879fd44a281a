"""SCAN's clustering step on frozen features: from good neighbourhoods to class clusters, without labels.

A self-supervised encoder can have excellent *neighbourhoods* (an image's nearest
neighbours in feature space are nearly all of its class: kNN is accurate) and still
no obvious *clusters* (k-means on the features does not find the classes).  SCAN
(Van Gansbeke et al., "Learning to classify images without labels", ECCV 2020)
trains a classifier head to put every image in the same cluster as its mined
neighbours, while keeping all clusters in use:

    loss = -mean_i log <p(x_i), p(n_i)>  -  w * H(mean_i p(x_i))

where ``p`` is the head's softmax, ``n_i`` a random one of ``x_i``'s ``k`` nearest
neighbours, and ``H`` the entropy of the batch's average prediction (without it,
one cluster for everything is a perfect answer to the first term).

This module runs the step on *frozen* features with a *linear* head, so the result
is a linear classifier of the features found without a single label.  Several heads
train side by side from different random starts (the objective has poor local
optima, e.g. two digits merged and one split), and the head with the lowest loss
over the whole pool is kept: that choice uses no labels either.  A handful of
labels then only has to *name* the clusters (``name_clusters``).

SCAN's last step, self-labelling, carries the clusters back into the *encoder*: the
images the cluster head is confident about become pseudo-labelled training data, and
the encoder plus a new linear head learn them with cross-entropy on augmented views
(classes weighted by their inverse frequency, so a large cluster cannot swallow a small
one).  The paper keeps images with softmax >= 0.99; on MNIST keeping every image did
better (``course_lib.ssl.scan_recipe``).  Afterwards the encoder's features are tight
clusters, and a plain linear probe with a handful of labels can find them, as far as
the clusters are the classes.

Pieces: ``mine_neighbours`` (kNN by cosine similarity, self excluded),
``scan_loss``, ``fit_scan_heads`` (train heads, keep the best), ``name_clusters``,
``scan_clusters`` (the three together, scored as notebooks 02 and 03 report them),
``SelfLabel`` (the self-labelling loss as a model for ``train_ssl``) and ``self_label``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .clustering import matched_accuracy
from .evaluation import LinearClassifier, extract_features, knn_neighbours
from .ssl.trainer import SSLHistory, train_ssl


@dataclass
class ScanLoss:
    """The SCAN objective and its two parts (scalars)."""

    total: Tensor
    consistency: Tensor
    entropy: Tensor


def mine_neighbours(features: Tensor, k: int = 20) -> Tensor:
    """Indices ``(N, k)`` of each feature's ``k`` most cosine-similar *other* features."""
    if features.dim() != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    if not 1 <= k < len(features):
        raise ValueError(f"k must be between 1 and N - 1 = {len(features) - 1} (neighbours per item), got {k}")
    return knn_neighbours(features, features, k, exclude_self=True)[1].cpu()


def scan_loss(anchor_logits: Tensor, neighbour_logits: Tensor, entropy_weight: float = 2.0) -> ScanLoss:
    """``-mean log <p_a, p_n> - entropy_weight * H(mean p_a)`` for a batch of (anchor, neighbour) logits.

    The consistency term is 0 when every anchor and its neighbour get the same one-hot
    prediction; the entropy term is largest (``log C``) when the batch uses all ``C``
    clusters equally.  Gradients flow through both anchors and neighbours.
    """
    if anchor_logits.shape != neighbour_logits.shape or anchor_logits.dim() != 2:
        raise ValueError(f"anchor and neighbour logits must both be (B, clusters); got "
                         f"{tuple(anchor_logits.shape)} and {tuple(neighbour_logits.shape)}")
    if entropy_weight < 0:
        raise ValueError(f"entropy_weight must be >= 0 (it keeps all clusters in use), got {entropy_weight}")
    pa, pn = anchor_logits.softmax(1), neighbour_logits.softmax(1)
    consistency = -torch.log((pa * pn).sum(1).clamp_min(1e-8)).mean()
    marginal = pa.mean(0)
    entropy = -(marginal * marginal.clamp_min(1e-8).log()).sum()
    return ScanLoss(consistency - entropy_weight * entropy, consistency, entropy)


@dataclass
class ScanResult:
    """Outcome of ``fit_scan_heads``: the kept head and every head's final loss over the pool."""

    head: LinearClassifier
    chosen: int
    losses: list[float] = field(default_factory=list)


def _head_losses(logits: Tensor, neighbour_logits_of: list[Tensor], heads: int, clusters: int,
                 entropy_weight: float) -> list[Tensor]:
    """Per-head SCAN loss, averaged over the given neighbour columns."""
    out = []
    for h in range(heads):
        sl = slice(h * clusters, (h + 1) * clusters)
        out.append(torch.stack([scan_loss(logits[:, sl], nl[:, sl], entropy_weight).total
                                for nl in neighbour_logits_of]).mean())
    return out


def fit_scan_heads(
    features: Tensor,
    neighbours: Tensor,
    num_clusters: int,
    *,
    heads: int = 10,
    epochs: int = 30,
    batch_size: int = 512,
    lr: float = 1e-3,
    entropy_weight: float = 2.0,
    seed: int = 0,
) -> ScanResult:
    """Train ``heads`` linear cluster heads on frozen ``features`` with ``scan_loss``; keep the lowest-loss one.

    Features are z-scored with their own statistics (kept in the head, as in a linear
    probe).  Each step takes ``batch_size`` anchors and one random mined neighbour of
    each.  All heads see the same batches (one ``Linear`` with ``heads * num_clusters``
    outputs, each block of ``num_clusters`` its own softmax); they differ in their random
    start.  The kept head is the one with the lowest loss over the pool, averaged over
    every neighbour column: a choice made without labels.

    Args:
        features: ``(N, D)`` frozen features of the unlabelled pool.
        neighbours: ``(N, k)`` indices from ``mine_neighbours``.
        num_clusters: clusters per head (the number of classes, to name them later).
        heads, epochs, batch_size, lr, entropy_weight: the schedule (Adam) and the loss weight.
        seed: seeds the heads' initialisation and the batches.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    if neighbours.dim() != 2 or len(neighbours) != len(features):
        raise ValueError(f"neighbours must be (N, k) with N = {len(features)} rows (from mine_neighbours), "
                         f"got shape {tuple(neighbours.shape)}")
    if num_clusters < 2:
        raise ValueError(f"num_clusters must be >= 2, got {num_clusters}")
    if heads < 1 or epochs < 1:
        raise ValueError(f"heads and epochs must be >= 1, got heads={heads}, epochs={epochs}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (the entropy term needs a batch), got {batch_size}")
    x = features.detach().float().cpu()
    nbr = neighbours.long().cpu()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    multi = LinearClassifier(mean, std, heads * num_clusters)
    xs = multi.standardize(x)
    opt = torch.optim.Adam(multi.linear.parameters(), lr=lr)
    n, k = nbr.shape
    batch_size = min(batch_size, n)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(0, n - batch_size + 1, batch_size):
                idx = order[i:i + batch_size]
                partner = nbr[idx, torch.randint(0, k, (len(idx),), generator=gen)]
                la, ln = multi.linear(xs[idx]), multi.linear(xs[partner])
                loss = torch.stack(_head_losses(la, [ln], heads, num_clusters, entropy_weight)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    with torch.no_grad():
        logits = multi.linear(xs)
        losses = [float(v) for v in _head_losses(logits, [logits[nbr[:, j]] for j in range(k)], heads,
                                                  num_clusters, entropy_weight)]
    chosen = int(np.argmin(losses))
    head = LinearClassifier(mean, std, num_clusters)
    sl = slice(chosen * num_clusters, (chosen + 1) * num_clusters)
    with torch.no_grad():
        head.linear.weight.copy_(multi.linear.weight[sl])
        head.linear.bias.copy_(multi.linear.bias[sl])
    head.eval().requires_grad_(False)
    return ScanResult(head=head, chosen=chosen, losses=losses)


def name_clusters(clusters: Tensor, labels: Tensor, num_clusters: int, num_classes: int) -> Tensor:
    """Class of each cluster ``(num_clusters,)``, from a few labelled examples' cluster ids and labels.

    The best one-to-one assignment of clusters to classes on the labelled examples
    (Hungarian algorithm); with more clusters than classes, the clusters left over take
    the majority label of their labelled members (class 0 if they have none).
    """
    from scipy.optimize import linear_sum_assignment

    if clusters.shape != labels.shape or clusters.dim() != 1 or len(labels) == 0:
        raise ValueError(f"clusters and labels must be non-empty 1-d tensors of equal length, got "
                         f"{tuple(clusters.shape)} and {tuple(labels.shape)}")
    c, y = clusters.long().cpu(), labels.long().cpu()
    if int(c.min()) < 0 or int(c.max()) >= num_clusters or int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"cluster ids must lie in [0, {num_clusters}) and labels in [0, {num_classes})")
    table = torch.zeros(num_clusters, num_classes, dtype=torch.long)
    table.index_put_((c, y), torch.ones_like(c), accumulate=True)
    names = table.argmax(1)
    rows, cols = linear_sum_assignment(table.numpy(), maximize=True)
    names[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return names


@dataclass
class ScanClusters:
    """Outcome of ``scan_clusters``: the kept head and how well its label-free clusters match the classes.

    ``neighbour_purity`` (the fraction of mined neighbours that share the image's class)
    and the scores read labels; building the clusters does not.
    """

    scan: ScanResult
    neighbour_purity: float
    test_clusters: Tensor
    cluster_acc: float
    named_acc: list[float]


def scan_clusters(
    pool_features: Tensor,
    pool_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    draws: list[Tensor],
    num_classes: int,
    *,
    k: int = 20,
    heads: int = 10,
    epochs: int = 30,
    batch_size: int = 512,
    entropy_weight: float = 2.0,
    seed: int = 0,
) -> ScanClusters:
    """SCAN's clustering step on frozen pool features, scored on the test set.

    Mines ``k`` neighbours per pool image, trains ``heads`` cluster heads for ``epochs``
    (``fit_scan_heads``, no labels), then scores the kept head's test clusters twice: the
    Hungarian-matched accuracy (the best naming, an upper bound for any few labels), and
    for each labelled draw (indices into the pool) the accuracy after naming the
    clusters with only that draw's labels (``name_clusters``).
    """
    if not draws:
        raise ValueError("draws must hold at least one tensor of pool indices (the labelled images)")
    neighbours = mine_neighbours(pool_features, k=k)
    purity = float((pool_labels[neighbours] == pool_labels[:, None]).float().mean())
    scan = fit_scan_heads(pool_features, neighbours, num_classes, heads=heads, epochs=epochs, batch_size=batch_size,
                          entropy_weight=entropy_weight, seed=seed)
    with torch.no_grad():
        pool_clusters, test_clusters = scan.head(pool_features).argmax(1), scan.head(test_features).argmax(1)
    named = [float((name_clusters(pool_clusters[i], pool_labels[i], num_classes, num_classes)[test_clusters]
                    == test_labels).float().mean()) for i in draws]
    return ScanClusters(scan, purity, test_clusters, matched_accuracy(test_labels, test_clusters), named)


class SelfLabel(nn.Module):
    """SCAN's self-labelling loss: ``forward(clean, augmented)`` -> weighted cross-entropy on confident images.

    The *teacher* (a frozen copy of the encoder as it was, plus the frozen cluster head)
    labels each clean image; only images whose top softmax reaches ``threshold`` count.
    The *student* (``encoder``, trained in place, plus a new ``nn.Linear`` head) has to
    predict that label from the augmented view.  ``class_weight`` (``(clusters,)``)
    weights the cross-entropy per pseudo-class.  The teacher stays in eval mode and gets
    no gradients, whatever ``train()`` says.
    """

    def __init__(self, encoder: nn.Module, cluster_head: nn.Module, num_clusters: int, *, threshold: float = 0.99,
                 class_weight: Tensor | None = None) -> None:
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1) (a softmax confidence), got {threshold}")
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_clusters)
        self.teacher = nn.Sequential(copy.deepcopy(encoder), copy.deepcopy(cluster_head)).eval().requires_grad_(False)
        self.threshold = threshold
        self.register_buffer("class_weight", torch.ones(num_clusters) if class_weight is None
                             else class_weight.detach().float().clone())

    def train(self, mode: bool = True) -> "SelfLabel":
        super().train(mode)
        self.teacher.eval()
        return self

    def pseudo_labels(self, clean: Tensor) -> tuple[Tensor, Tensor]:
        """The teacher's cluster for each clean image and whether it is confident (``>= threshold``)."""
        with torch.no_grad():
            conf, target = self.teacher(clean).softmax(1).max(1)
        return target, conf >= self.threshold

    def forward(self, clean: Tensor, augmented: Tensor) -> Tensor:
        target, confident = self.pseudo_labels(clean)
        logits = self.head(self.encoder(augmented))
        if not bool(confident.any()):
            return logits.sum() * 0.0  # nothing confident in this batch: no signal, a zero gradient
        return nn.functional.cross_entropy(logits[confident], target[confident], weight=self.class_weight)


class CleanAndAugmented:
    """``views(x, generator) -> (x, t(x))``: the teacher sees the image, the student an augmented view."""

    def __init__(self, t: Callable[..., Tensor]) -> None:
        self.t = t

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        return x, self.t(x, generator=generator)

    def __repr__(self) -> str:
        return f"CleanAndAugmented({self.t!r})"


@dataclass
class SelfLabelResult:
    """Outcome of ``self_label``: the training history and how much of the pool was pseudo-labelled."""

    history: SSLHistory
    confident_fraction: float
    cluster_sizes: list[int]


def self_label(
    encoder: nn.Module,
    cluster_head: nn.Module,
    images: Tensor,
    augment: Callable[..., Tensor],
    num_clusters: int,
    *,
    epochs: int = 6,
    threshold: float = 0.99,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    monitor: Callable[[nn.Module], float] | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    max_steps_per_epoch: int | None = None,
    log: Callable[[str], None] | None = print,
) -> SelfLabelResult:
    """Train ``encoder`` in place on the cluster head's confident pseudo-labels (SCAN's self-labelling step).

    ``cluster_head`` maps the encoder's features to cluster logits (``fit_scan_heads``'
    head).  The pool images it labels with confidence ``>= threshold`` are the training
    set; the loop is ``train_ssl``'s (Adam, warm-up + cosine learning rate, resume file,
    Ctrl-C), with ``augment`` (a batched ``course_lib.augment`` transform) making the
    student's view.  No labels are used.
    """
    if len(images) < batch_size:
        raise ValueError(f"need at least batch_size = {batch_size} images, got {len(images)}")
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    with torch.no_grad():
        conf, target = cluster_head(extract_features(encoder, images).to(dev)).softmax(1).max(1)
    keep = torch.nonzero(conf >= threshold).squeeze(1).cpu()
    if len(keep) < batch_size:
        raise ValueError(f"only {len(keep)} of {len(images)} images reach confidence {threshold}; lower the threshold "
                         "or train the cluster head longer")
    sizes = torch.bincount(target[keep.to(target.device)].cpu(), minlength=num_clusters).float()
    weight = sizes.sum() / (num_clusters * sizes.clamp_min(1.0))
    model = SelfLabel(encoder, cluster_head, num_clusters, threshold=threshold, class_weight=weight).to(dev)
    params = list(model.encoder.parameters()) + list(model.head.parameters())
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    history = train_ssl(model, images[keep], CleanAndAugmented(augment), epochs=epochs, batch_size=batch_size,
                        optimizer=optimizer, backbone=encoder if monitor is not None else None, monitor=monitor,
                        checkpoint=checkpoint, device=dev, seed=seed, max_steps_per_epoch=max_steps_per_epoch, log=log)
    encoder.eval()
    return SelfLabelResult(history, len(keep) / len(images), [int(v) for v in sizes])


__all__ = ["CleanAndAugmented", "ScanClusters", "ScanLoss", "ScanResult", "SelfLabel", "SelfLabelResult",
           "fit_scan_heads", "mine_neighbours", "name_clusters", "scan_clusters", "scan_loss", "self_label"]
