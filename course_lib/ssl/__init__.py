"""Self-supervised learning: MoCo v2, BYOL and MAE as small composable pieces.

- ``common``  projection / prediction heads, EMA targets (``copy_as_target``,
  ``momentum_update``, ``cosine_tau``)
- ``moco``    ``MoCo``, ``info_nce``, split BatchNorm (single-device shuffle-BN)
- ``byol``    ``BYOL``, ``byol_loss``, ``collapse_std`` (collapse monitor)
- ``byol_recipe`` ``BYOLConfig``, ``pretrain_byol`` (BYOL with the cosine tau schedule)
- ``mae``     ``MAE``, ``patchify`` / ``unpatchify``, ``random_masking``, ``mae_loss``

Each method wraps any backbone (``nn.Module`` mapping images to features); linear
probes, kNN and fine-tuning of the learned backbone live in ``course_lib.evaluation``.
"""

from __future__ import annotations

from .byol import BYOL, BYOLOutput, byol_loss, collapse_std
from .byol_recipe import BYOLConfig, pretrain_byol
from .common import (
    PredictionHead,
    ProjectionHead,
    activate_requires_grad,
    copy_as_target,
    cosine_tau,
    deactivate_requires_grad,
    momentum_update,
)
from .mae import MAE, MAEBackbone, mae_loss, patchify, random_masking, unpatchify
from .moco import (
    MoCo,
    MoCoOutput,
    SplitBatchNorm1d,
    SplitBatchNorm2d,
    convert_to_split_bn,
    info_nce,
)

__all__ = [
    "BYOL",
    "BYOLConfig",
    "BYOLOutput",
    "MAE",
    "MAEBackbone",
    "MoCo",
    "MoCoOutput",
    "PredictionHead",
    "ProjectionHead",
    "SplitBatchNorm1d",
    "SplitBatchNorm2d",
    "activate_requires_grad",
    "byol_loss",
    "collapse_std",
    "convert_to_split_bn",
    "copy_as_target",
    "cosine_tau",
    "deactivate_requires_grad",
    "info_nce",
    "mae_loss",
    "momentum_update",
    "patchify",
    "pretrain_byol",
    "random_masking",
    "unpatchify",
]
