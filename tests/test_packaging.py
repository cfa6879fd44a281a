"""The install files agree with each other, and the CLI answers."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    deps = {_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    conda, in_deps = set(), False
    for line in (REPO / "environment.yml").read_text().splitlines():
        if not line.startswith(" "):
            in_deps = line.startswith("dependencies:")
            continue
        m = in_deps and re.match(r"^  - ([A-Za-z0-9_.-]+)", line)  # top-level conda deps (pip: entries are deeper)
        if m and m.group(1) not in ("python", "pip"):
            conda.add(CONDA_NAMES.get(m.group(1).lower(), m.group(1).lower()))
    assert conda == deps, f"only in environment.yml: {conda - deps}; only in pyproject.toml: {deps - conda}"


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "course_lib.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("data", "run", "bench", "build", "grade"):
        assert cmd in out


def test_cli_unknown_command_is_an_error():
    res = subprocess.run([sys.executable, "-m", "course_lib.cli", "trian"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown command 'trian'" in res.stderr


def test_importing_the_package_does_not_import_torchvision_or_network_modules():
    code = "import sys, course_lib, course_lib.paths, course_lib.profiles; print(sorted(m for m in ('torchvision','urllib.request','requests') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
