"""The self-supervised training loop: views, cosine schedule, kNN monitor, resume.

``fit`` in ``course_lib.train`` trains classifiers on ``(x, y)`` batches.  An SSL
method instead takes *views* of unlabelled images and returns its own loss, so it
gets its own small loop, ``train_ssl``:

- the images stay one in-memory uint8 tensor; each batch is scaled to [0, 1] on the
  device and turned into views by batched augmentation (``TwoViews``), each image
  with its own random parameters;
- the learning rate follows a linear warm-up and a cosine decay, stepped per batch;
- a ``KNNMonitor`` (the InstDisc/MoCo kNN classifier on frozen features, labels from
  the *training* split, accuracy on the *validation* split) tracks whether the
  features get better without training any classifier;
- after every epoch a resume point is written, so an interrupted run (Ctrl-C, a
  killed background job) continues where it stopped with the same schedule.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..evaluation import extract_features, knn_classify

Transform = Callable[..., Tensor]


class TwoViews:
    """``views(x, generator) -> (t1(x), t2(x))``: two independent augmentations of a batch.

    With one transform both views use it (MoCo, SimCLR); pass two for an asymmetric
    recipe (BYOL's second view).  The transforms are batched ``course_lib.augment``
    transforms, so each image of each view gets its own random parameters.
    """

    def __init__(self, t1: Transform, t2: Transform | None = None) -> None:
        for t in (t1, t2):
            if t is not None and (isinstance(t, type) or not callable(t)):
                raise ValueError(f"TwoViews needs transform objects (e.g. RandomResizedCrop(28)), got {t!r}")
        self.t1, self.t2 = t1, t2 if t2 is not None else t1

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        return self.t1(x, generator=generator), self.t2(x, generator=generator)

    def __repr__(self) -> str:
        return f"TwoViews({self.t1!r}, {self.t2!r})" if self.t2 is not self.t1 else f"TwoViews({self.t1!r})"


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up from ~0 to 1, then cosine decay to 0."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class KNNMonitor:
    """kNN accuracy of a backbone's frozen features: the SSL "is it learning?" curve.

    ``memory_images`` / ``memory_labels`` come from the training split (labels are
    used only here, never by the SSL loss); accuracy is measured on the validation
    split, never on the test set.  ``__call__(backbone) -> accuracy in [0, 1]``.
    """

    def __init__(self, memory_images: Tensor, memory_labels: Tensor, val_images: Tensor, val_labels: Tensor,
                 k: int = 20, T: float = 0.07, batch_size: int = 512) -> None:
        if len(memory_images) != len(memory_labels) or len(val_images) != len(val_labels):
            raise ValueError("KNNMonitor: images and labels must have the same length")
        self.memory_images, self.memory_labels = memory_images, memory_labels
        self.val_images, self.val_labels = val_images, val_labels
        self.k, self.T, self.batch_size = k, T, batch_size

    def __call__(self, backbone: nn.Module) -> float:
        mem = extract_features(backbone, self.memory_images, self.batch_size)
        val = extract_features(backbone, self.val_images, self.batch_size)
        pred = knn_classify(mem, self.memory_labels, val, k=self.k, T=self.T)
        return float((pred == self.val_labels.to(pred.device)).float().mean())


@dataclass
class SSLHistory:
    """Per-epoch records (``epoch``, ``loss``, ``lr``, ``seconds``, ``knn_acc``...) and per-step losses."""

    records: list[dict[str, float]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    interrupted: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def column(self, key: str) -> list[float]:
        """The values of ``key`` over the epochs that recorded it."""
        return [r[key] for r in self.records if key in r]

    def to_dict(self, max_steps: int = 2000) -> dict[str, Any]:
        """Plain-JSON summary; the step losses are averaged down to at most ``max_steps`` points."""
        losses = self.step_losses
        stride = max(1, math.ceil(len(losses) / max_steps))
        coarse = [sum(losses[i:i + stride]) / len(losses[i:i + stride]) for i in range(0, len(losses), stride)]
        return {"records": self.records, "step_losses": coarse, "step_stride": stride,
                "wall_time_s": self.wall_time_s, "interrupted": self.interrupted}


def _timestamp() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _loss_of(out: Any) -> Tensor:
    loss = getattr(out, "loss", out)
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise TypeError("the SSL model must return a scalar loss tensor or an object with a .loss scalar "
                        f"(MoCoOutput, BYOLOutput, ...); got {type(out).__name__}")
    return loss


def train_ssl(
    model: nn.Module,
    images: Tensor,
    views: Callable[[Tensor, torch.Generator], Sequence[Tensor]],
    *,
    epochs: int,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    warmup_epochs: float = 0.0,
    backbone: nn.Module | None = None,
    monitor: Callable[[nn.Module], float] | None = None,
    monitor_every: int = 1,
    checkpoint: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    max_steps_per_epoch: int | None = None,
    log: Callable[[str], None] | None = print,
    channels_last: bool = False,
) -> SSLHistory:
    """Train a self-supervised ``model`` on unlabelled ``images`` and return its history.

    Args:
        model: ``model(*views)`` returns a scalar loss or an object with ``.loss``
            (``MoCo``, ``BYOL``; ``MAE`` takes one view).  It must already sit on
            ``device``.  EMA targets and queues update inside its ``forward``.
        images: ``(N, C, H, W)`` uint8 (scaled to [0, 1]) or float images.
        views: ``views(x, generator)`` -> the model's inputs, e.g. ``TwoViews(t)``.
        epochs, batch_size: the schedule; the last incomplete batch is dropped (split
            BatchNorm and the MoCo queue want a fixed batch size).
        optimizer: built on the model's trainable parameters; its ``lr`` is the peak
            learning rate of the warm-up + cosine schedule.
        warmup_epochs: length of the linear warm-up, in epochs (may be fractional).
        backbone: what ``monitor`` evaluates (e.g. ``moco.encoder_q``).
        monitor: ``monitor(backbone) -> accuracy`` (e.g. ``KNNMonitor``), run every
            ``monitor_every`` epochs and after the last one; recorded as ``knn_acc``.
        checkpoint: resume file written after every epoch; if it exists, training
            continues from it (model, optimizer, history, RNG state).
        device: where the batches go (default: the model's device).
        seed: seeds the batch order and the augmentation of every epoch.
        max_steps_per_epoch: cap on batches per epoch (smoke runs).
        log: progress lines with timestamps (``None`` = silent).
        channels_last: NHWC layout for the model and its views.  Off by default: with
            MoCo's split BatchNorm (a reshape per layer) it measured 20 % slower on CPU.

    Ctrl-C stops after the current batch and returns the history with
    ``interrupted=True``; the last full epoch stays in the resume file.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if batch_size < 2 or batch_size > len(images):
        raise ValueError(f"batch_size must be between 2 and the number of images ({len(images)}), got {batch_size}; "
                         "contrastive losses need several images per batch")
    if monitor is not None and backbone is None:
        raise ValueError("pass backbone= (the module the monitor evaluates, e.g. moco.encoder_q) with monitor=")
    def say(msg: str) -> None:
        if log is not None:
            log(msg)
            sys.stdout.flush()  # progress must show up in a redirected background log

    if device is None:
        device = next(iter(model.parameters())).device
    device = torch.device(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    steps_per_epoch = len(images) // batch_size
    if max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, max_steps_per_epoch)
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    history = SSLHistory()
    start_epoch, elapsed_before = 0, 0.0

    if checkpoint is not None and Path(checkpoint).exists():
        payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if payload.get("epochs") != epochs or payload.get("steps_per_epoch") != steps_per_epoch:
            raise ValueError(
                f"resume file {checkpoint} is for {payload.get('epochs')} epochs x {payload.get('steps_per_epoch')} "
                f"steps, not {epochs} x {steps_per_epoch}; delete it to start over or use the same settings"
            )
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        base_lrs = payload["base_lrs"]
        history = SSLHistory(payload["records"], payload["step_losses"])
        start_epoch, elapsed_before = payload["epoch"], payload["wall_time_s"]
        torch.set_rng_state(payload["torch_rng"])
        say(f"[{_timestamp()}] resumed from {checkpoint} after epoch {start_epoch}/{epochs}")

    t_start = time.perf_counter()
    step = start_epoch * steps_per_epoch
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(len(images), generator=gen)
            model.train()
            loss_sum = 0.0
            for i in range(steps_per_epoch):
                factor = warmup_cosine(step, total_steps, warmup_steps)
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * factor
                x = images[order[i * batch_size:(i + 1) * batch_size]].to(device, non_blocking=True)
                x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
                inputs = views(x, gen)
                if channels_last:
                    inputs = [v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for v in inputs]
                loss = _loss_of(model(*inputs))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"SSL loss became {float(loss)} at epoch {epoch + 1}, step {i}; lower the lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.step_losses.append(float(loss.detach()))
                loss_sum += history.step_losses[-1]
                step += 1
            record = {"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch,
                      "lr": base_lrs[0] * factor, "seconds": time.perf_counter() - t0}
            if monitor is not None and ((epoch + 1) % monitor_every == 0 or epoch + 1 == epochs):
                record["knn_acc"] = float(monitor(backbone))  # type: ignore[arg-type]
            history.records.append(record)
            history.wall_time_s = elapsed_before + time.perf_counter() - t_start
            knn = f" knn {record['knn_acc']:.4f}" if "knn_acc" in record else ""
            say(f"[{_timestamp()}] epoch {epoch + 1}/{epochs} loss {record['loss']:.4f}{knn} "
                f"({record['seconds']:.0f} s, total {history.wall_time_s / 60:.1f} min)")
            if checkpoint is not None:
                _save_resume(checkpoint, model, optimizer, history, epoch + 1, epochs, steps_per_epoch, base_lrs)
    except KeyboardInterrupt:
        history.interrupted = True
        say(f"[{_timestamp()}] interrupted after {len(history)} complete epoch(s)")
    history.wall_time_s = elapsed_before + time.perf_counter() - t_start
    return history


def _save_resume(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, history: SSLHistory,
                 epoch: int, epochs: int, steps_per_epoch: int, base_lrs: list[float]) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
               "epochs": epochs, "steps_per_epoch": steps_per_epoch, "base_lrs": base_lrs,
               "records": history.records, "step_losses": history.step_losses,
               "wall_time_s": history.wall_time_s, "torch_rng": torch.get_rng_state()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
