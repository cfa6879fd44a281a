"""ResNet-18 for small images and transfer learning, with offline-safe pretrained weights.

``resnet18_for`` builds torchvision's ResNet-18 for a given class count and channel
count.  With ``small_input=True`` (28-32 px images) the 7x7 stride-2 stem and its
max-pool, which would shrink a 32 px image to 8 px before the first block, become
one 3x3 stride-1 conv (the usual CIFAR variant).

Weights come from ``weights=``:

- ``None``: random initialisation;
- ``"imagenet"``: torchvision's ``ResNet18_Weights.IMAGENET1K_V1`` (downloaded once
  into the torch hub cache).  Offline, a ``PretrainedUnavailableError`` says so and
  lists what to do instead;
- a path to a ``.pt`` file: a plain state dict or a checkpoint dict holding one
  (under ``model_state``, ``model_state_dict``, ``state_dict`` or ``model``).

Loading matches tensors by name and shape.  A head with a different class count
is left freshly initialised, an RGB stem is averaged down to the model's channel
count (summed for one channel, so a grey image gives the same response as its RGB
copy), and anything else that does not fit is skipped.  What happened is recorded
on the model: ``model.weights_info`` (a dict) and ``pretrained_source(model)`` (one
line for the notebook to print).
"""

from __future__ import annotations

import http.client
import os
import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "PretrainedUnavailableError",
    "freeze_backbone",
    "load_hub_model",
    "load_matching_weights",
    "pretrained_source",
    "resnet18_for",
]

_NETWORK_ERRORS = (OSError, http.client.HTTPException)
_STATE_KEYS = ("model_state", "model_state_dict", "state_dict", "model")


class PretrainedUnavailableError(RuntimeError):
    """Pretrained weights were requested but cannot be fetched (usually: no network)."""


def _imagenet_state_dict() -> dict[str, Tensor]:
    from torchvision.models import ResNet18_Weights  # imported here: torchvision takes seconds to import

    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except _NETWORK_ERRORS as err:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        raise PretrainedUnavailableError(
            f"could not download the ImageNet ResNet-18 weights ({weights}) from {weights.url}: {err}. "
            "This machine seems to have no network access. To proceed: "
            f"(1) on a machine with internet, run `python -c \"import torchvision; "
            f"torchvision.models.resnet18(weights='IMAGENET1K_V1')\"` and copy the file it saves to {cache}; "
            "(2) or pass weights='<path to a .pt state dict or course checkpoint>' (for example a ResNet-18 "
            "trained in an earlier notebook); (3) or use weights=None to train from random initialisation."
        ) from err


def _extract_state_dict(obj: Any, source: str) -> dict[str, Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _extract_state_dict(obj[key], source)
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors:
            # Strip wrappers' prefixes: DataParallel ("module.") and torch.compile ("_orig_mod.").
            out = {}
            for k, v in tensors.items():
                for prefix in ("module.", "_orig_mod."):
                    if k.startswith(prefix):
                        k = k[len(prefix):]
                out[k] = v
            return out
    raise ValueError(
        f"{source} holds no state dict: expected a dict of tensors or a checkpoint dict with one under "
        f"{', '.join(repr(k) for k in _STATE_KEYS)}; got {type(obj).__name__}"
        + (f" with keys {sorted(obj)[:8]}" if isinstance(obj, Mapping) else "")
    )


def load_matching_weights(model: nn.Module, state: Mapping[str, Tensor], head: str = "fc") -> dict[str, Any]:
    """Copy the tensors of ``state`` that fit ``model``; report what was loaded, adapted and skipped.

    - same name and shape: copied exactly;
    - a first-conv weight whose only difference is the input-channel count (RGB
      weights, grayscale model): averaged over the RGB filters and repeated, scaled so
      a grey image replicated to RGB gives the same response;
    - parameters of ``head`` with another shape (a different class count): left at the
      model's fresh initialisation;
    - anything else that does not fit, or is absent from ``model``: skipped.

    Returns ``{"loaded": [...], "adapted": [...], "skipped": {name: reason}}``.
    """
    own = model.state_dict()
    first_conv = next((n for n, v in own.items() if v.ndim == 4), None)
    merged = dict(own)
    loaded, adapted, skipped = [], [], {}
    for name, value in state.items():
        if name not in own:
            skipped[name] = "not in this model"
            continue
        target = own[name]
        if value.shape == target.shape:
            merged[name] = value.to(dtype=target.dtype)
            loaded.append(name)
        elif (
            name == first_conv
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
            and value.shape[1] != target.shape[1]
        ):
            k = target.shape[1]
            merged[name] = (value.sum(1, keepdim=True) / k).repeat(1, k, 1, 1).to(dtype=target.dtype)
            adapted.append(f"{name}: {value.shape[1]} -> {k} input channels (filters summed over channels, / {k})")
        elif name.split(".")[0] == head:
            skipped[name] = f"new head: {tuple(value.shape)} in the file, {tuple(target.shape)} here (fresh init)"
        else:
            skipped[name] = f"shape {tuple(value.shape)} in the file, {tuple(target.shape)} here"
    for name in own:
        if name not in state and not name.endswith("num_batches_tracked"):
            skipped.setdefault(name, "missing from the file (fresh init)")
    model.load_state_dict(merged)
    return {"loaded": loaded, "adapted": adapted, "skipped": skipped}


def resnet18_for(
    num_classes: int = 10,
    in_channels: int = 1,
    small_input: bool = True,
    weights: str | os.PathLike | None = None,
) -> nn.Module:
    """torchvision's ResNet-18 for ``num_classes`` classes and ``in_channels``-channel images.

    Args:
        num_classes: size of the new ``fc`` head.
        in_channels: 1 for MNIST-like images, 3 for RGB.
        small_input: replace the 7x7/2 stem and max-pool by a 3x3/1 conv (for 28-32 px).
            The pretrained 7x7 stem does not fit a 3x3 conv, so it stays randomly
            initialised (reported in ``weights_info["skipped"]``).
        weights: ``None``, ``"imagenet"`` or a path to a local ``.pt`` file (see module
            docstring).

    Returns:
        The model, with ``model.weights_info = {"source", "loaded", "adapted", "skipped"}``.

    Raises:
        PretrainedUnavailableError: ``weights="imagenet"`` and the download failed.
        FileNotFoundError: ``weights`` is a path that does not exist.
    """
    from torchvision.models import resnet18  # imported here: torchvision takes seconds to import

    model = resnet18(weights=None, num_classes=num_classes)
    if small_input or in_channels != 3:
        kernel, stride, padding = (3, 1, 1) if small_input else (7, 2, 3)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, padding, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if small_input:
        model.maxpool = nn.Identity()

    info: dict[str, Any] = {"source": "random", "loaded": [], "adapted": [], "skipped": {}}
    if weights is not None:
        if isinstance(weights, str) and weights.lower() in ("imagenet", "imagenet1k_v1", "default"):
            state, source = _imagenet_state_dict(), "imagenet"
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"weights={str(weights)!r} is neither 'imagenet' nor an existing file; "
                    "pass weights='imagenet', a path to a .pt state dict or course checkpoint, or None"
                )
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:  # a course checkpoint may also pickle plain-Python metadata
                obj = torch.load(path, map_location="cpu", weights_only=False)
            state, source = _extract_state_dict(obj, str(path)), str(path)
        info = {"source": source, **load_matching_weights(model, state, head="fc")}
        if not info["loaded"]:
            raise ValueError(
                f"no tensor in {source} matches ResNet-18 by name and shape; is it a ResNet-18 state dict? "
                f"First keys in the file: {list(state)[:5]}"
            )
    model.weights_info = info
    return model


def pretrained_source(model: nn.Module) -> str:
    """One line saying which weights ``model`` started from, for notebooks to print."""
    info = getattr(model, "weights_info", None)
    if info is None:
        return "unknown (model not built by course_lib.models.resnet18_for)"
    if info["source"] == "random":
        return "random initialisation"
    parts = [f"{info['source']}: {len(info['loaded'])} tensors loaded"]
    if info["adapted"]:
        parts.append("adapted " + "; ".join(info["adapted"]))
    if info["skipped"]:
        parts.append("fresh init for " + ", ".join(sorted(info["skipped"])))
    return "; ".join(parts)


def freeze_backbone(model: nn.Module, trainable: Iterable[str] = ("fc",)) -> list[str]:
    """Freeze every parameter except those under the module prefixes in ``trainable``.

    ``trainable=("fc",)`` trains only the head (linear probing); ``("layer4", "fc")``
    fine-tunes the last stage too.  Returns the names of the parameters left trainable.
    Note that BatchNorm layers in train mode still update their running statistics;
    call ``.eval()`` on frozen parts to keep those fixed as well.
    """
    prefixes = tuple(trainable)
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            children = [n for n, _ in model.named_children()]
            raise ValueError(f"freeze_backbone: no parameter under {prefix!r}; the model's parts are {children}")
    kept = []
    for name, p in model.named_parameters():
        keep = any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
        p.requires_grad_(keep)
        if keep:
            kept.append(name)
    return kept


def load_hub_model(repo: str, name: str, **kw: Any) -> nn.Module:
    """``torch.hub.load(repo, name, **kw)``, with a clear ``PretrainedUnavailableError`` when offline.

    ``repo`` may be ``"owner/repo[:ref]"`` on GitHub or a local directory holding a
    ``hubconf.py`` (then nothing is downloaded unless the entry point itself does).
    """
    if os.path.isdir(repo):
        kw.setdefault("source", "local")
    try:
        return torch.hub.load(repo, name, **kw)
    except (*_NETWORK_ERRORS, RuntimeError) as err:
        # torch.hub turns "no connection and nothing cached" into a RuntimeError caused by a URLError.
        if isinstance(err, RuntimeError) and not isinstance(err.__cause__, _NETWORK_ERRORS):
            raise
        raise PretrainedUnavailableError(
            f"torch.hub.load({repo!r}, {name!r}) needs the network and failed: {err}. "
            f"Offline, either copy a clone of the repository here and pass its folder as repo (with the "
            f"weights in {torch.hub.get_dir()}/checkpoints), or load a local checkpoint instead "
            "(for ResNet-18: resnet18_for(weights='<path to .pt>'))."
        ) from err
