"""Checkpoints that say where they came from, and ``load_or_train``.

A checkpoint is ``{"state_dict": ..., "metadata": {...}}``.  The metadata records the
command that produced it, the git commit, the dataset and its checksum, the profile,
epochs, wall time, the machine and the evaluation metrics, so a number printed from a
loaded checkpoint can always be traced back to a command in the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .paths import REPO_ROOT, checkpoints_dir, runs_dir


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (corrupt, or for another model)."""


def git_commit() -> str | None:
    """The repository's current commit (with ``-dirty`` if it has local changes), or None."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """What the run ran on: OS, CPU count, Python, torch, device."""
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def tensor_checksum(*tensors: torch.Tensor) -> str:
    """A short SHA-256 of tensors' bytes, e.g. of a dataset's images and labels."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(path: str | os.PathLike, model: nn.Module, metadata: dict[str, Any]) -> Path:
    """Save ``model``'s weights with ``metadata`` (filled in with commit, machine, date).

    A ``git_commit`` in ``metadata`` (e.g. the commit a long run was launched from) wins
    over HEAD at save time.
    """
    meta = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "git_commit": metadata["git_commit"] if "git_commit" in metadata else git_commit(),
        "machine": machine_info(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **metadata,
    }
    meta = json.loads(json.dumps(meta, default=str))  # plain types only: loadable with weights_only=True
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "metadata": meta}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint; if ``model`` is given, load the weights into it (strictly).

    Returns ``(state_dict, metadata)``.  A corrupt file or a checkpoint for another
    architecture raises ``CheckpointError`` naming the file and the fix.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state, meta = payload["state_dict"], payload["metadata"]
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling problem means the same thing here
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(f"{path} is not a readable course checkpoint ({type(exc).__name__}: {first}); "
                              "delete it and retrain (TRAIN=True) or restore it from git") from exc
    if model is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not fit this model: {exc}. Was it made with other settings? "
                                  f"Its metadata: {meta.get('model_config')}") from exc
    return state, meta


def load_or_train(
    name: str,
    model: nn.Module,
    train_fn: Callable[[nn.Module], dict[str, Any]],
    *,
    profile: str,
    retrain: bool = False,
    metadata: dict[str, Any] | None = None,
    reference_dir: str | os.PathLike | None = None,
    save_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load the reference checkpoint ``name`` if allowed, else train ``model`` and save it.

    ``train_fn(model)`` trains in place and returns a dict with at least ``metrics``
    (and usually ``epochs`` and ``dataset``/``dataset_checksum``).  The shipped
    reference (``checkpoints/<name>.pt``) is used unless ``retrain`` is set or the
    profile is ``full``; the ``smoke`` profile never trains long, so notebooks pass a
    tiny ``train_fn`` there.  A model trained here is saved to ``save_dir``
    (default ``runs/checkpoints``) and loaded from there next time.
    """
    reference = Path(reference_dir or checkpoints_dir()) / f"{name}.pt"
    saved = Path(save_dir or runs_dir() / "checkpoints") / f"{name}-{profile}.pt"
    if not retrain and profile != "full":
        for candidate in (reference, saved):
            if candidate.exists():
                _, meta = load_checkpoint(candidate, model)
                if verbose:
                    print(f"loaded {candidate.name}: trained by `{meta.get('command')}` at {meta.get('git_commit')}, "
                          f"{meta.get('epochs')} epochs, {meta.get('wall_time_s', 0):.0f} s; metrics {meta.get('metrics')}")
                return model, meta
    if verbose:
        print(f"training {name} ({profile} profile)...")
    t0 = time.perf_counter()
    info = dict(train_fn(model) or {})
    meta = {"name": name, "profile": profile, "wall_time_s": time.perf_counter() - t0,
            "threads": torch.get_num_threads(), **(metadata or {}), **info}
    save_checkpoint(saved, model, meta)
    _, meta = load_checkpoint(saved)
    return model, meta
