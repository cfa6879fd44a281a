"""Where the course keeps its files.

The data directory is, in order: an explicit ``root`` argument, the ``COURSE_DATA``
environment variable, or a per-user cache directory (``~/.cache/dl-course/data``,
or ``$XDG_CACHE_HOME/dl-course/data``).  Nothing here touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding ``course_lib/``).
REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_home() -> Path:
    """The per-user cache folder of the course (created on demand by callers)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "dl-course"


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Return the data directory: ``root``, else ``$COURSE_DATA``, else the user cache."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("COURSE_DATA")
    if env:
        return Path(env).expanduser()
    return cache_home() / "data"


def tensor_cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Where converted tensor files go.

    Next to the data when that folder is writable, else in the user cache. "Writable"
    means by its mode bits too: a read-only shared copy (``dr-xr-xr-x``) is left
    alone even by root, for whom ``os.access`` always says yes.
    """
    base = data_dir(root)
    try:
        writable = bool(base.stat().st_mode & 0o200) and os.access(base, os.W_OK)
    except OSError:
        writable = False
    if writable:
        return base / "_tensors"
    return cache_home() / "tensors"


def checkpoints_dir() -> Path:
    """Reference checkpoints shipped with the repository."""
    return REPO_ROOT / "checkpoints"


def runs_dir() -> Path:
    """Executed notebooks, results JSON and RESULTS.md (``$COURSE_RUNS`` overrides)."""
    env = os.environ.get("COURSE_RUNS")
    return Path(env) if env else REPO_ROOT / "runs"
