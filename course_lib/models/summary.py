"""Look inside a model: a per-layer table, parameter counts, and AlexNet's shape arithmetic.

``layer_table`` runs one forward pass and records what each layer produced, so a
notebook can print Keras-``summary()``-style tables for PyTorch models.
``alexnet_shape_walk`` does the same bookkeeping *without* a model, using only the
output-size formula ``floor((n + 2p - k) / s) + 1``.  It shows why the original
AlexNet cannot run unmodified on 16 px or 32 px images (the spatial size drops
below one pixel) and why most of its 60 M parameters sit in the first dense layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

__all__ = [
    "LayerSpec",
    "ORIGINAL",
    "PAPER_227",
    "TORCHVISION",
    "alexnet_shape_walk",
    "conv_out_size",
    "count_params",
    "first_invalid_layer",
    "format_layer_table",
    "format_shape_walk",
    "layer_table",
]


# --------------------------------------------------------------------------------------
# Parameter counts and the per-layer table
# --------------------------------------------------------------------------------------


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# Modules that hold their parameters in children they never call (``MultiheadAttention``
# uses ``out_proj.weight`` directly), so the table treats them as one layer.
_ATOMIC = (nn.MultiheadAttention,)


def _first_tensor_shape(out: Any) -> tuple[int, ...] | None:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        for item in out:
            shape = _first_tensor_shape(item)
            if shape is not None:
                return shape
    return None


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """Run one forward pass and return one row per layer call.

    Args:
        model: any module whose forward takes one tensor.
        input_shape: the shape of ONE sample, without the batch dimension, e.g.
            ``(3, 32, 32)``.  The pass uses a zero tensor of batch size 1 on the
            model's device, under ``torch.no_grad`` and in eval mode (the model's
            train/eval mode is restored afterwards).

    Returns:
        Rows ``{"name", "type", "output_shape", "params"}`` in call order.  Leaf modules
        (and ``nn.MultiheadAttention`` as a whole) get a row when they run; a module
        called twice gets a second row with ``params`` 0, so parameters are counted
        once.  Parameters that no hooked layer owns (a ViT's CLS token: type
        ``"Parameter"``) and layers that never ran get extra rows at the end with
        ``output_shape`` ``None``; the ``params``
        column therefore always sums to ``count_params(model)``.
    """
    if not isinstance(input_shape, (tuple, list)) or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(
            f"input_shape must be a tuple of positive ints for ONE sample, e.g. (3, 32, 32); got {input_shape!r}"
        )
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32

    # Which modules get hooks: leaves and atomic modules, not the insides of atomic ones.
    hooked: dict[nn.Module, str] = {}
    inside_atomic: set[int] = set()
    for name, module in model.named_modules():
        if id(module) in inside_atomic:
            continue
        if isinstance(module, _ATOMIC):
            for sub in module.modules():
                if sub is not module:
                    inside_atomic.add(id(sub))
            hooked[module] = name
        elif not any(True for _ in module.children()):
            hooked.setdefault(module, name or type(module).__name__)

    rows: list[dict] = []
    seen_params: set[int] = set()
    calls: dict[str, int] = {}

    def own_params(module: nn.Module, recurse: bool) -> int:
        total = 0
        for p in module.parameters(recurse=recurse):
            if id(p) not in seen_params:
                seen_params.add(id(p))
                total += p.numel()
        return total

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        name = hooked[module]
        calls[name] = calls.get(name, 0) + 1
        label = name if calls[name] == 1 else f"{name} (call {calls[name]})"
        rows.append(
            {
                "name": label,
                "type": type(module).__name__,
                "output_shape": _first_tensor_shape(output),
                "params": own_params(module, recurse=isinstance(module, _ATOMIC)),
            }
        )

    handles = [m.register_forward_hook(hook) for m in hooked]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    # Parameters owned by non-leaf modules or by layers that did not run.
    for name, module in model.named_modules():
        if id(module) in inside_atomic:
            continue
        if module in hooked:
            extra = own_params(module, recurse=isinstance(module, _ATOMIC))
            if extra:
                rows.append(
                    {"name": f"{name} (not called)", "type": type(module).__name__, "output_shape": None, "params": extra}
                )
            continue
        for pname, p in module.named_parameters(recurse=False):  # e.g. a ViT's cls_token
            if id(p) not in seen_params:
                seen_params.add(id(p))
                full = f"{name}.{pname}" if name else pname
                rows.append({"name": full, "type": "Parameter", "output_shape": None, "params": p.numel()})
    return rows


def _format(rows: Sequence[dict], columns: Sequence[tuple[str, str]], footer: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, tuple):
            return "(" + ", ".join(str(v) for v in value) + ")"
        return str(value)

    table = [[cell(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max([len(title)] + [len(t[i]) for t in table]) for i, (_, title) in enumerate(columns)]
    numeric = [all(isinstance(r.get(key), int) or r.get(key) is None for r in rows) for key, _ in columns]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [line([title for _, title in columns]), rule, *(line(t) for t in table), rule, *footer]
    return "\n".join(out)


def format_layer_table(rows: Sequence[dict], model: nn.Module | None = None) -> str:
    """Render ``layer_table`` rows as a fixed-width text table with the total at the bottom.

    Pass ``model`` to also print how many parameters are trainable.
    """
    total = sum(r["params"] for r in rows)
    footer = [f"Total params: {total:,}"]
    if model is not None:
        footer.append(f"Trainable params: {count_params(model, trainable_only=True):,}")
    columns = [("name", "Layer"), ("type", "Type"), ("output_shape", "Output shape"), ("params", "Params")]
    return _format(rows, columns, footer)


# --------------------------------------------------------------------------------------
# AlexNet's shape arithmetic, without a model
# --------------------------------------------------------------------------------------


def conv_out_size(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling window: ``floor((n + 2p - k) / s) + 1``.

    Python's floor division keeps going below zero for windows larger than the input,
    which is exactly the "negative dimension" Keras reports for ``padding='valid'``.
    """
    return (n + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a shape walk.

    ``kind`` is ``"conv"``, ``"pool"`` (max-pooling), ``"adaptive_pool"`` (forces
    ``out`` x ``out`` whatever the input, as torchvision's AlexNet does before its
    classifier) or ``"fc"``; ``out`` is the channel count (conv), the output side
    (adaptive_pool) or the number of features (fc; ``None`` means "the classes").
    """

    name: str
    kind: str
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    out: int | None = None


def _alexnet_cfg(channels: Sequence[int], conv1_padding: int, adaptive: int | None = None) -> tuple[LayerSpec, ...]:
    c1, c2, c3, c4, c5 = channels
    layers = [
        LayerSpec("conv1", "conv", 11, 4, conv1_padding, c1),
        LayerSpec("pool1", "pool", 3, 2, 0),
        LayerSpec("conv2", "conv", 5, 1, 2, c2),
        LayerSpec("pool2", "pool", 3, 2, 0),
        LayerSpec("conv3", "conv", 3, 1, 1, c3),
        LayerSpec("conv4", "conv", 3, 1, 1, c4),
        LayerSpec("conv5", "conv", 3, 1, 1, c5),
        LayerSpec("pool5", "pool", 3, 2, 0),
    ]
    if adaptive is not None:
        layers.append(LayerSpec("avgpool", "adaptive_pool", out=adaptive))
    layers += [LayerSpec("fc6", "fc", out=4096), LayerSpec("fc7", "fc", out=4096), LayerSpec("fc8", "fc", out=None)]
    return tuple(layers)


#: The paper's layer sizes (Krizhevsky et al. 2012: 96-256-384-384-256 channels, FC
#: 4096-4096), written as one tower (no two-GPU grouping, so 62.4 M parameters rather
#: than the paper's ~60 M), with conv1 padding 2 as torchvision uses: 224 -> 55 -> 27
#: -> 13 -> 6, the paper's sizes.  This is the layout ``AlexNet(input_size=224)`` builds.
#: With 10 classes it has 58,322,314 parameters, 65 % of them in fc6 (9216 x 4096).
ORIGINAL: tuple[LayerSpec, ...] = _alexnet_cfg((96, 256, 384, 384, 256), conv1_padding=2)

#: The same layers with conv1 padding 0 (Keras ``padding='valid'``): the paper's
#: 55 x 55 after conv1 then needs 227 px inputs; 224 px gives 54 -> 26 -> 12 -> 5.
PAPER_227: tuple[LayerSpec, ...] = _alexnet_cfg((96, 256, 384, 384, 256), conv1_padding=0)

#: ``torchvision.models.alexnet``: the "one weird trick" channels 64-192-384-256-256,
#: conv1 padding 2 and an adaptive average pool to 6 x 6 before the classifier
#: (61,100,840 parameters with 1000 classes).
TORCHVISION: tuple[LayerSpec, ...] = _alexnet_cfg((64, 192, 384, 256, 256), conv1_padding=2, adaptive=6)


def alexnet_shape_walk(
    input_size: int,
    conv_cfg: Sequence[LayerSpec] = ORIGINAL,
    num_classes: int = 1000,
    in_channels: int = 3,
) -> list[dict]:
    """Walk the spatial size and parameter count through AlexNet, by arithmetic only.

    Args:
        input_size: side of the square input image in pixels (224, 32, 16, ...).
        conv_cfg: the layers; ``ORIGINAL`` (paper channels, conv1 padding 2),
            ``PAPER_227`` (conv1 padding 0, Keras 'valid'), ``TORCHVISION``, or your own
            tuple of ``LayerSpec``.
        num_classes: outputs of the last FC layer.
        in_channels: image channels.

    Returns:
        One dict per layer: ``layer, kind, kernel, stride, padding, in_size, out_size,
        channels, params, valid, note``.  ``out_size`` is the spatial side for conv and
        pooling layers (it may be zero or negative: the walk keeps computing, as the
        arithmetic would) and the number of features for FC layers.  ``valid`` is False
        from the first layer whose output is smaller than 1 x 1 onwards; the note on
        that layer says so.  Once the walk is invalid the FC parameter counts are
        ``None`` (the first FC layer's input size is undefined).
    """
    if not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a positive int (pixels per side); got {input_size!r}")
    rows: list[dict] = []
    size, channels, features = input_size, in_channels, None
    valid = True
    for spec in conv_cfg:
        row = {
            "layer": spec.name,
            "kind": spec.kind,
            "kernel": spec.kernel or None,
            "stride": spec.stride if spec.kind in ("conv", "pool") else None,
            "padding": spec.padding if spec.kind in ("conv", "pool") else None,
            "in_size": size if features is None else features,
            "note": "",
        }
        if spec.kind in ("conv", "pool"):
            if features is not None:
                raise ValueError(f"layer {spec.name!r}: conv/pool layers must come before the FC layers")
            size = conv_out_size(size, spec.kernel, spec.stride, spec.padding)
            params = 0
            if spec.kind == "conv":
                params = spec.kernel * spec.kernel * channels * spec.out + spec.out
                channels = spec.out
            row.update(out_size=size, channels=channels, params=params)
            if valid and size < 1:
                valid = False
                row["note"] = (
                    f"output is {size} x {size}: below 1 x 1 ({spec.kernel}x{spec.kernel} window on a "
                    f"{row['in_size']} x {row['in_size']} input"
                    + (" with 'valid' padding)" if spec.padding == 0 else ")")
                )
        elif spec.kind == "adaptive_pool":
            if valid:
                size = spec.out
            row.update(out_size=size, channels=channels, params=0)
        elif spec.kind == "fc":
            if features is None:
                features = channels * size * size if valid else None
                row["in_size"] = features
                if valid:
                    row["note"] = f"flatten {channels} x {size} x {size} = {features:,} inputs"
            out = spec.out if spec.out is not None else num_classes
            params = features * out + out if features is not None else None
            features = out if features is not None else None
            row.update(out_size=out, channels=None, params=params)
        else:
            raise ValueError(f"layer {spec.name!r}: unknown kind {spec.kind!r}; use conv, pool, adaptive_pool or fc")
        row["valid"] = valid
        rows.append(row)
    return rows


def first_invalid_layer(rows: Sequence[dict]) -> str | None:
    """Name of the first layer of a shape walk whose output is below 1 x 1, else None."""
    return next((r["layer"] for r in rows if not r["valid"]), None)


def format_shape_walk(rows: Sequence[dict]) -> str:
    """Render ``alexnet_shape_walk`` rows as a fixed-width table with the parameter total."""
    params = [r["params"] for r in rows]
    bad = first_invalid_layer(rows)
    if bad is None:
        total = sum(params)
        fc = [r for r in rows if r["kind"] == "fc"]
        footer = [f"Total params: {total:,}"]
        if fc:
            footer.append(f"First FC layer: {fc[0]['params']:,} params ({100 * fc[0]['params'] / total:.0f}% of the total)")
    else:
        footer = [f"INVALID: the spatial size goes below 1 x 1 at {bad}; the network cannot be built for this input"]
    columns = [
        ("layer", "Layer"),
        ("kernel", "k"),
        ("stride", "s"),
        ("padding", "p"),
        ("in_size", "In"),
        ("out_size", "Out"),
        ("channels", "Ch"),
        ("params", "Params"),
        ("valid", "Valid"),
        ("note", "Note"),
    ]
    return _format(rows, columns, footer)
