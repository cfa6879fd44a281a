"""Run profiles: how big a run is.

- ``smoke``: seconds, tiny data; for tests, CI and grading.
- ``quick``: real data, a few minutes per notebook on a 2-core laptop CPU.
- ``full``:  the paper-like setting, meant for a GPU.

A notebook's first code cell (tagged ``parameters`` for papermill) sets ``PROFILE``
and may override any knob; ``resolve`` merges the two and rejects unknown names.

Tools that execute a notebook *as stored* (nbval, a plain ``jupyter nbconvert
--execute``) cannot inject parameters, so two environment variables force them:
``COURSE_PROFILE=smoke`` makes ``resolve`` (and ``from_env``) use that profile
whatever the notebook says, and ``COURSE_INTERACTIVE=0`` makes ``from_env`` return
``INTERACTIVE=False``. Each notebook's setup cell starts with
``PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)`` so its labels and widget
guards agree with the forced values. Unset (the default), nothing changes.
"""

from __future__ import annotations

import os
from typing import Any

PROFILES = ("smoke", "quick", "full")
#: Environment variables that override a notebook's ``PROFILE`` / ``INTERACTIVE`` parameters.
PROFILE_ENV = "COURSE_PROFILE"
INTERACTIVE_ENV = "COURSE_INTERACTIVE"


def check_profile(name: str) -> str:
    """Return ``name`` if it is a known profile, else raise a ValueError naming the choices."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return name


def forced_profile() -> str | None:
    """The profile ``$COURSE_PROFILE`` forces, or None when it is unset or empty."""
    name = os.environ.get(PROFILE_ENV, "").strip()
    if not name:
        return None
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r} is not a profile; set it to one of {', '.join(PROFILES)} or unset it")
    return name


def from_env(profile: str, interactive: bool) -> tuple[str, bool]:
    """``(PROFILE, INTERACTIVE)`` after the environment's overrides.

    ``$COURSE_PROFILE`` replaces the profile; ``$COURSE_INTERACTIVE`` set to ``0``,
    ``false`` or ``no`` turns interactivity off (``1``/``true``/``yes`` turn it on).
    Used as ``PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)`` in a notebook's
    setup cell, so that nbval, which runs the notebook as stored, gets the smoke
    profile and no widgets.
    """
    profile = forced_profile() or check_profile(profile)
    flag = os.environ.get(INTERACTIVE_ENV, "").strip().lower()
    if flag in ("0", "false", "no"):
        interactive = False
    elif flag in ("1", "true", "yes"):
        interactive = True
    elif flag:
        raise ValueError(f"{INTERACTIVE_ENV}={flag!r}: set it to 0 or 1, or unset it")
    return profile, bool(interactive)


def resolve(profile: str, table: dict[str, dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """Pick ``table[profile]`` and apply ``overrides`` whose value is not None.

    ``table`` maps each profile to its settings, e.g.
    ``{"smoke": {"epochs": 1, "n_train": 512}, "quick": {...}, "full": {...}}``.
    An override whose key the profile does not define is an error, so a typo in a
    papermill ``-p`` parameter fails loudly instead of being ignored.
    ``$COURSE_PROFILE``, when set, replaces ``profile`` (see ``forced_profile``).
    """
    profile = forced_profile() or check_profile(profile)
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ValueError(f"profile table lacks {missing}")
    settings = dict(table[profile])
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in settings:
            raise ValueError(f"unknown setting {key!r}; known: {sorted(settings)}")
        settings[key] = value
    return settings
