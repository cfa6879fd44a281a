"""What every ``course pretrain <method>-<dataset>`` recipe shares: data, monitor, resume file, provenance.

A reference checkpoint is only trustworthy if it says how it was made.  Every SSL
recipe (MoCo, BYOL, MAE) therefore follows the same steps, kept here once:

1. load the training split and hold out a stratified 10 % validation split
   (``stratified_split(val_fraction=0.1, seed=0)``); pretraining never sees its labels,
   and the recipe's own evaluation is on that validation split, never on test;
2. build a kNN monitor on 5 000 training / 2 000 validation images, so the training
   log shows whether the features improve;
3. name a resume file after the configuration, so an interrupted run continues where
   it stopped (``fresh=True`` starts over);
4. save the checkpoint with full provenance: data checksum, split, epochs, wall time,
   threads, device, seed, the method's config, validation metrics and the history.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .. import checkpoints
from ..checkpoints import load_checkpoint, save_checkpoint, tensor_checksum
from ..paths import checkpoints_dir, runs_dir
from ..train import History
from .encoders import ConvEncoder
from .trainer import KNNMonitor, SSLHistory

SPLIT_NOTE = "training split minus stratified_split(val_fraction=0.1, seed=0); labels unused"


@dataclass
class PretrainSetup:
    """Everything a recipe needs before its training loop starts (see ``prepare_pretraining``)."""

    name: str
    dataset: str
    epochs: int
    seed: int
    device: torch.device
    train_full: Any  # ImageDataset: the whole training split (for the checksum)
    train: Any       # ImageDataset: training split minus validation
    val: Any         # ImageDataset: the held-out validation split
    images: Tensor   # the unlabelled images pretraining uses (``train.images``, or its first ``limit``)
    monitor: KNNMonitor
    resume: Path
    launch_commit: str | None = None  # HEAD when the run started: the code that trained it

    def raise_if_interrupted(self, history: SSLHistory | History) -> None:
        """After Ctrl-C the training loop returns early; stop the recipe here and say how to resume."""
        if history.interrupted:
            raise KeyboardInterrupt(f"{self.name} interrupted; run the same command again to resume from "
                                    f"{self.resume}")

    def save(self, out: str | Path | None, model: nn.Module, history: SSLHistory | History, metrics: dict[str, Any], /,
             **extra: Any) -> Path:
        """Save ``model`` to ``out`` (default ``checkpoints/<name>.pt``) with the shared provenance + ``extra``.

        Keys in ``extra`` are added to the metadata and win over the shared ones
        (e.g. a method's own ``history=`` dict).
        """
        path = Path(out) if out else checkpoints_dir() / f"{self.name}.pt"
        commit_now = checkpoints.git_commit()
        provenance: dict[str, Any] = {"git_commit": self.launch_commit}
        if commit_now != self.launch_commit:  # commits landed while it trained; the launch one made it
            provenance["git_commit_at_save"] = commit_now
        save_checkpoint(path, model.cpu(), {
            **provenance,
            "name": self.name,
            "dataset": self.dataset,
            "dataset_checksum": tensor_checksum(self.train_full.images, self.train_full.labels),
            "pretrain_images": len(self.images),
            "split": SPLIT_NOTE,
            "profile": "reference",
            "epochs": self.epochs,
            "wall_time_s": history.wall_time_s,
            "threads": torch.get_num_threads(),
            "device": str(self.device),
            "seed": self.seed,
            "metrics": metrics,
            "history": history.to_dict(),
            **extra,
        })
        return path


def prepare_pretraining(
    name: str,
    dataset: str,
    config: Any,
    *,
    epochs: int,
    seed: int = 0,
    root: str | None = None,
    device: str | None = None,
    limit: int | None = None,
    fresh: bool = False,
    labelled: bool = False,
    log: Callable[[str], None] = print,
) -> PretrainSetup:
    """Load ``dataset``, split off validation, build the kNN monitor and the resume path; log the plan.

    ``config`` is the method's (frozen, repr-able) config: together with ``epochs``,
    ``seed`` and ``limit`` it names the resume file, so a changed setting never resumes
    from a stale run.  ``limit`` keeps only the first ``limit`` training images (tests).
    ``labelled=True`` only changes the log line (a supervised recipe such as full fine-tuning).
    """
    from ..data import load_dataset, stratified_split
    from ..train import get_device, seed_everything

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    dev = get_device(device)
    seed_everything(seed)
    train_full = load_dataset(dataset, "train", root=root)
    train_idx, val_idx = stratified_split(train_full.labels, val_fraction=0.1, seed=0)
    train, val = train_full.subset(train_idx), train_full.subset(val_idx)
    images = train.images if limit is None else train.images[:limit]
    mem = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:5000]
    monitor = KNNMonitor(train.images[mem], train.labels[mem], val.images[:2000], val.labels[:2000])
    key = hashlib.sha256(repr((config, epochs, seed, limit)).encode()).hexdigest()[:10]
    resume = runs_dir() / "pretrain" / f"{name}-{key}.resume.pt"
    if fresh and resume.exists():
        resume.unlink()
    log(f"{name}: {len(images)} {'labelled' if labelled else 'unlabelled'} {dataset} images (training split minus a "
        "10 % validation split), "
        f"{epochs} epochs, device {dev}, {torch.get_num_threads()} thread(s); resume file {resume}")
    torch.manual_seed(seed)
    return PretrainSetup(name, dataset, epochs, seed, dev, train_full, train, val, images, monitor, resume,
                         launch_commit=checkpoints.git_commit())


def file_sha256(path: Path) -> str:
    """A short SHA-256 of a file's bytes (which base checkpoint a derived one started from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass
class BaseCheckpoint:
    """The encoder checkpoint a derived recipe starts from (``load_base_checkpoint``)."""

    path: Path
    sha256: str
    meta: dict[str, Any]
    encoder: ConvEncoder

    def provenance(self) -> dict[str, Any]:
        """What the derived checkpoint records about its base: file, hash, commit and metrics."""
        return {"path": self.path.name, "sha256": self.sha256, "git_commit": self.meta.get("git_commit"),
                "metrics": self.meta.get("metrics")}


def load_base_checkpoint(path: str | Path | None, *, needed_by: str, base_name: str) -> BaseCheckpoint:
    """Load the ``ConvEncoder`` checkpoint ``path`` (default ``checkpoints/<base_name>.pt``); if it is
    missing, say which command makes it."""
    path = Path(path) if path else checkpoints_dir() / f"{base_name}.pt"
    if not path.exists():
        raise FileNotFoundError(f"{needed_by} starts from the checkpoint {path}, which is missing; run "
                                f"`course pretrain {base_name}` first")
    state, meta = load_checkpoint(path)  # read once; the architecture comes from the same file's metadata
    encoder = ConvEncoder(**meta["model_config"])
    encoder.load_state_dict(state)
    return BaseCheckpoint(path, file_sha256(path), meta, encoder)
