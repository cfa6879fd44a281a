"""BYOL: bootstrap your own latent (Grill et al. 2020), with the switches to break it.

An *online* network (encoder, projector, predictor) learns to predict the projection
that a *target* network (encoder, projector; an EMA of the online ones) gives for
another view of the same image.  There are no negatives; two pieces keep the
embeddings from collapsing to a constant: the predictor and the slowly moving target.

``BYOL(..., use_predictor=False)`` or ``use_ema=False`` turn those pieces off so a
notebook can show the collapse; ``collapse_std`` is the monitor (about
``1/sqrt(d)`` while healthy, near 0 once collapsed).  ``use_ema=False`` with the
predictor kept is SimSiam (target = online weights under stop-gradient), which
still works; without both it collapses.

Build the optimiser from ``model.trainable_parameters()``: the target copies are
registered submodules with ``requires_grad=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import (
    PredictionHead,
    ProjectionHead,
    copy_as_target,
    cosine_tau,
    flatten_features,
    momentum_update,
)


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """``2 - 2 cos(p, z)`` averaged over the batch; ``z`` is detached (the target).

    Equal to the mean squared distance of the L2-normalised vectors: 0 when ``p`` and
    ``z`` are parallel, 2 when orthogonal, 4 when opposite.
    """
    if p.shape != z.shape or p.dim() != 2:
        raise ValueError(f"p and z must both be (N, D); got {tuple(p.shape)} and {tuple(z.shape)}")
    cos = F.cosine_similarity(p, z.detach(), dim=1)
    return (2.0 - 2.0 * cos).mean()


@torch.no_grad()
def collapse_std(embeddings: Tensor) -> float:
    """Collapse monitor: per-dimension std of the L2-normalised embeddings, averaged.

    For embeddings spread over the sphere in ``d`` dimensions each coordinate has std
    about ``1/sqrt(d)``; when all embeddings collapse to one direction it goes to 0.
    (Used in the SimSiam paper and lightly's tutorials.)  Apply it to projections or
    predictions: features right after a ReLU are all non-negative, so they share a
    common direction and their value sits well below ``1/sqrt(d)`` even when healthy.
    """
    if embeddings.dim() != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"embeddings must be (N, D) with N >= 2, got {tuple(embeddings.shape)}")
    z = F.normalize(embeddings.detach().float(), dim=1)
    return float(z.std(dim=0).mean())


@dataclass
class BYOLOutput:
    """What ``BYOL.forward`` returns.

    ``loss`` is the symmetric loss (average of both view orders, range [0, 4]).
    ``projections`` are the online projections of the first view and
    ``predictions`` the online predictions of it, both detached (for
    ``collapse_std``).
    """

    loss: Tensor
    projections: Tensor
    predictions: Tensor


class BYOL(nn.Module):
    """BYOL around a backbone that maps images to ``(N, feature_dim)`` features.

    Args:
        encoder: the backbone (output flattened to ``(N, feature_dim)``).
        feature_dim: width of the backbone output.
        projection_dim: width of the projection / prediction (paper: 256).
        hidden_dim: hidden width of projector and predictor (paper: 4096; smaller is
            fine for small images on a CPU).
        tau_base: starting EMA rate of the target; ``update_target`` raises it to 1
            along ``cosine_tau``.
        use_predictor: online predictor on top of the projector (``False`` collapses).
        use_ema: keep a separate EMA target.  ``False``: the target *is* the online
            encoder and projector under stop-gradient (SimSiam-style).

    Call ``update_target(step, total_steps)`` after every optimiser step.  The
    backbone for downstream evaluation is ``model.encoder``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        tau_base: float = 0.99,
        use_predictor: bool = True,
        use_ema: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= tau_base <= 1.0:
            raise ValueError(f"tau_base must be in [0, 1] (BYOL uses 0.99-0.996), got {tau_base}")
        self.feature_dim, self.tau_base = feature_dim, tau_base
        self.use_predictor, self.use_ema = use_predictor, use_ema
        self.encoder = encoder
        self.projector = ProjectionHead(feature_dim, hidden_dim, projection_dim, num_layers=2, batchnorm=True)
        self.predictor: nn.Module = (
            PredictionHead(projection_dim, hidden_dim, projection_dim) if use_predictor else nn.Identity()
        )
        if use_ema:
            self.target_encoder: nn.Module | None = copy_as_target(self.encoder)
            self.target_projector: nn.Module | None = copy_as_target(self.projector)
        else:
            self.target_encoder = self.target_projector = None
        self.tau = tau_base

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser should get: online encoder, projector, predictor."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def update_target(self, step: int, total_steps: int) -> float:
        """EMA step of the target with ``tau = cosine_tau(step, total_steps, tau_base)``.

        Returns the ``tau`` used (a no-op returning 0.0 when ``use_ema=False``: the
        target then always equals the online network).
        """
        if not self.use_ema:
            return 0.0
        self.tau = cosine_tau(step, total_steps, self.tau_base)
        momentum_update(self.encoder, self.target_encoder, self.tau)  # type: ignore[arg-type]
        momentum_update(self.projector, self.target_projector, self.tau)  # type: ignore[arg-type]
        return self.tau

    def _features(self, encoder: nn.Module, x: Tensor) -> Tensor:
        h = flatten_features(encoder(x))
        if h.shape[1] != self.feature_dim:
            raise ValueError(
                f"the encoder returns features of width {h.shape[1]} but BYOL was built with "
                f"feature_dim={self.feature_dim}; pass the encoder's output width"
            )
        return h

    def online(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Online ``(projection, prediction)`` of a batch of images."""
        z = self.projector(self._features(self.encoder, x))
        return z, self.predictor(z)

    @torch.no_grad()
    def target(self, x: Tensor) -> Tensor:
        """Target projection of a batch of images (no gradient)."""
        if self.use_ema:
            return self.target_projector(self._features(self.target_encoder, x))  # type: ignore[misc]
        return self.projector(self._features(self.encoder, x))

    def forward(self, x1: Tensor, x2: Tensor) -> BYOLOutput:
        """Symmetric BYOL loss for two augmented views of the same images."""
        if x1.shape != x2.shape:
            raise ValueError(f"the two views must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
        z1, p1 = self.online(x1)
        z2, p2 = self.online(x2)
        if self.use_ema:
            t1, t2 = self.target(x1), self.target(x2)
        else:  # target = online network under stop-gradient: reuse the projections
            t1, t2 = z1.detach(), z2.detach()
        loss = 0.5 * (byol_loss(p1, t2) + byol_loss(p2, t1))
        return BYOLOutput(loss=loss, projections=z1.detach(), predictions=p1.detach())
