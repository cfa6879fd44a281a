"""The training loop: ``fit`` plus the few things it needs.

``fit`` trains any classifier with any optimizer, loss and scheduler, keeps a
per-epoch ``History``, and cooperates with callbacks (early stopping, progress bar).
It can be interrupted (Ctrl-C / the notebook's stop button) without losing the
history or the best weights, and resumed from its checkpoint to the same weights
an uninterrupted run would have reached.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------- device & seeds


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: ``prefer`` if given, else CUDA, then MPS, then CPU."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices).

    With ``deterministic=True`` torch also refuses non-deterministic kernels, so the
    same seed gives the same numbers on the same machine even on a GPU (slower).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch records: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``,
    ``val_acc``, ``lr`` and ``seconds``; ``interrupted`` is set by Ctrl-C."""

    records: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[float]:
        return [r.get(key, math.nan) for r in self.records]

    def best(self, key: str = "val_acc", mode: str = "max") -> dict[str, float]:
        """The record with the best value of ``key``."""
        pick = max if mode == "max" else min
        return pick(self.records, key=lambda r: r.get(key, -math.inf if mode == "max" else math.inf))

    @property
    def seconds(self) -> float:
        """Total training time in seconds."""
        return float(sum(self["seconds"]))

    @property
    def wall_time_s(self) -> float:
        """``seconds`` under the name ``SSLHistory`` uses, so checkpoint code can take either history."""
        return self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "interrupted": self.interrupted}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(list(d["records"]), bool(d.get("interrupted", False)))


# --------------------------------------------------------------------------- callbacks


class Callback:
    """Hooks called by ``fit``. Set ``state.stop = True`` to end training early."""

    def on_epoch_end(self, state: "FitState") -> None: ...

    def on_fit_end(self, state: "FitState") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, d: dict[str, Any]) -> None: ...


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; restore the best weights.

    The best weights are restored at the end of training *and* when it is
    interrupted, so a stopped notebook keeps the best model, not the last.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, mode: str | None = None, min_delta: float = 0.0):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = mode or ("min" if "loss" in monitor else "max")
        self.best_score, self.best_epoch, self.wait, self.best_state = None, -1, 0, None

    def _improved(self, value: float) -> bool:
        if self.best_score is None:
            return True
        if self.mode == "min":
            return value < self.best_score - self.min_delta
        return value > self.best_score + self.min_delta

    def on_epoch_end(self, state: "FitState") -> None:
        value = state.history.records[-1].get(self.monitor)
        if value is None or math.isnan(value):
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which fit did not record; pass val_loader")
        if self._improved(value):
            self.best_score, self.best_epoch, self.wait = value, state.epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        else:
            self.wait += 1
            state.stop = self.wait > self.patience

    def on_fit_end(self, state: "FitState") -> None:
        if self.best_state is not None:
            state.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("best_score", "best_epoch", "wait", "best_state")}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            setattr(self, k, v)


class ProgressBar(Callback):
    """A ``tqdm.auto`` bar over epochs showing the latest metrics (silent under tests)."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="epochs", leave=True, disable=not progress_enabled())

    def on_epoch_end(self, state: "FitState") -> None:
        r = state.history.records[-1]
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in r.items() if k not in ("epoch", "seconds") and not math.isnan(v)})
        self.bar.update(1)

    def on_fit_end(self, state: "FitState") -> None:
        self.bar.close()


def progress_enabled() -> bool:
    """Progress bars are off under pytest and when ``COURSE_PROGRESS=0``."""
    return os.environ.get("COURSE_PROGRESS", "1") != "0" and "PYTEST_CURRENT_TEST" not in os.environ


# --------------------------------------------------------------------------- schedulers


def make_scheduler(
    name: str | None, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int, **kw: Any
) -> tuple[Any, str]:
    """Build a scheduler by name and say when it steps (``"step"`` or ``"epoch"``).

    ``"onecycle"`` (per batch; ``max_lr`` defaults to the optimizer's lr),
    ``"cosine"`` (per batch, to zero), ``"step"`` (per epoch; ``step_size``, ``gamma``),
    ``"plateau"`` (ReduceLROnPlateau on validation loss; ``factor`` 0.1, ``patience``).
    """
    sched = torch.optim.lr_scheduler
    total = epochs * steps_per_epoch
    if name is None:
        return None, "epoch"
    if name == "onecycle":
        max_lr = kw.pop("max_lr", optimizer.param_groups[0]["lr"])
        return sched.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, **kw), "step"
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total, **kw), "step"
    if name == "step":
        kw.setdefault("step_size", max(1, epochs // 3))
        kw.setdefault("gamma", 0.1)
        return sched.StepLR(optimizer, **kw), "epoch"
    if name == "plateau":
        kw.setdefault("factor", 0.1)
        kw.setdefault("patience", 2)
        return sched.ReduceLROnPlateau(optimizer, **kw), "epoch"
    raise ValueError(f"unknown scheduler {name!r}; choose onecycle, cosine, step, plateau or None")


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Run ``model`` in eval mode over ``loader``; return CPU ``(logits, labels)``."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs, ys = [], []
    for x, y in loader:
        outs.append(model(x.to(device)).float().cpu())
        ys.append(y.cpu())
    model.train(was_training)
    return torch.cat(outs), torch.cat(ys)


def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], loss_fn: Callable | None = None) -> dict[str, float]:
    """Mean loss (cross-entropy by default) and top-1 accuracy of ``model`` on ``loader``."""
    logits, y = predict(model, loader)
    loss = (loss_fn or F.cross_entropy)(logits, y).item()
    return {"loss": loss, "acc": (logits.argmax(1) == y).float().mean().item()}


# --------------------------------------------------------------------------- fit


def wants_channels_last(model: nn.Module, device: torch.device | str) -> bool:
    """Should ``model`` train in the channels-last (NHWC) layout on ``device``?

    Yes for a network with 2-D convolutions on CPU (oneDNN's fast path) or CUDA
    (tensor cores); no on MPS and for conv-free models, where it buys nothing.
    """
    return torch.device(device).type in ("cpu", "cuda") and any(isinstance(m, nn.Conv2d) for m in model.modules())


@dataclass
class FitState:
    """What callbacks can see: the model, the history, the epoch, and a stop flag."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: History
    epoch: int = 0
    stop: bool = False


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    label_smoothing: float = 0.0,
    scheduler: str | Any = None,
    scheduler_kwargs: dict[str, Any] | None = None,
    callbacks: list[Callback] | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    channels_last: bool | None = None,
    progress: bool = True,
    extra_loss: Callable[[nn.Module], Tensor] | None = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return its ``History``.

    Args:
        train_loader / val_loader: iterables of ``(x, y)`` batches, e.g. ``TensorLoader``.
        optimizer: defaults to AdamW(lr, weight_decay).
        loss_fn: defaults to cross-entropy with ``label_smoothing``.
        scheduler: a name for ``make_scheduler`` or a scheduler object
            (OneCycleLR steps per batch, ReduceLROnPlateau on val loss, others per epoch).
        callbacks: e.g. ``[EarlyStopping("val_acc", patience=3)]``.
        checkpoint: a file written after every epoch; if it exists, training resumes
            from it (model, optimizer, scheduler, history, callbacks, RNG state).
        extra_loss: a penalty added to the loss, e.g. ``lambda m: 1e-5 * l1_penalty(m)``.
        channels_last: NHWC memory layout for conv nets; ``None`` (default) turns it on
            when ``wants_channels_last`` says so (a conv net on CPU or CUDA: 1.2-1.7x
            faster training on a 2-core CPU, see ``course bench``).

    Ctrl-C ends training cleanly: the history so far is returned with
    ``interrupted=True`` and callbacks such as EarlyStopping restore the best weights.
    Mixed precision is used on CUDA only; the CPU trains in fp32.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    device = torch.device(device) if device is not None else get_device()
    if channels_last is None:
        channels_last = wants_channels_last(model, device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = loss_fn or nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    interval = "epoch"
    if isinstance(scheduler, str):
        scheduler, interval = make_scheduler(scheduler, optimizer, epochs, len(train_loader), **(scheduler_kwargs or {}))
    elif isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        interval = "step"
    callbacks = list(callbacks or [])
    if progress:
        callbacks.append(ProgressBar(epochs))
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state = FitState(model, optimizer, History())
    start_epoch = _resume(checkpoint, state, scheduler, callbacks) if checkpoint else 0

    try:
        for epoch in range(start_epoch, epochs):
            state.epoch, t0 = epoch, time.perf_counter()
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for x, y in train_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", enabled=use_amp):
                    out = model(x)
                    loss = loss_fn(out, y)
                    if extra_loss is not None:
                        loss = loss + extra_loss(model)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if interval == "step" and scheduler is not None:
                    scheduler.step()
                loss_sum += loss.item() * len(y)
                correct += (out.argmax(1) == y).sum().item() if out.ndim == 2 and y.ndim == 1 else 0
                seen += len(y)
            record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                      "lr": optimizer.param_groups[0]["lr"]}
            if val_loader is not None:
                val = evaluate(model, val_loader)
                record.update(val_loss=val["loss"], val_acc=val["acc"])
            if scheduler is not None and interval == "epoch":
                is_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                scheduler.step(record.get("val_loss", record["train_loss"])) if is_plateau else scheduler.step()
            record["seconds"] = time.perf_counter() - t0
            state.history.records.append(record)
            for cb in callbacks:
                cb.on_epoch_end(state)
            if checkpoint:
                _save_resume_point(checkpoint, state, scheduler, callbacks)
            if state.stop:
                break
    except KeyboardInterrupt:
        state.history.interrupted = True
        warnings.warn(f"training interrupted after {len(state.history)} epoch(s); history and best weights kept")
    finally:
        for cb in callbacks:
            cb.on_fit_end(state)
    return state.history


def _save_resume_point(path: str | os.PathLike, state: FitState, scheduler: Any, callbacks: list[Callback]) -> None:
    """Write everything needed to continue exactly where this epoch ended (atomically)."""
    payload = {
        "epoch": state.epoch + 1,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": state.history.to_dict(),
        "callbacks": [cb.state_dict() for cb in callbacks],
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _resume(path: str | os.PathLike, state: FitState, scheduler: Any, callbacks: list[Callback]) -> int:
    """Load a resume point if ``path`` exists; return the epoch to start from."""
    if not Path(path).exists():
        return 0
    payload = torch.load(path, map_location="cpu", weights_only=False)
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    state.history = History.from_dict(payload["history"])
    state.history.interrupted = False
    for cb, cb_state in zip(callbacks, payload["callbacks"]):
        cb.load_state_dict(cb_state)
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    return int(payload["epoch"])
