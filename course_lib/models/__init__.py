"""The course's supervised models: plain torch modules, no training loops.

- ``alexnet``  ``AlexNet`` for any input size (16-224 px), ``alexnet_cifar``
- ``cnn``      ``SmallCNN`` (MNIST, ~28 k params), ``ReportCNN``, ``MLP``, ``FashionCNN``,
               ``l1_penalty`` / ``l2_penalty``
- ``sequence`` ``RowLSTM`` and ``SingleAttention``: images read as sequences of rows
- ``vit``      a small ``ViT``
- ``resnet``   ``resnet18_for`` (small-input stem, local or ImageNet weights, offline-safe),
               ``freeze_backbone``, ``pretrained_source``, ``load_hub_model``
- ``summary``  ``layer_table`` / ``format_layer_table``, ``count_params``, and
               ``alexnet_shape_walk``: AlexNet's size arithmetic without a model
"""

from __future__ import annotations

from .alexnet import AlexNet, alexnet_cifar, alexnet_plan
from .cnn import MLP, FashionCNN, ReportCNN, SmallCNN, l1_penalty, l2_penalty
from .resnet import (
    PretrainedUnavailableError,
    freeze_backbone,
    load_hub_model,
    load_matching_weights,
    pretrained_source,
    resnet18_for,
)
from .sequence import RowLSTM, SingleAttention, image_to_rows
from .summary import (
    ORIGINAL,
    PAPER_227,
    TORCHVISION,
    LayerSpec,
    alexnet_shape_walk,
    conv_out_size,
    count_params,
    first_invalid_layer,
    format_layer_table,
    format_shape_walk,
    layer_table,
)
from .vit import ViT

__all__ = [
    "AlexNet",
    "FashionCNN",
    "LayerSpec",
    "MLP",
    "ORIGINAL",
    "PAPER_227",
    "PretrainedUnavailableError",
    "ReportCNN",
    "RowLSTM",
    "SingleAttention",
    "SmallCNN",
    "TORCHVISION",
    "ViT",
    "alexnet_cifar",
    "alexnet_plan",
    "alexnet_shape_walk",
    "conv_out_size",
    "count_params",
    "first_invalid_layer",
    "format_layer_table",
    "format_shape_walk",
    "freeze_backbone",
    "image_to_rows",
    "l1_penalty",
    "l2_penalty",
    "layer_table",
    "load_hub_model",
    "load_matching_weights",
    "pretrained_source",
    "resnet18_for",
]
