"""The validation-experiment scripts in docs/experiments/ stay runnable: they import, list their
settings, and refuse an unknown one by name (their numbers are quoted in the notebooks)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

SCRIPTS = sorted(p for p in (REPO / "docs" / "experiments").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_experiment_script_lists_and_checks_its_settings(script):
    ok = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "--threads" in ok.stdout and "{" in ok.stdout  # the settings are listed as choices
    bad = subprocess.run([sys.executable, str(script), "no-such-setting"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'no-such-setting'" in bad.stderr, bad.stderr
