"""nbval over the course notebooks: each runs as stored, in the smoke profile, and the
cells marked ``# NBVAL_CHECK_OUTPUT`` reproduce the outputs saved in the ``.ipynb``.

nbval cannot inject papermill parameters, so the environment forces them
(``COURSE_PROFILE=smoke``, ``COURSE_INTERACTIVE=0``; see course_lib.profiles). Each
notebook runs in its own ``pytest --nbval-lax`` subprocess, the same command an
instructor types (README, "Tests"). Reference outputs are made by ``course refs``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from conftest import REPO, real_data_dir
from course_lib.grading import build as B
from course_lib.reference_outputs import CHECK, checked_cells

MASTERS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))
NOTEBOOKS = [py.with_suffix(".ipynb") for py in MASTERS]
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"


def nbval_command(*notebooks: Path) -> list[str]:
    """The nbval invocation (run with the environment of nbval_env)."""
    return [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with",
            str(SANITIZE), "--nbval-cell-timeout", "600", "-p", "no:cacheprovider", "-q", *map(str, notebooks)]


def nbval_env(data: Path, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"COURSE_PROFILE": "smoke", "COURSE_INTERACTIVE": "0", "COURSE_DATA": str(data.resolve()),
                "COURSE_RESULTS_DIR": str(tmp / "results"), "COURSE_RUNS": str(tmp / "runs"),
                "COURSE_PROGRESS": "0", "MPLBACKEND": "Agg"})
    return env


@pytest.mark.parametrize("py", MASTERS, ids=lambda p: p.stem)
def test_setup_cell_lets_the_environment_force_the_parameters(py: Path):
    """nbval cannot inject PROFILE/INTERACTIVE: the cell after the parameters must read the environment."""
    code = [c for c in jupytext.read(py).cells if c.cell_type == "code"]
    assert len(code) > 1 and "from_env(PROFILE, INTERACTIVE)" in code[1].source, (
        f"{py.name}: start the setup cell (the one after the parameters cell) with "
        "`PROFILE, INTERACTIVE = from_env(PROFILE, INTERACTIVE)` (from course_lib.profiles), "
        "so that nbval runs it in the smoke profile without widgets")


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_checked_cells_hold_reference_outputs(ipynb: Path):
    """Checked cells have committed references, no other cell carries outputs, and a notebook
    with exercises (a released one) checks at least one output."""
    if not ipynb.exists():
        pytest.skip(f"{ipynb.name} not made yet (test_notebooks.py checks the pairs)")
    nb = nbformat.read(ipynb, as_version=4)
    cells = checked_cells(nb)
    if B.load_master(ipynb.with_suffix(".py")).graded:
        assert cells, f"{ipynb.name}: mark the cells whose output is profile-independent with # {CHECK}"
    empty = [i for i in cells if not nb.cells[i].outputs]
    assert not empty, f"{ipynb.name}: cells {empty} have no reference output; run `course refs {ipynb.stem[:2]}` and commit"
    stray = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs and i not in cells]
    assert not stray, f"{ipynb.name}: cells {stray} carry outputs nbval ignores; run `course refs {ipynb.stem[:2]}`"


@pytest.mark.slow
@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_nbval(ipynb: Path, tmp_path):
    data = real_data_dir()
    if not ipynb.exists():
        pytest.skip(f"{ipynb.name} not made yet (test_notebooks.py checks the pairs)")
    if data is None:
        pytest.skip("COURSE_DATA does not point at the datasets (e.g. ../shared/data)")
    proc = subprocess.run(nbval_command(ipynb), cwd=REPO, env=nbval_env(data, tmp_path),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"nbval failed on {ipynb.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize("raw, masked", [
    ("profile=smoke device=cuda:0 settings={}", "profile=smoke device=DEVICE settings={}"),
    ("on mps, not cpu", "on DEVICE, not DEVICE"),
    ("<SmallCNN object at 0x7f3a2c1b9d90>", "<SmallCNN object at ADDRESS>"),
    ("trained 3 epochs in 12 s; 0.25 ms per batch", "trained 3 epochs in TIME; TIME per batch"),
    (" 45%|████▌     | 45/100 [00:01<00:02, 30.00it/s]", " PROGRESS"),
    ("Total params: 28,282", "Total params: 28,282"),
    ("(1, 16, 28, 28)", "(1, 16, 28, 28)"),
])
def test_sanitizer_masks_what_varies_between_runs_only(raw, masked):
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns(SANITIZE.read_text()):  # what nbval applies, in its order
        raw = re.sub(regex, replace, raw)
    assert raw == masked


@pytest.mark.slow
def test_course_refs_stores_what_nbval_then_checks(tmp_path):
    """References made like `course refs` pass nbval; a changed checked output fails it;
    device names and addresses are masked; NBVAL_SKIP cells never run; logs are not stored."""
    from nbformat.v4 import new_code_cell, new_notebook

    from course_lib.reference_outputs import execute_like_nbval, with_references

    nb = new_notebook(cells=[
        new_code_cell('# NBVAL_CHECK_OUTPUT\nimport os\nprint("profile", os.environ["COURSE_PROFILE"], "on cpu at", hex(id(object())))'),
        new_code_cell('# NBVAL_SKIP\nraise RuntimeError("a widget cell must not run")'),
        new_code_cell('# NBVAL_IGNORE_OUTPUT\nprint("training log")'),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    stored = with_references(nb, execute_like_nbval(nb, tmp_path))
    assert stored.cells[0].outputs[0].text.startswith("profile smoke on cpu at 0x")
    assert stored.cells[2].outputs == [] and stored.cells[1].outputs == []
    path = tmp_path / "demo.ipynb"
    nbformat.write(stored, path)
    env = nbval_env(tmp_path, tmp_path)
    ok = subprocess.run(nbval_command(path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout[-3000:]
    stored.cells[0].outputs[0].text = stored.cells[0].outputs[0].text.replace("on cpu", "on cuda:0").replace("0x", "0xff")
    nbformat.write(stored, path)  # other device, other address: masked, still passes
    ok = subprocess.run(nbval_command(path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout[-3000:]
    stored.cells[0].outputs[0].text = stored.cells[0].outputs[0].text.replace("smoke", "quick")
    nbformat.write(stored, path)
    bad = subprocess.run(nbval_command(path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Cell 0: Cell outputs differ" in bad.stdout, bad.stdout[-3000:]
