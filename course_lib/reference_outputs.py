"""``course refs``: store the reference outputs that nbval checks in ``notebooks/*.ipynb``.

nbval (``pytest --nbval-lax``) executes a notebook *as stored* and compares the new
output of each cell marked ``# NBVAL_CHECK_OUTPUT`` with the output saved in the
``.ipynb``. Those cells are chosen so their output is the same in every profile and on
every CPU (class names, a layer table, parameter counts), so the references can be
made in the fast ``smoke`` profile.

For each notebook this command

1. syncs the jupytext pair (``jupytext --sync``, the ``.py`` is the master);
2. executes a copy of the ``.ipynb`` like nbval does: the notebook's own folder as the
   working directory, ``COURSE_PROFILE=smoke`` and ``COURSE_INTERACTIVE=0`` in the
   environment, results written to a temporary folder, ``# NBVAL_SKIP`` cells not run;
3. writes the outputs of the ``NBVAL_CHECK_OUTPUT`` cells into the ``.ipynb`` and
   clears every other output (no images or training logs in the repository).

jupytext keeps a paired ``.ipynb``'s outputs when it syncs, as long as the cell's
source is unchanged; after editing a checked cell, run ``course refs NN`` again.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

import nbformat

from .paths import REPO_ROOT
from .profiles import INTERACTIVE_ENV, PROFILE_ENV

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
CHECK = "NBVAL_CHECK_OUTPUT"
SKIP = "NBVAL_SKIP"


def _has_marker(cell: nbformat.NotebookNode, marker: str) -> bool:
    """True if a line of the code cell's source is the comment ``# marker`` (what nbval looks for)."""
    return cell.cell_type == "code" and any(line.strip() == f"# {marker}" for line in cell.source.splitlines())


def checked_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of the cells whose outputs nbval compares."""
    return [i for i, c in enumerate(nb.cells) if _has_marker(c, CHECK)]


def execute_like_nbval(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600,
                       profile: str = "smoke") -> nbformat.NotebookNode:
    """Execute a copy of ``nb`` as nbval would in the test suite; return the executed copy.

    Raises nbclient's CellExecutionError (naming the cell) if a cell fails.
    """
    from nbclient import NotebookClient

    run = copy.deepcopy(nb)
    for cell in run.cells:
        if _has_marker(cell, SKIP):
            cell.source = ""  # keeps the indices aligned with the original
    saved = {k: os.environ.get(k) for k in (PROFILE_ENV, INTERACTIVE_ENV, "COURSE_RESULTS_DIR", "MPLBACKEND", "COURSE_DATA")}
    with tempfile.TemporaryDirectory(prefix="course-refs-") as results:
        os.environ.update({PROFILE_ENV: profile, INTERACTIVE_ENV: "0", "COURSE_RESULTS_DIR": results,
                           "MPLBACKEND": "Agg"})
        if saved["COURSE_DATA"]:  # the kernel runs in the notebook's folder: make a relative path absolute
            os.environ["COURSE_DATA"] = str(Path(saved["COURSE_DATA"]).expanduser().resolve())
        try:
            NotebookClient(run, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(cwd)}}).execute()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return run


def with_references(nb: nbformat.NotebookNode, executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with the executed outputs of its checked cells and no other outputs."""
    if len(nb.cells) != len(executed.cells):
        raise ValueError(f"the executed notebook has {len(executed.cells)} cells, the stored one {len(nb.cells)}; "
                         "execute the stored notebook itself")
    out = copy.deepcopy(nb)
    keep = set(checked_cells(out))
    count = 0
    for i, cell in enumerate(out.cells):
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = None
        cell.outputs = []
        if i in keep:
            # nbval refuses a reference without an execution count ("unrun cell"); number the
            # code cells 1, 2, ... as a top-to-bottom run would, so the file is reproducible.
            cell.execution_count = count
            for o in executed.cells[i].outputs:
                o = copy.deepcopy(o)
                if "execution_count" in o:
                    o.execution_count = count
                cell.outputs.append(o)
    return out


def refresh(py: Path, timeout: int = 600, log=print) -> Path:
    """Sync the pair of master ``py``, execute it in smoke and store the checked cells' outputs."""
    import jupytext
    from jupytext.cli import jupytext as jupytext_cli

    ipynb = py.with_suffix(".ipynb")
    jupytext_cli(["--sync", "--quiet", str(py)])
    nb = jupytext.read(ipynb)
    if not checked_cells(nb):
        log(f"{ipynb.name}: no cell marked # {CHECK}; outputs cleared")
    executed = execute_like_nbval(nb, ipynb.parent, timeout)
    jupytext.write(with_references(nb, executed), ipynb)
    log(f"wrote reference outputs of {len(checked_cells(nb))} cell(s) into {ipynb.relative_to(REPO_ROOT) if ipynb.is_relative_to(REPO_ROOT) else ipynb}")
    return ipynb


def masters(names: list[str] | None, directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The master ``NN_name.py`` files, or those whose stem starts with one of ``names``."""
    found = sorted(directory.glob("[0-9][0-9]_*.py"))
    if not names:
        return found
    picked = [p for p in found if any(p.stem.startswith(n) for n in names)]
    unknown = [n for n in names if not any(p.stem.startswith(n) for p in found)]
    if unknown:
        raise SystemExit(f"no notebook matches {unknown}; available: {[p.stem for p in found]}")
    return picked


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="course refs", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="notebooks (prefix like 00 or a name); default all")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help="folder of the masters (default notebooks/)")
    ap.add_argument("--timeout", type=int, default=600, help="per-cell time limit in seconds")
    args = ap.parse_args(argv)
    failed = 0
    for py in masters(args.names, args.notebooks):
        try:
            refresh(py, args.timeout)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next notebook
            failed += 1
            print(f"{py.name}: {type(exc).__name__}: {str(exc).strip()[-2000:]}", file=sys.stderr)
    return 1 if failed else 0
