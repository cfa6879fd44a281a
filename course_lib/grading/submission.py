"""Submissions: finding them, reading them defensively, merging them with the master.

A submission is a file ``alice.ipynb`` or a folder ``alice/`` holding one notebook;
the student id is the file stem or folder name. Reading never trusts the file: an
empty file, broken JSON, JSON that is not a notebook or a notebook of another
assignment each raise ``SubmissionError`` with a status for the grade sheet.

``merge`` builds the notebook the grader runs. It keeps the student's own cells
(solutions and anything they added) and takes every test cell from the master,
hidden tests included, matched by ``grade_id``:

- a test cell the student edited is replaced by the master's;
- a test cell they duplicated runs once, where its last copy is (the copy pasted
  further down is the one that sees all the code above it);
- a test cell they deleted is put back after the nearest cell that precedes it in
  the master and still exists in the submission (matched by grade_id or cell id);
- a solution cell they deleted stays missing: its tests then fail.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_lib.grading import markers
from course_lib.grading.build import HIDDEN_ONLY, KERNELSPEC, Master

#: Larger files are refused unread (a notebook with outputs cleared is kilobytes).
MAX_BYTES = 100 * 2**20
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class SubmissionError(Exception):
    """A submission that cannot be graded; ``status`` goes into the grade sheet."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Submission:
    """One student's submission: where it is and the notebook file to grade (if any)."""

    student: str
    path: Path  # the file or folder as submitted
    notebook: Path | None  # the .ipynb inside (None when there is none to grade)
    problem: SubmissionError | None = None  # set when the submission cannot be graded

    def digest(self) -> str:
        """sha256 of the submitted bytes (the notebook, or the file itself)."""
        target = self.notebook or self.path
        h = hashlib.sha256()
        if target.is_file():
            with open(target, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()


def _visible(p: Path) -> bool:
    return not p.name.startswith((".", "_", "~"))


def discover(folder: str | Path, assignment: str) -> list[Submission]:
    """One Submission per student in ``folder``, sorted by student id.

    A folder must hold exactly one ``.ipynb`` (checkpoints ignored); if it holds
    several, the one named after the assignment is taken. A student with both a file
    and a folder gets an ``error:duplicate-submission`` row.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder at {folder}")
    found: dict[str, list[Submission]] = {}
    for entry in sorted(filter(_visible, folder.iterdir())):
        if entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and _visible(p))
            named = [p for p in notebooks if p.stem == assignment]
            if len(notebooks) == 1 or len(named) == 1:
                sub = Submission(entry.name, entry, (named or notebooks)[0])
            elif not notebooks:
                sub = Submission(entry.name, entry, None, SubmissionError("error:no-notebook", f"folder {entry.name}/ holds no .ipynb file"))
            else:
                names = ", ".join(p.relative_to(entry).as_posix() for p in notebooks)
                sub = Submission(
                    entry.name, entry, None,
                    SubmissionError("error:multiple-notebooks", f"folder {entry.name}/ holds several notebooks ({names}) and none is named {assignment}.ipynb"),
                )
        elif entry.is_file():
            sub = Submission(entry.stem, entry, entry)
        else:
            continue
        found.setdefault(sub.student, []).append(sub)
    subs = []
    for student, entries in sorted(found.items()):
        if len(entries) > 1:
            names = ", ".join(e.path.name for e in entries)
            subs.append(Submission(student, entries[0].path, None, SubmissionError("error:duplicate-submission", f"student {student} submitted several entries ({names}); keep one")))
        else:
            subs.append(entries[0])
    return subs


def read_notebook(path: Path, master: Master) -> nbformat.NotebookNode:
    """Read a submitted notebook defensively; raise SubmissionError with a status if it cannot be graded."""
    if path.suffix != ".ipynb":
        raise SubmissionError("error:not-a-notebook", f"{path.name} is not a .ipynb notebook; submit {master.name}.ipynb")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SubmissionError("error:too-large", f"{path.name} is {size / 2**20:.0f} MiB; clear the outputs and resubmit")
    raw = path.read_bytes()
    if not raw.strip():
        raise SubmissionError("error:empty", f"{path.name} is empty")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SubmissionError("error:not-a-notebook", f"{path.name} is not text (binary file?)") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SubmissionError("error:invalid-json", f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or "nbformat" not in data:
        raise SubmissionError("error:not-a-notebook", f"{path.name} is JSON but not a Jupyter notebook (no 'cells' list / 'nbformat')")
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:
        raise SubmissionError("error:not-a-notebook", f"{path.name} is not a readable notebook: {exc}") from None
    cells = []
    for cell in nb.cells:  # keep what can run; normalise what a hand-edited file may lack
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        cell.setdefault("metadata", nbformat.NotebookNode())
        source = cell.get("source", "")
        cell["source"] = "".join(source) if isinstance(source, list) else str(source)
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
        cells.append(cell)
    nb.cells = cells
    named = (nb.metadata.get("course") or {}).get("assignment") if isinstance(nb.metadata.get("course"), dict) else None
    if named and named != master.name:
        raise SubmissionError("error:wrong-assignment", f"this notebook is assignment {named!r}, not {master.name!r}")
    ids = {g.grade_id for g in master.graded}
    if not any(c.metadata.get("grade_id") in ids for c in cells):
        raise SubmissionError(
            "error:wrong-assignment",
            f"none of the graded cells of {master.name} ({', '.join(sorted(ids))}) is in this notebook; "
            f"was the right notebook submitted?",
        )
    return nb


@dataclass
class Merged:
    """The notebook to run plus what the merge noticed (for the feedback)."""

    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)


def _grading_cell(master: Master, cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The master's test cell as the grader runs it: hidden tests in, markers out, locked."""
    source = markers.grading_source(cell.source, f"{master.path.name} ({cell.metadata['grade_id']})")
    new = nbformat.v4.new_code_cell(source=source, metadata=dict(cell.metadata))
    new["id"] = cell["id"]
    return new


def merge(master: Master, student: nbformat.NotebookNode) -> Merged:
    """The student's notebook with every test cell taken from the master (see module doc)."""
    tests = {g.grade_id: master.notebook.cells[g.index] for g in master.tests}
    test_ids = {master.notebook.cells[g.index]["id"]: g.grade_id for g in master.tests}
    notes: list[str] = []
    cells: list[nbformat.NotebookNode] = []

    def test_id(cell: nbformat.NotebookNode) -> str | None:
        gid = cell.metadata.get("grade_id")
        if not gid and cell.get("id") in test_ids:
            gid = test_ids[cell["id"]]  # grade_id stripped, cell id intact
        return gid if gid in tests else None

    last = {test_id(c): i for i, c in enumerate(student.cells) if test_id(c)}
    for i, cell in enumerate(student.cells):
        gid = test_id(cell)
        if gid is None:
            cells.append(cell)
            continue
        shown = markers.student_source(tests[gid].source) or HIDDEN_ONLY
        if cell.get("source", "").strip() != shown.strip():
            notes.append(f"test cell {gid} was edited; the original tests ran")
        if i == last[gid]:
            cells.append(_grading_cell(master, tests[gid]))
        else:
            notes.append(f"test cell {gid} appeared more than once; it ran once, at its last copy")
    notes = list(dict.fromkeys(notes))  # each note once
    placed = set(last)
    present_solutions = {c.metadata.get("grade_id") for c in student.cells}
    for g in master.solutions:
        if g.grade_id not in present_solutions:
            notes.append(f"solution cell {g.grade_id} is missing from the notebook; its tests cannot pass")
    for g in master.tests:  # put deleted test cells back
        if g.grade_id in placed:
            continue
        pos = len(cells)
        for before in reversed(master.notebook.cells[: g.index]):
            key_gid, key_id = before.metadata.get("grade_id"), before["id"]
            hits = [i for i, c in enumerate(cells) if (key_gid and c.metadata.get("grade_id") == key_gid) or (not key_gid and c.get("id") == key_id)]
            if hits:
                pos = hits[-1] + 1
                break
        cells.insert(pos, _grading_cell(master, tests[g.grade_id]))
        placed.add(g.grade_id)
        notes.append(f"test cell {g.grade_id} was missing; the original was put back")
    seen: set[str] = set()
    taken = {c.get("id") for c in cells}
    for i, cell in enumerate(cells):  # ids must exist, be unique and well formed in nbformat 4.5
        cid = cell.get("id")
        if not (isinstance(cid, str) and _CELL_ID.match(cid)) or cid in seen:
            n = 0
            while (cid := f"cell-{i}" + (f"-{n}" if n else "")) in taken | seen:
                n += 1
        seen.add(cid)
        cell["id"] = cid
    nb = nbformat.v4.new_notebook(metadata=student.metadata, cells=cells)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.pop("papermill", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    return Merged(nb, notes)
