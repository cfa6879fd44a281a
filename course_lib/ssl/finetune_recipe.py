"""Fine-tuning every layer of a pretrained encoder with every label, and its ``course pretrain`` recipe.

Notebook 03 first replicates the report's fine-tuning (the encoder frozen except its
last stage, no augmentation); that recipe leaves most of the network untouched.  Done
right, with all 54 k training labels, *every* layer is trained: the encoder plus a new
linear head, AdamW with one learning rate decaying to 0 along a cosine, a random shift
of each image as online augmentation (on MNIST it beat the elastic distortion of the
100-label baselines, which the encoder could not fit with every label), a fixed number
of epochs (no test set, no early stopping to tune).  That is a supervised training run of a few
tens of CPU minutes, so notebook 03's ``quick`` profile loads the result,
``checkpoints/byol-mnist-finetuned.pt`` (``course pretrain byol-mnist-finetuned``), and
``TRAIN = True`` or the ``full`` profile runs the same ``finetune_all`` in the notebook.

``finetune_all`` goes through ``course_lib.train.fit``: a resume file after each epoch,
Ctrl-C safe, the validation accuracy of every epoch in the history.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..augment import Compose, ElasticDistortion, RandomAffine, Transform
from ..evaluation import Classifier
from ..loader import TensorLoader
from ..train import History, fit
from .pretraining import load_base_checkpoint, prepare_pretraining


@dataclass(frozen=True)
class FinetuneAllConfig:
    """Full fine-tuning settings (chosen on validation, ``docs/experiments/03_finetune_all.py``).

    ``epochs`` over the labelled images in batches of ``batch_size``; AdamW with ``lr``
    for every layer (encoder and head) and ``weight_decay``, cosine decay to 0 over all
    steps, cross-entropy with ``label_smoothing``; on every training batch, each image
    with its own parameters: a random rotation (up to ``degrees``) and shift (up to
    ``translate`` of the side), then Simard's elastic distortion (``elastic_alpha``,
    ``elastic_sigma`` in pixels).
    """

    epochs: int = 15
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    label_smoothing: float = 0.0
    degrees: float = 0.0
    translate: float = 0.0
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"FinetuneAllConfig: epochs and batch_size must be >= 1, got {self.epochs}, "
                             f"{self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"FinetuneAllConfig: lr must be > 0 and weight_decay >= 0, got {self.lr}, "
                             f"{self.weight_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"FinetuneAllConfig: label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.degrees < 0 or not 0.0 <= self.translate <= 1.0:
            raise ValueError(f"FinetuneAllConfig: degrees must be >= 0 and translate a fraction in [0, 1], got "
                             f"{self.degrees}, {self.translate}")
        if self.elastic_alpha < 0 or self.elastic_sigma <= 0:
            raise ValueError(f"FinetuneAllConfig: elastic_alpha must be >= 0 and elastic_sigma > 0, got "
                             f"{self.elastic_alpha}, {self.elastic_sigma}")

    def describe_augmentation(self) -> str:
        """The augmentation in words, for notebook text and result notes."""
        parts = ([f"a rotation of up to {self.degrees:g} degrees"] if self.degrees else []) + \
                ([f"a shift of up to {100 * self.translate:g} %"] if self.translate else []) + \
                ([f"Simard's elastic distortion (alpha {self.elastic_alpha:g}, sigma {self.elastic_sigma:g})"]
                 if self.elastic_alpha else [])
        return ", then ".join(parts) or "no augmentation"

    def augmentation(self) -> Transform | None:
        """The batched training augmentation (``None`` when every strength is 0)."""
        steps: list[Transform] = []
        if self.degrees > 0 or self.translate > 0:
            steps.append(RandomAffine(self.degrees, translate=(self.translate, self.translate)))
        if self.elastic_alpha > 0:
            steps.append(ElasticDistortion(self.elastic_alpha, self.elastic_sigma))
        return None if not steps else steps[0] if len(steps) == 1 else Compose(steps)

    def to_dict(self) -> dict:
        return asdict(self)


FINETUNE_ALL_CONFIGS: dict[str, FinetuneAllConfig] = {
    # a random shift of up to 10 % beat the elastic distortion on validation: 99.22 % vs 99.00 % after 15 epochs
    "mnist": FinetuneAllConfig(translate=0.1, elastic_alpha=0.0),
}


def classifier_for(encoder: nn.Module, num_classes: int = 10) -> Classifier:
    """``encoder`` plus a new linear head (``head(flatten(encoder(x)))``), the model ``finetune_all`` trains."""
    feature_dim = getattr(encoder, "feature_dim", None)
    if feature_dim is None:
        raise ValueError("the encoder needs a feature_dim attribute (the size of its output features)")
    return Classifier(encoder, nn.Linear(int(feature_dim), num_classes))


def finetune_all(
    model: Classifier,
    train_images: Tensor,
    train_labels: Tensor,
    val_images: Tensor,
    val_labels: Tensor,
    cfg: FinetuneAllConfig,
    *,
    epochs: int | None = None,
    checkpoint: str | Path | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Train every parameter of ``model`` (in place) on the labelled images; validation accuracy per epoch.

    ``checkpoint``: a resume file written after every epoch; if it exists, training
    continues from it.  Returns ``fit``'s ``History`` (``val_acc`` per epoch; the model
    is that of the *last* epoch: the schedule is fixed in advance, nothing is picked).
    """
    if len(train_images) < cfg.batch_size:
        raise ValueError(f"{len(train_images)} training images, fewer than one batch of {cfg.batch_size}; "
                         "lower batch_size in the FinetuneAllConfig")
    model.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train = TensorLoader(train_images, train_labels, cfg.batch_size, shuffle=True, transform=cfg.augmentation(),
                         device=device, seed=seed)
    val = TensorLoader(val_images, val_labels, batch_size=1000, device=device)
    return fit(model, train, val, epochs=epochs or cfg.epochs, optimizer=opt, scheduler="cosine",
               label_smoothing=cfg.label_smoothing, checkpoint=checkpoint, device=device, progress=progress)


def finetune_all_recipe(method: str, dataset: str) -> Callable[..., Path]:
    """The ``course pretrain <method>-<dataset>-finetuned`` recipe: ``finetune_all`` from ``<method>-<dataset>.pt``."""
    if dataset not in FINETUNE_ALL_CONFIGS:
        raise ValueError(f"no full fine-tuning config for {dataset!r}; known: {sorted(FINETUNE_ALL_CONFIGS)}")
    name, base_name = f"{method}-{dataset}-finetuned", f"{method}-{dataset}"

    def recipe(*, out: str | Path | None = None, epochs: int | None = None, seed: int = 0, root: str | None = None,
               device: str | None = None, limit: int | None = None, fresh: bool = False,
               log: Callable[[str], None] = print, base: str | Path | None = None) -> Path:
        base_ckpt = load_base_checkpoint(base, needed_by=name, base_name=base_name)
        t_all = time.perf_counter()
        cfg, encoder = FINETUNE_ALL_CONFIGS[dataset], base_ckpt.encoder
        setup = prepare_pretraining(name, dataset, (cfg, base_ckpt.sha256), epochs=epochs or cfg.epochs, seed=seed,
                                    root=root, device=device, limit=limit, fresh=fresh, labelled=True, log=log)
        torch.manual_seed(seed)
        model = classifier_for(encoder, len(setup.train.classes))
        labels = setup.train.labels[:len(setup.images)]
        history = finetune_all(model, setup.images, labels, setup.val.images, setup.val.labels, cfg,
                               epochs=setup.epochs, checkpoint=setup.resume, device=setup.device, seed=seed)
        setup.raise_if_interrupted(history)
        metrics = {"val_acc": history.records[-1]["val_acc"], "val_acc_per_epoch": history["val_acc"],
                   "final_train_loss": history.records[-1]["train_loss"]}
        log(f"validation accuracy per epoch: {' '.join(f'{100 * a:.2f}' for a in history['val_acc'])} %")
        out = setup.save(out, model, history, metrics, total_wall_time_s=time.perf_counter() - t_all,
                         split="training split minus stratified_split(val_fraction=0.1, seed=0); every training "
                               "label used, the validation split scored after each epoch",
                         model_config=encoder.config(), num_classes=len(setup.train.classes),
                         finetune_config=cfg.to_dict(), augmentation=repr(cfg.augmentation()),
                         base_checkpoint=base_ckpt.provenance())
        log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)")
        return out

    recipe.__doc__ = (f"every layer of the {method} encoder of {dataset} fine-tuned with every label, "
                      f"checkpoint checkpoints/{name}.pt")
    return recipe
