"""Fine-tuning the whole BYOL encoder with every label (notebook 03), scored on the validation split.

Notebook 03 first fine-tunes in the report's style: the encoder frozen except its last stage,
no augmentation, a two-layer head.  This script measures what unfreezing *all* layers adds:
the BYOL encoder of ``checkpoints/byol-mnist.pt`` (or a random-init encoder of the same shape,
the control) plus a linear head, AdamW, the 100-label baseline's elastic distortion as online
augmentation, every label of the notebook's training split (MNIST training split minus its
stratified 10 % validation split, seed 0).  The accuracy after each epoch is on the
*validation* split; the test set is never touched.  Run from the repository root, e.g.

    COURSE_DATA=../shared/data .venv/bin/python docs/experiments/03_finetune_all.py byol random --threads 1 --epochs 3

Settings of ``course_lib.evaluation.finetune``: ``byol`` (encoder lr 1e-3, the head's) and ``byol-lr3e-4`` (encoder lr 3e-4),
``byol-noaug`` (no augmentation), ``random`` (random init, lr 1e-3); ``byol-cos`` and
``random-cos``: the same with the learning rates decaying to 0 along a cosine.

Measured on the 2-core course machine with ``--threads 1`` beside two pretraining runs, with the
BYOL checkpoint of commit 85f8ccc (16 epochs, rotation/shear views), validation accuracy after
epochs 1, 2, 3:

    byol         96.97 %   95.47 %   97.95 %   (187 s)
    byol-cos     97.23 %   97.90 %   98.38 %   (189 s)
    random-cos   96.60 %   98.08 %   98.40 %   (176 s)

and with the retrained checkpoint (elastic views, commit 485b029's recipe):

    byol-cos     97.00 %   98.02 %   98.37 %   (199 s)

Eight epochs (``byol-cos --epochs 8``, 564 s), after each epoch:
97.02, 96.48, 98.37, 98.25, 98.77, 98.67, 98.85, 99.02 %: still below the issue's 99.3 %.

Fifteen epochs (``byol-cos --epochs 15``, 1014 s beside a BYOL trial): 96.73 95.63 98.40 97.52 98.58
98.55 98.60 98.73 98.77 98.95 98.90 99.02 99.03 99.12 99.05 %.

The ``recipe*`` settings run the library's ``finetune_all`` (``fit`` with a resume file; the
same optimiser, schedule and augmentation as ``byol-cos``), 15 epochs, validation after the last:

    recipe             99.00 %   (822 s)
    recipe-affine-ls   98.43 %   (827 s; a rotation of up to 10 degrees and a 10 % shift before
                                  the elastic distortion, label smoothing 0.1: worse)

These runs started from the BYOL checkpoint of commit fc63e6e (SGD lr 0.06).  From today's
checkpoint (SGD lr 0.2), with ``--threads 1`` beside other jobs, validation after each epoch:

    recipe-noaug   97.28 97.95 98.37 98.28 98.55 98.57 98.60 98.68 98.70 98.77 98.75 98.80 98.73 98.75 98.78 %
    recipe-shift   97.07 97.43 98.30 98.40 98.33 98.08 98.50 98.85 98.92 99.05 99.07 99.13 99.20 99.17 99.22 %

and ``recipe`` (the elastic distortion) gave 98.97 % after the last epoch in ``course pretrain
byol-mnist-finetuned``.  Without augmentation validation stops at 98.8 %; with the elastic
distortion the encoder cannot fit its own training batches (98.50 % in the last epoch, below
validation); a shift of up to 10 % sits between the two and wins, so
``FINETUNE_ALL_CONFIGS["mnist"]`` is now ``recipe-shift`` (it was ``recipe``).  ``recipe-mild``
was not run.

A constant learning rate of 1e-3 for every layer gives a noisy curve; the cosine decay settles
it.  But with every label the BYOL initialisation buys nothing over a random one (98.38 % vs
98.40 % after three epochs): reaching 99.3 % is a question of supervised training (schedule,
epochs, architecture), not of the pretraining.  ``byol-lr3e-4``, ``byol-noaug`` and ``random``
were not run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from course_lib.checkpoints import load_checkpoint
from course_lib.evaluation import finetune
from course_lib.paths import checkpoints_dir
from course_lib.ssl.byol_recipe import BYOL_CONFIGS
from course_lib.ssl.finetune_recipe import FinetuneAllConfig, classifier_for, finetune_all

from _common import ELASTIC, parse_settings, train_val_split  # the module beside this script


@dataclass(frozen=True)
class Setting:
    pretrained: bool = True
    backbone_lr: float = 1e-3
    augment: bool = True
    schedule: str = "constant"


LIBRARY = FinetuneAllConfig()  # the class defaults: elastic distortion; FINETUNE_ALL_CONFIGS["mnist"] is recipe-shift
#: settings run through the library's ``finetune_all`` (what ``course pretrain byol-mnist-finetuned`` runs),
#: each a ``FinetuneAllConfig``; ``--epochs`` overrides its epochs
RECIPE_SETTINGS = {
    "recipe": LIBRARY,
    "recipe-ls": replace(LIBRARY, label_smoothing=0.1),
    "recipe-affine": replace(LIBRARY, degrees=10.0, translate=0.1),
    "recipe-affine-ls": replace(LIBRARY, degrees=10.0, translate=0.1, label_smoothing=0.1),
    "recipe-wd0.05": replace(LIBRARY, weight_decay=0.05),
    "recipe-noaug": replace(LIBRARY, elastic_alpha=0.0),
    "recipe-shift": replace(LIBRARY, elastic_alpha=0.0, translate=0.1),
    "recipe-mild": replace(LIBRARY, elastic_sigma=6.0),
}

SETTINGS = {
    "byol": Setting(),
    "byol-lr3e-4": Setting(backbone_lr=3e-4),
    "byol-noaug": Setting(augment=False),
    "random": Setting(pretrained=False),
    "byol-cos": Setting(schedule="cosine"),
    "random-cos": Setting(pretrained=False, schedule="cosine"),
}


def main() -> None:
    args = parse_settings(__doc__, [*SETTINGS, *RECIPE_SETTINGS], epochs=3)
    train, val = train_val_split()
    for name in args.settings:
        if name in RECIPE_SETTINGS:
            t0 = time.perf_counter()
            torch.manual_seed(0)
            encoder = BYOL_CONFIGS["mnist"].encoder(1)
            load_checkpoint(checkpoints_dir() / "byol-mnist.pt", encoder)
            torch.manual_seed(0)
            h = finetune_all(classifier_for(encoder, 10), train.images, train.labels, val.images, val.labels,
                             RECIPE_SETTINGS[name], epochs=args.epochs, seed=0, progress=False)
            per_epoch = " ".join(f"{100 * a:.2f}" for a in h["val_acc"])
            print(f"{name:<12} validation accuracy per epoch: {per_epoch} % ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            continue
        s, t0 = SETTINGS[name], time.perf_counter()
        torch.manual_seed(0)
        encoder = BYOL_CONFIGS["mnist"].encoder(1)
        if s.pretrained:
            load_checkpoint(checkpoints_dir() / "byol-mnist.pt", encoder)
        res = finetune(encoder, nn.Linear(encoder.feature_dim, 10), train.images, train.labels,
                       val_images=val.images, val_labels=val.labels, epochs=args.epochs, lr=1e-3,
                       backbone_lr=s.backbone_lr, weight_decay=1e-4, batch_size=128, schedule=s.schedule,
                       train_transform=ELASTIC if s.augment else None, seed=0)
        per_epoch = " ".join(f"{100 * a:.2f}" for a in res.val_accuracy)
        print(f"{name:<12} validation accuracy per epoch: {per_epoch} % ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
