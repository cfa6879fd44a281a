"""Validation runs behind the training choices of notebook 05 (model comparison on MNIST).

Each setting trains on the notebook's training split (54,001 images) and is scored on its
validation split (5,999 images, the same stratified 10 % with seed 0); the test set is
never touched.  Run from the repository root, e.g.

    COURSE_DATA=../shared/data .venv/bin/python docs/experiments/05_choices.py cnn-b64 cnn-b128 --seeds 0 1 2

and compare the printed mean ± std.  Settings (name: what the notebook uses or rejected):

- ``cnn-b128`` / ``cnn-b64``: ReportCNN 16-32-32, 8 epochs, peak lr 3e-3, batches of 128 / 64 (64 is
  about 0.2 points better on validation but 1.4x slower; the notebook keeps 128 for its time budget);
- ``cnn-b128-lr1e-2`` (chosen: the notebook's CNN) / ``cnn-b128-lr2e-2``: peak lr 1e-2 / 2e-2,
  ``cnn-b128-ls`` (label smoothing 0.1), ``cnn-b128-shift`` (shifts only, no rotation),
  ``cnn-b128-12ep`` (12 epochs);
- ``resnet`` (ResNet-18 from the course's Fashion-MNIST checkpoint, 1 epoch, lr 2e-3, label
  smoothing 0.1) / ``resnet-ls0`` / ``resnet-lr1e-3`` / ``resnet-lr4e-3`` / ``resnet-b64`` /
  ``resnet-2ep`` (2 epochs) / ``resnet-2ep-freeze1`` (2 epochs, stem and layer1 frozen) /
  ``resnet-lpft`` (LP-FT: the new head starts as a linear probe on 500 frozen-feature images per class) /
  ``resnet-headlr10`` (the new head's peak lr 10x the backbone's) / ``resnet-fused`` / ``resnet-2ep-fused``
  (AdamW's fused kernel: one pass over the 11 M parameters per step instead of one per tensor);
- ``lstm-b128`` (6 epochs, lr 3e-3, the earlier recipe) / ``lstm-b256`` (10 epochs, lr 5e-3) /
  ``lstm-b256-8ep`` (8 epochs, chosen) / ``lstm-b512`` / ``lstm-b512-8ep`` (batches of 512, lr 1e-2);
- ``vit-plain`` / ``vit-stem``: the ViT with 7x7 pixel patches / with the 2-conv stem (chosen), 6 epochs;
  ``vit-stem-5ep``: 5 epochs.

Times are wall-clock seconds on whatever else the machine is doing; use ``--threads``.

Measured on the 2-core course machine (``--threads 1``, two scripts side by side), validation accuracy:

- CNN, seeds 0-2: ``cnn-b128`` 98.95 ± 0.08 %, ``cnn-b128-lr1e-2`` 99.10 ± 0.06 % (chosen),
  ``cnn-b128-lr2e-2`` 98.80 ± 0.04 %, ``cnn-b128-ls`` 98.96 ± 0.14 %, ``cnn-b128-shift`` 98.94 ± 0.11 %;
- ResNet-18, seed 0 only (about 3.5 minutes each): ``resnet`` 98.82 %, ``resnet-ls0`` 98.88 %,
  ``resnet-lr4e-3`` 98.88 %, ``resnet-lr1e-3`` 98.78 %, ``resnet-b64`` 98.78 % -- all within
  single-seed noise; ``resnet-2ep`` 99.18 % (404 s), far outside it, so the quick profile trains
  two epochs (the second costs about 70 s alone on the machine, see ``resnet-2ep-fused`` below);
  ``resnet-2ep-freeze1`` 98.85 % (383 s): freezing gives the gain back;
  ``resnet-lpft`` 97.93 % (209 s, beside a CI run): on this one-epoch schedule a probe-initialised
  head *hurts* (seed 0 only; why was not investigated -- one guess is that the probe was fitted
  on eval-mode BatchNorm features and training runs in batch statistics);
  ``resnet-headlr10`` 98.95 % (246 s, beside a CI run): within the single-seed noise of the others;
  alone on the machine with ``--threads 2``: ``resnet`` 98.87 % (91 s), ``resnet-fused`` 98.73 % (98 s,
  beside a short test run), ``resnet-2ep-fused`` 99.12 % (158 s);
- LSTM: ``lstm-b256-8ep`` 98.71 ± 0.04 % (seeds 0-1, about 150-190 s each), ``lstm-b512-8ep``
  98.60 ± 0.02 %, ``lstm-b512`` 98.78 % (seed 0, 184 s): eight epochs in batches of 256 are as good
  as ten, so the notebook trains eight;
- ViT: ``vit-stem-5ep`` 98.20 % (seed 0) against 98.48 % for six epochs in the notebook: the sixth
  epoch stays.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import nn

from course_lib import augment as A
from course_lib.comparison import train_model
from course_lib.data import few_label_subset
from course_lib.loader import TensorLoader
from course_lib.models import ReportCNN, RowLSTM, ViT
from course_lib.train import seed_everything
from course_lib.transfer import build_resnet18

from _common import parse_settings, train_val_split  # the module beside this script

MEAN, STD = [0.1307], [0.3081]
SHIFT_ROTATE = A.RandomAffine(degrees=10, translate=(0.1, 0.1))  # the notebook's AUGMENT


@dataclass(frozen=True)
class Setting:
    """One training recipe, as in the notebook's SPECS (plus the number of epochs)."""

    build: Callable[[], nn.Module]
    epochs: int
    lr: float
    weight_decay: float
    augment: Any  # a batched transform or None
    batch_size: int
    label_smoothing: float = 0.0
    head_lr_mult: float = 1.0  # the new ``fc`` head's peak lr relative to ``lr`` (ResNet-18 only)
    fused: bool = False  # AdamW's fused kernel (one pass over all parameters per step)


def _frozen_stem(model: nn.Module) -> nn.Module:
    """ResNet-18 with its stem and first stage frozen (no weight updates, no backward through them)."""
    for part in (model.conv1, model.bn1, model.layer1):
        part.requires_grad_(False)
    return model


_PROBE_IMAGES: dict[str, Any] = {}  # main() puts a class-balanced 500-per-class training subset here


def _probe_initialised_head(model: nn.Module, C: float = 1.0) -> nn.Module:
    """LP-FT (Kumar et al. 2022): start fine-tuning from a linear probe on the frozen features, not a random head.

    The probe is fitted on 500 training images per class; its standardisation is folded
    into ``fc`` so the network stays one ordinary ResNet-18.
    """
    from course_lib.evaluation import linear_probe
    from course_lib.transfer import FrozenFeatures

    x, y = _PROBE_IMAGES["images"], _PROBE_IMAGES["labels"]
    head = linear_probe(FrozenFeatures(model, (MEAN, STD), device="cpu")(x), y, C=C).classifier
    with torch.no_grad():
        w = head.linear.weight / head.std
        model.fc.weight.copy_(w)
        model.fc.bias.copy_(head.linear.bias - (w * head.mean).sum(1))
    return model


CNN = Setting(lambda: ReportCNN(filters=(16, 32, 32)), 8, 3e-3, 1e-4, SHIFT_ROTATE, 128)
RESNET = Setting(lambda: build_resnet18("course")[0], 1, 2e-3, 1e-4, None, 128, 0.1)
LSTM = Setting(lambda: RowLSTM(hidden=128), 10, 5e-3, 0.0, None, 256)
VIT = Setting(lambda: ViT(patch_size=7, dim=64, depth=4, heads=4, stem_channels=(16, 16)), 6, 3e-3, 0.05, None, 128)
SETTINGS = {
    "cnn-b128": CNN,
    "cnn-b64": replace(CNN, batch_size=64),
    "cnn-b128-lr1e-2": replace(CNN, lr=1e-2),
    "cnn-b128-lr2e-2": replace(CNN, lr=2e-2),
    "cnn-b128-ls": replace(CNN, label_smoothing=0.1),
    "cnn-b128-shift": replace(CNN, augment=A.RandomAffine(translate=(0.1, 0.1))),
    "cnn-b128-12ep": replace(CNN, epochs=12),
    "resnet": RESNET,
    "resnet-lr1e-3": replace(RESNET, lr=1e-3),
    "resnet-lr4e-3": replace(RESNET, lr=4e-3),
    "resnet-ls0": replace(RESNET, label_smoothing=0.0),
    "resnet-b64": replace(RESNET, batch_size=64),
    "resnet-2ep": replace(RESNET, epochs=2),
    "resnet-fused": replace(RESNET, fused=True),
    "resnet-2ep-fused": replace(RESNET, epochs=2, fused=True),
    "resnet-2ep-freeze1": replace(RESNET, epochs=2, build=lambda: _frozen_stem(build_resnet18("course")[0])),
    "resnet-headlr10": replace(RESNET, head_lr_mult=10.0),
    "resnet-lpft": replace(RESNET, build=lambda: _probe_initialised_head(build_resnet18("course")[0])),
    "lstm-b128": replace(LSTM, epochs=6, lr=3e-3, batch_size=128),
    "lstm-b256": LSTM,
    "lstm-b256-8ep": replace(LSTM, epochs=8),
    "lstm-b512": replace(LSTM, lr=1e-2, batch_size=512),
    "lstm-b512-8ep": replace(LSTM, epochs=8, lr=1e-2, batch_size=512),
    "vit-plain": replace(VIT, build=lambda: ViT(patch_size=7, dim=64, depth=4, heads=4)),
    "vit-stem": VIT,
    "vit-stem-5ep": replace(VIT, epochs=5),
}


def main() -> None:
    args = parse_settings(__doc__, SETTINGS, seeds=[0, 1, 2])
    train, val = train_val_split()
    val_loader = TensorLoader(val.images, val.labels, 1000, normalize=(MEAN, STD))
    probe_idx = few_label_subset(train.labels, 500, seed=0)
    _PROBE_IMAGES.update(images=train.images[probe_idx], labels=train.labels[probe_idx])
    for name in args.settings:
        st = SETTINGS[name]
        accs = []
        for seed in args.seeds:
            seed_everything(seed)
            loader = TensorLoader(train.images, train.labels, st.batch_size, shuffle=True, seed=seed,
                                  normalize=(MEAN, STD), transform=st.augment)
            model, extra = st.build(), {}
            if st.fused:
                extra = {"optimizer": torch.optim.AdamW(model.parameters(), lr=st.lr, weight_decay=st.weight_decay,
                                                        fused=True)}
            if st.head_lr_mult != 1.0:  # two parameter groups, each with its own one-cycle peak
                head = list(model.fc.parameters())
                body = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
                extra = {"optimizer": torch.optim.AdamW([{"params": body}, {"params": head}], lr=st.lr,
                                                        weight_decay=st.weight_decay),
                         "scheduler_kwargs": {"max_lr": [st.lr, st.lr * st.head_lr_mult]}}
            run = train_model(name, model, loader, val_loader, epochs=st.epochs, lr=st.lr,
                              weight_decay=st.weight_decay, label_smoothing=st.label_smoothing, val_every_epoch=False,
                              **extra)
            accs.append(run.val_acc)
            print(f"{name} seed {seed}: validation {run.val_acc:.4f} ({run.train_seconds:.0f} s)", flush=True)
        spread = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        print(f"{name}: {statistics.mean(accs) * 100:.2f} ± {spread * 100:.2f} % over seeds {args.seeds}", flush=True)


if __name__ == "__main__":
    main()
