"""MoCo v2: momentum contrast with a queue of negative keys (He et al. 2020, Chen et al. 2020).

Two views of each image go through a *query* encoder (trained) and a *key* encoder
(an EMA copy, never trained directly).  The InfoNCE loss asks each query to pick out
its own key among ``K`` negatives kept in a FIFO queue of keys from past batches.

Single-device shuffle-BN.  With BatchNorm, a query and its key computed on the same
batch can "cheat": the BN statistics leak which samples are in the batch, and the
network learns to match statistics instead of content.  Official MoCo shuffles the
key batch *across GPUs*, so each GPU's BN sees different samples for keys and
queries.  On one device a plain permutation does nothing (full-batch BN statistics
are invariant to the order of the batch).  The substitute, as in the official MoCo
CIFAR demo, is split BatchNorm: BN statistics are computed per chunk of the batch
(``SplitBatchNorm2d``), and the key batch is shuffled before the key encoder so
that the chunks of keys and queries hold different images.  ``MoCo(...,
shuffle="split_bn")`` does both.

Parameters and the optimiser.  The key encoder and key head are registered
submodules (so ``.to()``, ``state_dict`` and ``train()/eval()`` reach them) but their
parameters have ``requires_grad=False``.  Build the optimiser from
``model.trainable_parameters()`` (equivalently ``[p for p in model.parameters() if
p.requires_grad]``), never from ``model.parameters()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import ProjectionHead, copy_as_target, flatten_features, momentum_update

SHUFFLE_MODES = ("split_bn", "none")


# --------------------------------------------------------------------------- split BN


class _SplitBatchNorm:
    """Mixin: in training, BN statistics are computed separately per chunk of the batch.

    The batch of ``N`` samples is cut into ``num_splits`` contiguous chunks of
    ``N / num_splits``; each chunk is normalised with its own mean and variance.  The
    running statistics are updated with the average of the chunks' statistics.  In
    eval mode the layer is an ordinary BatchNorm (running statistics).
    """

    num_splits: int

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if not self.training:
            return super().forward(x)  # type: ignore[misc]
        self._check_input_dim(x)  # type: ignore[attr-defined]
        n, c = x.shape[0], x.shape[1]
        s = self.num_splits
        if n % s != 0:
            raise ValueError(
                f"split BatchNorm with num_splits={s} needs a batch size divisible by {s}, got {n}; "
                "use drop_last=True or a batch size that is a multiple of num_splits"
            )
        rest = x.shape[2:]
        # (N, C, ...) -> (N/s, s*C, ...): channel j*C + c holds chunk j, channel c.
        xs = x.reshape(s, n // s, c, *rest).transpose(0, 1).reshape(n // s, s * c, *rest)

        factor = 0.0 if self.momentum is None else self.momentum  # type: ignore[attr-defined]
        if self.track_running_stats:  # type: ignore[attr-defined]
            self.num_batches_tracked.add_(1)  # type: ignore[attr-defined]
            if self.momentum is None:  # type: ignore[attr-defined]
                factor = 1.0 / float(self.num_batches_tracked)  # type: ignore[attr-defined]
            mean_s = self.running_mean.repeat(s)  # type: ignore[attr-defined]
            var_s = self.running_var.repeat(s)  # type: ignore[attr-defined]
        else:
            mean_s = var_s = None
        weight = self.weight.repeat(s) if self.weight is not None else None  # type: ignore[attr-defined]
        bias = self.bias.repeat(s) if self.bias is not None else None  # type: ignore[attr-defined]
        out = F.batch_norm(xs, mean_s, var_s, weight, bias, True, factor, self.eps)  # type: ignore[attr-defined]
        if mean_s is not None:
            with torch.no_grad():
                self.running_mean.copy_(mean_s.view(s, c).mean(0))  # type: ignore[attr-defined]
                self.running_var.copy_(var_s.view(s, c).mean(0))  # type: ignore[attr-defined]
        return out.reshape(n // s, s, c, *rest).transpose(0, 1).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_splits={self.num_splits}"  # type: ignore[misc]


class SplitBatchNorm1d(_SplitBatchNorm, nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics are computed per chunk of the batch."""

    def __init__(self, num_features: int, num_splits: int, **kwargs) -> None:
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits


class SplitBatchNorm2d(_SplitBatchNorm, nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are computed per chunk of the batch."""

    def __init__(self, num_features: int, num_splits: int, **kwargs) -> None:
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits


def convert_to_split_bn(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every ``BatchNorm1d``/``BatchNorm2d`` in ``module`` by its split version.

    Weights, biases, running statistics, ``requires_grad`` and train/eval mode are
    kept.  Like ``nn.SyncBatchNorm.convert_sync_batchnorm``, children are replaced in
    place and the (possibly new, if ``module`` itself is a BN layer) module is returned.
    """
    if num_splits < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}")
    out = module
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(module, _SplitBatchNorm):
        cls = SplitBatchNorm2d if isinstance(module, nn.BatchNorm2d) else SplitBatchNorm1d
        out = cls(
            module.num_features,
            num_splits,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
        ref = module.weight if module.weight is not None else module.running_mean
        if ref is not None:
            out = out.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if module.affine:
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
                out.weight.requires_grad_(module.weight.requires_grad)
                out.bias.requires_grad_(module.bias.requires_grad)
            if module.track_running_stats:
                out.running_mean.copy_(module.running_mean)
                out.running_var.copy_(module.running_var)
                out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_to_split_bn(child, num_splits))
    return out


# --------------------------------------------------------------------------- loss


def info_nce(q: Tensor, k: Tensor, queue: Tensor, T: float) -> tuple[Tensor, Tensor]:
    """MoCo's InfoNCE loss of queries ``q`` against positive keys ``k`` and a queue.

    Args:
        q: ``(N, D)`` queries; L2-normalised here.
        k: ``(N, D)`` positive keys (row i is the positive of query i); L2-normalised
            here and detached (keys carry no gradient in MoCo).
        queue: ``(D, K)`` negative keys as *columns*, already unit-norm (MoCo's layout).
        T: temperature (> 0).

    Returns:
        ``(loss, logits)`` where ``logits = cat([l_pos (N, 1), l_neg (N, K)]) / T``;
        the positive is at index 0, so the targets are all zeros.  With random unit
        vectors and ``T = 1`` the loss is close to ``ln(K + 1)`` (chance).
    """
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    if q.dim() != 2 or q.shape != k.shape:
        raise ValueError(f"q and k must both be (N, D); got {tuple(q.shape)} and {tuple(k.shape)}")
    if queue.dim() != 2 or queue.shape[0] != q.shape[1]:
        raise ValueError(
            f"queue must be (D, K) = ({q.shape[1]}, K) with keys as columns, got {tuple(queue.shape)}; "
            "if you hold keys as rows pass queue.T"
        )
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue.detach().to(q.dtype)
    logits = torch.cat([l_pos, l_neg], dim=1) / T
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels), logits


# --------------------------------------------------------------------------- model


@dataclass
class MoCoOutput:
    """What ``MoCo.forward`` returns: the loss, the InfoNCE logits and their targets.

    With ``symmetric=True`` the logits and labels of both directions are stacked
    along the batch dimension (``2N`` rows).
    """

    loss: Tensor
    logits: Tensor
    labels: Tensor


class MoCo(nn.Module):
    """MoCo v2 around any backbone that maps images to ``(N, feature_dim)`` features.

    Args:
        encoder: the backbone (its output is flattened to ``(N, feature_dim)``).  With
            ``shuffle="split_bn"`` its BatchNorm layers are replaced in place by split
            BatchNorm (see the module docstring).
        feature_dim: width of the backbone output.
        dim: width of the embedding compared by the loss (and of the queue).
        K: queue length (number of negatives).  Must be at least the batch size and
            should be well below the dataset size, or the queue holds keys of the
            same images from stale encoders.  Need not be a multiple of the batch size:
            the write pointer wraps around.
        m: momentum of the key encoder, ``key = m * key + (1 - m) * query``.
        T: temperature of the InfoNCE softmax (MoCo v2: 0.2).
        mlp: MoCo v2 2-layer MLP head (``Linear-ReLU-Linear``); ``False`` = one Linear.
        symmetric: also compute the loss with the views swapped and average the two.
        shuffle: ``"split_bn"`` (split BN + shuffled key batch) or ``"none"``.
        bn_splits: number of BN chunks with ``shuffle="split_bn"``; the training batch
            size must be divisible by it.

    ``forward`` updates the key encoder and the queue only in training mode, so an
    evaluation pass (``model.eval()``) leaves the model untouched.  The query
    backbone for downstream evaluation is ``model.encoder_q``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        dim: int = 128,
        K: int = 4096,
        m: float = 0.99,
        T: float = 0.2,
        mlp: bool = True,
        symmetric: bool = False,
        shuffle: str = "split_bn",
        bn_splits: int = 8,
    ) -> None:
        super().__init__()
        if shuffle not in SHUFFLE_MODES:
            raise ValueError(f"shuffle must be one of {SHUFFLE_MODES}, got {shuffle!r}")
        if K < 1:
            raise ValueError(f"queue size K must be >= 1, got {K}")
        if not 0.0 <= m <= 1.0:
            raise ValueError(f"momentum m must be in [0, 1] (MoCo uses 0.99-0.999), got {m}")
        if T <= 0:
            raise ValueError(f"temperature T must be > 0 (MoCo v2 uses 0.2), got {T}")
        self.K, self.m, self.T = K, m, T
        self.symmetric, self.shuffle, self.bn_splits = symmetric, shuffle, bn_splits
        self.feature_dim, self.dim = feature_dim, dim

        if shuffle == "split_bn":
            encoder = convert_to_split_bn(encoder, bn_splits)
        self.encoder_q = encoder
        if mlp:
            self.projector_q: nn.Module = ProjectionHead(feature_dim, feature_dim, dim, num_layers=2, batchnorm=False)
        else:
            self.projector_q = nn.Linear(feature_dim, dim)
        self.encoder_k = copy_as_target(self.encoder_q)
        self.projector_k = copy_as_target(self.projector_q)

        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    # -- pieces -------------------------------------------------------------------

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser should get: query encoder and head only."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def update_key_encoder(self) -> None:
        """Momentum step of the key encoder and key head towards the query ones."""
        momentum_update(self.encoder_q, self.encoder_k, self.m)
        momentum_update(self.projector_q, self.projector_k, self.m)

    def _features(self, encoder: nn.Module, x: Tensor) -> Tensor:
        h = flatten_features(encoder(x))
        if h.shape[1] != self.feature_dim:
            raise ValueError(
                f"the encoder returns features of width {h.shape[1]} but MoCo was built with "
                f"feature_dim={self.feature_dim}; pass the encoder's output width"
            )
        return h

    def query(self, x: Tensor) -> Tensor:
        """Unit-norm query embeddings ``(N, dim)`` (with gradients)."""
        return F.normalize(self.projector_q(self._features(self.encoder_q, x)), dim=1)

    @torch.no_grad()
    def key(self, x: Tensor) -> Tensor:
        """Unit-norm key embeddings ``(N, dim)``; shuffled through split BN if enabled."""
        if self.shuffle == "split_bn" and self.training:
            perm = torch.randperm(x.shape[0], device=x.device)
            k = self.projector_k(self._features(self.encoder_k, x[perm]))
            k = k[torch.argsort(perm)]
        else:
            k = self.projector_k(self._features(self.encoder_k, x))
        return F.normalize(k, dim=1)

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (N, dim) into the queue at the pointer, wrapping around at K."""
        n = keys.shape[0]
        if n > self.K:
            raise ValueError(
                f"a batch of {n} keys does not fit in the queue of K={self.K}; use K >= batch size "
                "(MoCo uses K much larger than the batch)"
            )
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(n, device=self.queue.device)) % self.K
        self.queue[:, idx] = F.normalize(keys.detach(), dim=1).T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + n) % self.K

    def _check_batch(self, x_q: Tensor, x_k: Tensor) -> None:
        if x_q.shape != x_k.shape:
            raise ValueError(f"the two views must have the same shape, got {tuple(x_q.shape)} and {tuple(x_k.shape)}")
        n = x_q.shape[0]
        if self.training and self.shuffle == "split_bn" and n % self.bn_splits != 0:
            raise ValueError(
                f"batch size {n} is not divisible by bn_splits={self.bn_splits}; use drop_last=True "
                "and a batch size that is a multiple of bn_splits (or shuffle='none')"
            )
        if n * (2 if self.symmetric else 1) > self.K:
            raise ValueError(f"K={self.K} is smaller than the keys enqueued per step; raise K")

    def forward(self, x_q: Tensor, x_k: Tensor) -> MoCoOutput:
        """Loss for two augmented views; in training also updates key encoder and queue.

        Order matters and follows the paper: momentum update, keys, logits against
        the *current* queue, and only then enqueue the new keys (otherwise each query's
        own positive would also appear among its negatives).
        """
        self._check_batch(x_q, x_k)
        if self.training:
            self.update_key_encoder()
        pairs = [(x_q, x_k), (x_k, x_q)] if self.symmetric else [(x_q, x_k)]
        losses, logits_all, keys = [], [], []
        for a, b in pairs:
            q = self.query(a)
            k = self.key(b)
            loss, logits = info_nce(q, k, self.queue.clone(), self.T)
            losses.append(loss)
            logits_all.append(logits)
            keys.append(k)
        if self.training:
            self.dequeue_and_enqueue(torch.cat(keys))
        logits = torch.cat(logits_all)
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return MoCoOutput(loss=torch.stack(losses).mean(), logits=logits, labels=labels)
