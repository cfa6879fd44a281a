"""Pieces shared by the self-supervised methods: heads and the momentum (EMA) target.

MoCo and BYOL both train an *online* network by gradient descent and keep a second,
*target* (MoCo: "key") network that is never trained directly: it follows the online
one as an exponential moving average (EMA),

    target <- tau * target + (1 - tau) * online.

The target must not receive gradients and must not be in the optimiser (an optimiser
with weight decay would otherwise shrink it).  ``copy_as_target`` makes such a copy,
``momentum_update`` moves it, and ``cosine_tau`` is BYOL's schedule for ``tau``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ProjectionHead(nn.Sequential):
    """MLP that maps backbone features to the space where the SSL loss is computed.

    ``num_layers`` counts the Linear layers.  Every Linear but the last is followed by
    BatchNorm1d (if ``batchnorm``) and ReLU: ``Linear-BN-ReLU-...-Linear``.  The
    MoCo v2 head is ``ProjectionHead(d, d, 128, batchnorm=False)``; the BYOL/SimCLR
    head uses ``batchnorm=True``.  ``num_layers=1`` is a single Linear (MoCo v1).

    Args:
        in_dim: width of the backbone features.
        hidden_dim: width of the hidden layers.
        out_dim: width of the output embedding.
        num_layers: number of Linear layers (>= 1).
        batchnorm: put BatchNorm1d after each hidden Linear (which then has no bias).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batchnorm: bool = True,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1 (the number of Linear layers), got {num_layers}")
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive width, got {value}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim


class PredictionHead(ProjectionHead):
    """BYOL/SimSiam predictor: ``Linear-BN-ReLU-Linear`` on top of the online projection.

    Only the online branch has it.  The asymmetry it creates (online predicts target)
    is what keeps BYOL from collapsing; remove it and the embeddings collapse.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batchnorm: bool = True) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batchnorm=batchnorm)


def deactivate_requires_grad(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of ``module`` and return it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def activate_requires_grad(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=True`` on every parameter of ``module`` and return it."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def copy_as_target(module: nn.Module) -> nn.Module:
    """Deep copy of ``module`` with ``requires_grad=False`` everywhere: an EMA target.

    The copy keeps the train/eval mode of the original and is not forced into eval
    mode: in MoCo and BYOL the target runs in the same mode as the online network
    (train mode, so its BatchNorm uses batch statistics).  Register it as a submodule
    so that ``.to(device)`` moves it and ``state_dict`` saves it; its parameters then
    appear in ``model.parameters()`` but with ``requires_grad=False``, so build the
    optimiser from ``[p for p in model.parameters() if p.requires_grad]``.
    """
    return deactivate_requires_grad(copy.deepcopy(module))


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    """EMA step ``target = tau * target + (1 - tau) * online`` for the parameters.

    Buffers (e.g. BatchNorm running statistics) are copied from ``online``.  ``tau=1``
    leaves the target exactly unchanged; ``tau=0`` makes it an exact copy.  The two
    modules must have the same architecture (``target`` made by ``copy_as_target``).
    """
    tau = float(tau)
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1] (1 = target frozen, 0 = copy online), got {tau}")
    online_params = dict(online.named_parameters())
    target_params = dict(target.named_parameters())
    if online_params.keys() != target_params.keys():
        missing = sorted(online_params.keys() ^ target_params.keys())[:5]
        raise ValueError(
            "online and target modules have different parameters "
            f"(e.g. {missing}); make the target with copy_as_target(online)"
        )
    for name, p_t in target_params.items():
        p_o = online_params[name]
        if p_o.shape != p_t.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(p_o.shape)} online but {tuple(p_t.shape)} in the target")
        p_t.mul_(tau).add_(p_o.detach(), alpha=1.0 - tau)
    online_buffers = dict(online.named_buffers())
    for name, b_t in target.named_buffers():
        if name in online_buffers:
            b_t.copy_(online_buffers[name])


def cosine_tau(step: int, total_steps: int, tau_base: float) -> float:
    """BYOL's EMA schedule: ``tau = 1 - (1 - tau_base) * (cos(pi * k / K) + 1) / 2``.

    ``k = step`` and ``K = total_steps`` count *optimiser steps* (not epochs).  The
    value starts at ``tau_base`` (k = 0) and rises to exactly 1 (k = K); steps past
    ``K`` stay at 1.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be a positive number of optimiser steps, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 <= tau_base <= 1.0:
        raise ValueError(f"tau_base must be in [0, 1] (BYOL uses 0.99-0.996), got {tau_base}")
    k = min(step, total_steps)
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


def flatten_features(x: torch.Tensor) -> torch.Tensor:
    """Backbone output as ``(N, D)``: feature maps ``(N, C, H, W)`` are flattened."""
    return x.flatten(1) if x.dim() > 2 else x
