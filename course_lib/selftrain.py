"""Self-training: fine-tuning with a few labels *and* the unlabelled pool.

Fine-tuning a pretrained encoder on 100 labelled images alone uses 100 images; the
pool they were drawn from, tens of thousands of images without labels, sits unused.
SimCLRv2 (Chen et al., 2020) adds a third step after pretraining and fine-tuning: the
fine-tuned model (the *teacher*) labels the unlabelled images, and a *student* is
trained on those labels.  The student can beat its teacher: it learns from far more
images, with augmentation, and the teacher's mistakes are scattered rather than
systematic, so the student's smooth decision boundary overrules many of them.

Here the teacher is the few-label linear probe on the frozen encoder (``C`` chosen by
cross-validation inside the labelled images, ``fewlabel.cv_probe``).  The student
starts as the teacher (a copy of the encoder, the probe as its head) and every layer
is fine-tuned on the pool's pseudo-labels plus the labelled images with their true
labels.  With ``rounds > 1`` the student relabels the pool and training continues.
No label of the pool is read; all settings are fixed in advance (there is no
validation set with 100 labels).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .evaluation import extract_features, finetune
from .fewlabel import cv_probe


@dataclass
class SelfTrainResult:
    """Outcome of ``self_train``: the student (encoder + head, eval mode) and what it was trained on."""

    model: nn.Module
    teacher_C: float
    pseudo_labels: Tensor  # the last round's labels of the unlabelled images


def self_train(
    encoder: nn.Module,
    images: Tensor,
    labels: Tensor,
    unlabelled: Tensor,
    *,
    Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    epochs: int = 1,
    rounds: int = 1,
    lr: float = 1e-3,
    backbone_lr: float = 3e-4,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    transform: Callable[..., Tensor] | None = None,
    pseudo_labels: Tensor | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> SelfTrainResult:
    """Train a student on a probe teacher's labels of ``unlabelled`` plus the labelled ``images``.

    Args:
        encoder: the pretrained encoder (images -> features); left unchanged, the student is a copy.
        images, labels: the few labelled images (uint8 or float) and their labels.
        unlabelled: the pool's images; their labels are never needed.
        Cs: the teacher probe's candidate ``C`` (5-fold CV inside the labelled images).
        epochs: passes over the pool per round (AdamW, cosine decay to 0, ``lr`` for the head,
            ``backbone_lr`` for the encoder); ``rounds``: how often the pool is relabelled.
        transform: batched augmentation of the student's inputs (e.g. the elastic distortion).
        pseudo_labels: another teacher's labels of ``unlabelled`` (e.g. label propagation,
            ``course_lib.labelprop``) for the first round, instead of the probe's; the head
            still starts as the probe, and later rounds relabel with the student.
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as labelled images (and at least one); got {len(images)} and "
                         f"{len(labels)}")
    if epochs < 1 or rounds < 1:
        raise ValueError(f"epochs and rounds must be >= 1, got epochs={epochs}, rounds={rounds}")
    if len(unlabelled) == 0 or unlabelled.shape[1:] != images.shape[1:]:
        raise ValueError(f"unlabelled must hold images shaped like the labelled ones {tuple(images.shape[1:])}, "
                         f"got {tuple(unlabelled.shape)}")
    if pseudo_labels is not None and tuple(pseudo_labels.shape) != (len(unlabelled),):
        raise ValueError(f"pseudo_labels must hold one label per unlabelled image ({len(unlabelled)}), "
                         f"got shape {tuple(pseudo_labels.shape)}")
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    student = copy.deepcopy(encoder).to(dev).eval()
    teacher = cv_probe(extract_features(student, images, device=dev), labels.cpu(), Cs=Cs, seed=seed)
    head = copy.deepcopy(teacher.classifier).to(dev)

    def label_pool() -> Tensor:
        student.eval()
        with torch.no_grad():
            return head(extract_features(student, unlabelled, device=dev).to(dev)).argmax(1).cpu()

    x = torch.cat([unlabelled, images.to(unlabelled.dtype)])
    for r in range(rounds):
        # the teacher's labels, then (rounds > 1) the last student's; training continues
        pseudo = pseudo_labels.long().cpu() if r == 0 and pseudo_labels is not None else label_pool()
        torch.manual_seed(seed + r)
        finetune(student, head, x, torch.cat([pseudo, labels.cpu()]), epochs=epochs, lr=lr, backbone_lr=backbone_lr,
                 weight_decay=weight_decay, batch_size=batch_size, schedule="cosine", train_transform=transform,
                 device=dev, seed=seed + r)
    return SelfTrainResult(nn.Sequential(student, head).eval(), teacher.C, pseudo)


__all__ = ["SelfTrainResult", "self_train"]
