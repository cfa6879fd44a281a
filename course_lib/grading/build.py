"""``course build``: exercises and solutions generated from the notebook masters.

The master of each notebook is ``notebooks/NN_name.py`` (jupytext percent format).
Graded cells carry their id and points in the cell header::

    # %% grade_id="q1_solution" solution=true
    def softmax(x):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

    # %% tags=["graded"] grade_id="q1_tests" points=2
    assert ...
    ### BEGIN HIDDEN TESTS
    assert ...
    ### END HIDDEN TESTS

From each master holding graded cells the build writes

- ``exercises/NN_name.ipynb``: solution regions replaced by ``# YOUR CODE HERE`` /
  ``raise NotImplementedError()`` (indented like the marker), hidden tests removed;
- ``solutions/NN_name.ipynb``: complete code, hidden tests removed.

Both have no outputs, no jupytext pairing metadata, the ``python3`` kernel and
``metadata.course.assignment`` naming the assignment (the grader checks it). Cell
ids are derived from the master (a graded cell's id is its grade_id), and the JSON
is written with sorted keys, so every build produces the same bytes and
``course build --check`` can tell whether the committed copies are current.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_lib.grading import markers
from course_lib.paths import REPO_ROOT

#: Cell metadata that only jupytext uses (mirrors jupytext.cell_metadata._JUPYTEXT_CELL_METADATA).
JUPYTEXT_CELL_KEYS = frozenset({"skipline", "noskipline", "cell_marker", "lines_to_next_cell", "lines_to_end_of_cell_marker"})
#: The kernel every generated notebook names (ipykernel installs it into the venv).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
#: Shown in an exercise test cell whose tests are all hidden.
HIDDEN_ONLY = "# This cell holds hidden tests; they run when your notebook is graded."

_GRADE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class MasterError(ValueError):
    """A master notebook is malformed; the message names the notebook, the cell and the fix."""


@dataclass(frozen=True)
class GradedCell:
    """One graded cell of a master: a solution cell or a test cell."""

    grade_id: str
    role: str  # "solution" or "tests"
    points: float  # 0 for solution cells
    index: int  # position among the master's cells


@dataclass
class Master:
    """A master notebook read and checked: its cells (ids assigned) and graded cells."""

    name: str
    path: Path
    notebook: nbformat.NotebookNode
    graded: list[GradedCell] = field(default_factory=list)

    @property
    def tests(self) -> list[GradedCell]:
        """Test cells in notebook order (one grade column each)."""
        return [g for g in self.graded if g.role == "tests"]

    @property
    def solutions(self) -> list[GradedCell]:
        """Solution cells in notebook order."""
        return [g for g in self.graded if g.role == "solution"]

    @property
    def max_points(self) -> float:
        """The sum of the test cells' points."""
        return sum(g.points for g in self.tests)

    def role(self, cell: nbformat.NotebookNode) -> str:
        """``solution``, ``tests`` or ``plain`` for a cell of this master."""
        gid = cell.metadata.get("grade_id")
        for g in self.graded:
            if g.grade_id == gid:
                return g.role
        return "plain"


def _where(path: Path, index: int, cell: nbformat.NotebookNode) -> str:
    gid = cell.metadata.get("grade_id")
    return f"{path.name}, cell {index + 1}" + (f" (grade_id={gid!r})" if gid else "")


def _classify(path: Path, index: int, cell: nbformat.NotebookNode) -> GradedCell | None:
    """Check one master cell's grading metadata and markers; return its GradedCell if graded."""
    md = cell.metadata
    where = _where(path, index, cell)
    gid = md.get("grade_id")
    solution = md.get("solution", False)
    points = md.get("points")
    tags = md.get("tags", [])
    if solution not in (True, False):
        raise MasterError(f"{where}: solution={solution!r}; write solution=true (unquoted) in the cell header")
    if points is not None and (isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0):
        raise MasterError(f"{where}: points={points!r}; write a non-negative number, e.g. points=2")
    if "graded" in tags and points is None:
        raise MasterError(f"{where}: tagged 'graded' but has no points; add points=N to the cell header")
    if solution and points is not None:
        raise MasterError(
            f"{where}: a cell is either a solution (solution=true) or tests (points=N), not both; "
            "put the points on the test cell that checks this solution"
        )
    if (solution or points is not None) and gid is None:
        raise MasterError(f'{where}: graded cell without grade_id; add grade_id="q1_..." to the cell header')
    if gid is not None and not (isinstance(gid, str) and _GRADE_ID.match(gid)):
        raise MasterError(f"{where}: grade_id={gid!r}; use 1-64 letters, digits, '_' or '-'")
    if gid is not None and not solution and points is None:
        raise MasterError(f"{where}: grade_id without solution=true or points=N; add one of them or drop grade_id")
    kinds = {k for k, _, _ in markers.find_regions(cell.source, where)}
    if "solution" in kinds and not solution:
        raise MasterError(f"{where}: solution region in a cell without solution=true; mark the cell as a solution cell")
    if "hidden" in kinds and points is None:
        raise MasterError(f"{where}: hidden-test region in a cell without points; hidden tests belong in a test cell")
    if points is not None and cell.cell_type != "code":
        raise MasterError(f"{where}: a test cell must be a code cell, not {cell.cell_type}")
    if solution and cell.cell_type not in ("code", "markdown"):
        raise MasterError(f"{where}: a solution cell must be code or markdown, not {cell.cell_type}")
    if gid is None:
        return None
    return GradedCell(gid, "solution" if solution else "tests", float(points or 0), index)


def _cell_ids(cells: list[nbformat.NotebookNode]) -> list[str]:
    """Deterministic cell ids: the grade_id of graded cells, a hash of the master source otherwise."""
    ids: list[str] = []
    seen: set[str] = set()
    for cell in cells:
        base = cell.metadata.get("grade_id") or "c-" + hashlib.sha1(cell.source.encode()).hexdigest()[:10]
        cid, n = base, 1
        while cid in seen:
            n += 1
            cid = f"{base}-{n}"
        seen.add(cid)
        ids.append(cid)
    return ids


def load_master(path: str | Path) -> Master:
    """Read a jupytext master, check its grading metadata and markers, assign cell ids.

    Raises MasterError (or markers.MarkerError) naming the notebook, cell and fix.
    """
    import jupytext

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no master notebook at {path}")
    nb = jupytext.read(path)
    graded: list[GradedCell] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k not in JUPYTEXT_CELL_KEYS})
        g = _classify(path, i, cell)
        if g is None:
            continue
        if g.grade_id in seen:
            raise MasterError(
                f"{path.name}: grade_id {g.grade_id!r} used by cells {seen[g.grade_id] + 1} and {i + 1}; "
                "every graded cell needs its own grade_id"
            )
        seen[g.grade_id] = i
        graded.append(g)
    for cell, cid in zip(nb.cells, _cell_ids(nb.cells)):
        cell["id"] = cid
    return Master(name=path.stem, path=path, notebook=nb, graded=graded)


def _new_notebook(master: Master, cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    meta = {k: v for k, v in master.notebook.metadata.items() if k not in ("jupytext", "kernelspec", "language_info")}
    meta.update(kernelspec=dict(KERNELSPEC), language_info={"name": "python"}, course={"assignment": master.name})
    nb = nbformat.v4.new_notebook(metadata=meta, cells=cells)
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def _copy_cell(cell: nbformat.NotebookNode, source: str, extra_md: dict | None = None) -> nbformat.NotebookNode:
    md = dict(cell.metadata)
    md.update(extra_md or {})
    if cell.cell_type == "code":
        new = nbformat.v4.new_code_cell(source=source, metadata=md)
    elif cell.cell_type == "markdown":
        new = nbformat.v4.new_markdown_cell(source=source, metadata=md)
    else:
        new = nbformat.v4.new_raw_cell(source=source, metadata=md)
    new["id"] = cell["id"]
    return new


def build_exercise(master: Master) -> nbformat.NotebookNode:
    """The students' notebook: solutions stubbed, hidden tests removed, test cells locked."""
    cells = []
    for i, cell in enumerate(master.notebook.cells):
        where = _where(master.path, i, cell)
        role = master.role(cell)
        if role == "solution" and not markers.has_regions(cell.source, "solution", where):
            stub = markers.TEXT_STUB if cell.cell_type == "markdown" else markers.CODE_STUB
            source = "\n".join(stub)  # a solution cell without markers is all solution
        else:
            source = markers.student_source(cell.source, where, markdown=cell.cell_type == "markdown")
        extra = None
        if role == "tests":
            source = source or HIDDEN_ONLY
            extra = {"deletable": False, "editable": False}
        cells.append(_copy_cell(cell, source, extra))
    return _new_notebook(master, cells)


def build_solution(master: Master) -> nbformat.NotebookNode:
    """The complete notebook: solution code without markers, hidden tests removed."""
    cells = []
    for i, cell in enumerate(master.notebook.cells):
        source = markers.solution_source(cell.source, _where(master.path, i, cell))
        if master.role(cell) == "tests":
            source = source or HIDDEN_ONLY
        cells.append(_copy_cell(cell, source))
    return _new_notebook(master, cells)


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    """Validated, stable serialisation: sorted keys, one-space indent, final newline."""
    nbformat.validate(nb)
    text = nbformat.writes(nb, version=4)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def find_masters(notebooks: Path, names: list[str] | None = None) -> list[Path]:
    """The master ``.py`` files in ``notebooks``, or those matching ``names``.

    A name matches a master by its stem (``03_contrastive``), its number (``03``) or its path.
    """
    notebooks = Path(notebooks)
    if not notebooks.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {notebooks}; pass --notebooks DIR")
    masters = sorted(p for p in notebooks.glob("*.py") if not p.name.startswith((".", "_")))
    if not names:
        return masters
    picked: list[Path] = []
    for name in names:
        as_path = Path(name)
        if as_path.suffix == ".py" and as_path.is_file():
            found = [as_path]
        else:
            stem = as_path.stem if as_path.suffix in (".py", ".ipynb") else name
            found = [p for p in masters if p.stem == stem] or [p for p in masters if p.stem.split("_")[0] == stem]
        if len(found) != 1:
            known = ", ".join(p.stem for p in masters) or "none"
            what = "no master" if not found else f"{len(found)} masters"
            raise FileNotFoundError(f"{what} named {name!r} in {notebooks}; known: {known}")
        picked.extend(p for p in found if p not in picked)
    return picked


@dataclass
class BuildReport:
    """What a build did: files written, unchanged, differing (check mode), skipped masters."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    differing: list[tuple[Path, str]] = field(default_factory=list)  # (file, "differs"/"missing"/"stale")
    skipped: list[Path] = field(default_factory=list)


def build(
    names: list[str] | None = None,
    notebooks: str | Path | None = None,
    exercises: str | Path | None = None,
    solutions: str | Path | None = None,
    check: bool = False,
) -> BuildReport:
    """Generate (or, with ``check``, compare) the exercises and solutions of the masters.

    Without ``names`` every master is built, and in check mode a generated notebook
    whose master no longer has graded cells (or no longer exists) is reported stale.
    """
    notebooks = Path(notebooks) if notebooks else REPO_ROOT / "notebooks"
    out_dirs = (Path(exercises) if exercises else REPO_ROOT / "exercises", Path(solutions) if solutions else REPO_ROOT / "solutions")
    report = BuildReport()
    expected: set[Path] = set()
    for path in find_masters(notebooks, names):
        master = load_master(path)
        if not master.graded:
            report.skipped.append(path)
            continue
        for out_dir, make in zip(out_dirs, (build_exercise, build_solution)):
            target = out_dir / f"{master.name}.ipynb"
            expected.add(target)
            data = notebook_bytes(make(master))
            current = target.read_bytes() if target.is_file() else None
            if current == data:
                report.unchanged.append(target)
            elif check:
                report.differing.append((target, "missing" if current is None else "differs"))
            else:
                out_dir.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                report.written.append(target)
    if check and not names:
        for out_dir in out_dirs:
            for extra in sorted(out_dir.glob("*.ipynb")) if out_dir.is_dir() else []:
                if extra not in expected:
                    report.differing.append((extra, "stale"))
    return report


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cli(argv: list[str]) -> int:
    """``course build [NAMES...] [--notebooks DIR] [--exercises DIR] [--solutions DIR] [--check]``."""
    parser = argparse.ArgumentParser(
        prog="course build",
        description="Generate exercises/NN_name.ipynb and solutions/NN_name.ipynb from the "
        "notebooks/NN_name.py masters that hold graded cells.",
    )
    parser.add_argument("names", nargs="*", metavar="NAMES", help="masters to build (stem or number); default: all")
    parser.add_argument("--notebooks", type=Path, default=None, help="folder of .py masters (default: notebooks/)")
    parser.add_argument("--exercises", type=Path, default=None, help="output folder for students (default: exercises/)")
    parser.add_argument("--solutions", type=Path, default=None, help="output folder for solutions (default: solutions/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 and list files that are not up to date")
    args = parser.parse_args(argv)
    try:
        report = build(args.names, args.notebooks, args.exercises, args.solutions, check=args.check)
    except (FileNotFoundError, MasterError, markers.MarkerError) as exc:
        print(f"course build: {exc}", file=sys.stderr)
        return 2
    for path in report.skipped:
        print(f"skipped {_show(path)}: no graded cells")
    for path in report.written:
        print(f"wrote {_show(path)}")
    for path in report.unchanged:
        print(f"up to date {_show(path)}")
    for path, why in report.differing:
        print(f"{why}: {_show(path)}")
    if report.differing:
        print(
            f"course build --check: {len(report.differing)} file(s) not up to date; run `course build` and commit them",
            file=sys.stderr,
        )
        return 1
    return 0


cli_build = cli
