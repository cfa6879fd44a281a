"""Exercises/solutions generation and papermill grading (course_lib.grading).

The fast tests check markers, the build and the merge without a kernel. The slow
ones grade a batch of fixture submissions (generated here from the toy master) with
real kernels, two at a time, and assert every grade and status.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import shutil
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from course_lib.grading import build as B
from course_lib.grading import markers as M
from course_lib.grading.grade import grade_all
from course_lib.grading.sandbox import Limits
from course_lib.grading.submission import SubmissionError, discover, merge, read_notebook

FIXTURES = Path(__file__).parent / "fixtures" / "grading"
TOY = FIXTURES / "toy_assignment.py"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def master() -> B.Master:
    return B.load_master(TOY)


def write_master(tmp_path: Path, body: str, name: str = "01_demo") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- markers


def test_stub_keeps_the_indentation_of_the_marker():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION"
    assert M.student_source(src) == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert M.solution_source(src) == "def f(x):\n    y = 1\n    return x + y"


def test_hidden_tests_vanish_for_students_and_stay_for_the_grader():
    src = "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n### END HIDDEN TESTS"
    assert M.student_source(src) == "assert f(1) == 2"
    assert M.solution_source(src) == "assert f(1) == 2"
    assert M.grading_source(src) == "assert f(1) == 2\nassert f(2) == 3"


@pytest.mark.parametrize(
    "src, fix",
    [
        ("## BEGIN SOLUTION\nx = 1\n### END SOLUTION", "not spelt exactly"),
        ("### BEGIN SOLUTION\nx = 1", "add '### END SOLUTION'"),
        ("x = 1\n### END SOLUTION", "without a matching"),
        ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION", "do not nest"),
    ],
)
def test_bad_markers_fail_loudly_with_the_fix(src, fix):
    with pytest.raises(M.MarkerError, match=fix):
        M.student_source(src, "demo.py, cell 3")


def test_prose_mentioning_a_solution_is_not_a_marker():
    src = "# we begin solution-finding here\nx = 1"
    assert M.student_source(src) == src


# ----------------------------------------------------------------------------- masters and build


def test_jupytext_header_round_trips_grading_metadata(master):
    by_id = {c.metadata.get("grade_id"): c.metadata for c in master.notebook.cells if c.metadata.get("grade_id")}
    assert by_id["q1_solution"] == {"grade_id": "q1_solution", "solution": True}
    assert by_id["q1_tests"] == {"tags": ["graded"], "grade_id": "q1_tests", "points": 2}
    assert [g.grade_id for g in master.tests] == ["q1_tests", "q2_tests", "q3_tests"]
    assert master.max_points == 5


@pytest.mark.parametrize(
    "header, body, fix",
    [
        ("# %%", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", "mark the cell as a solution cell"),
        ('# %% grade_id="t" points=1', "assert True\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "mark the cell as a solution cell"),
        ('# %% tags=["graded"]', "assert True", "add points=N"),
        ("# %% points=2", "assert True", 'add grade_id="q1_..."'),
        ('# %% grade_id="q" solution=true points=1', "x = 1", "not both"),
        ('# %% grade_id="bad id!" points=1', "assert True", "letters, digits"),
        ("# %%", "### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS", "hidden tests belong in a test cell"),
    ],
)
def test_malformed_masters_are_rejected_with_the_fix(tmp_path, header, body, fix):
    path = write_master(tmp_path, f"{header}\n{body}\n")
    with pytest.raises(ValueError, match=fix):
        B.load_master(path)


def test_duplicate_grade_ids_are_rejected(tmp_path):
    path = write_master(tmp_path, '# %% grade_id="t" points=1\nassert True\n\n# %% grade_id="t" points=1\nassert 1\n')
    with pytest.raises(B.MasterError, match="every graded cell needs its own grade_id"):
        B.load_master(path)


def test_exercise_hides_solutions_and_hidden_tests(master):
    nb = B.build_exercise(master)
    text = B.notebook_bytes(nb).decode()
    assert "logits.max(axis=-1" not in text and "out[flip]" not in text  # solution code gone
    assert "overflowed" not in text and "HIDDEN" not in text and "BEGIN SOLUTION" not in text
    q1 = next(c for c in nb.cells if c.metadata.get("grade_id") == "q1_solution")
    assert q1.source == "def softmax(logits):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    tests = [c for c in nb.cells if c.metadata.get("points")]
    assert all(c.metadata["editable"] is False and c.metadata["deletable"] is False for c in tests)
    assert "assert p.shape == (2, 3)" in tests[0].source  # visible tests stay visible
    assert nb.metadata["kernelspec"]["name"] == "python3" and "jupytext" not in nb.metadata
    assert nb.metadata["course"] == {"assignment": "toy_assignment"}
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in nb.cells)
    assert not any(k in c.metadata for c in nb.cells for k in B.JUPYTEXT_CELL_KEYS)


def test_solution_keeps_code_drops_markers_and_hidden_tests(master):
    text = B.notebook_bytes(B.build_solution(master)).decode()
    assert "logits.max(axis=-1" in text and "out[flip]" in text
    assert "BEGIN SOLUTION" not in text and "overflowed" not in text and "NotImplementedError" not in text


def test_build_is_deterministic_and_matches_the_committed_fixture(tmp_path):
    for run in ("a", "b"):
        report = B.build(None, FIXTURES, tmp_path / run / "ex", tmp_path / run / "sol")
        assert len(report.written) == 2
    for kind in ("ex", "sol"):
        assert (tmp_path / "a" / kind / "toy_assignment.ipynb").read_bytes() == (tmp_path / "b" / kind / "toy_assignment.ipynb").read_bytes()
    report = B.build(None, FIXTURES, FIXTURES / "exercises", FIXTURES / "solutions", check=True)
    assert report.differing == [] and len(report.unchanged) == 2


def test_check_mode_lists_stale_copies_and_fails(tmp_path, capsys):
    ex, sol = tmp_path / "ex", tmp_path / "sol"
    shutil.copytree(FIXTURES / "exercises", ex)
    target = ex / "toy_assignment.ipynb"
    target.write_text(target.read_text().replace("YOUR CODE HERE", "YOUR CODE THERE", 1))
    (ex / "99_gone.ipynb").write_text("{}")
    before = target.read_bytes()
    rc = B.cli(["--notebooks", str(FIXTURES), "--exercises", str(ex), "--solutions", str(sol), "--check"])
    out = capsys.readouterr()
    assert rc == 1 and target.read_bytes() == before  # --check writes nothing
    assert "differs" in out.out and "toy_assignment.ipynb" in out.out
    assert "missing" in out.out and "stale" in out.out and "99_gone.ipynb" in out.out
    assert "run `course build`" in out.err


def test_notebooks_without_graded_cells_are_skipped(tmp_path, capsys):
    write_master(tmp_path, "# %%\nx = 1\n", name="00_plain")
    assert B.cli(["--notebooks", str(tmp_path), "--exercises", str(tmp_path / "e"), "--solutions", str(tmp_path / "s")]) == 0
    assert "skipped" in capsys.readouterr().out and not (tmp_path / "e").exists()


def test_committed_exercises_and_solutions_are_up_to_date():
    """The repository's exercises/ and solutions/ are what `course build` makes of notebooks/."""
    report = B.build(None, REPO / "notebooks", REPO / "exercises", REPO / "solutions", check=True)
    assert report.differing == [], f"run `course build` and commit: {report.differing}"


# ----------------------------------------------------------------------------- submissions (no kernel)


def cell(nb, gid):
    return next(c for c in nb.cells if c.metadata.get("grade_id") == gid)


def variant(base, *, replace=None, after=None, delete=(), duplicate=(), edit=None):
    """A copy of ``base`` with solution cells replaced, cells added after graded cells, test cells deleted/duplicated/edited."""
    nb = copy.deepcopy(base)
    cells = []
    for c in nb.cells:
        gid = c.metadata.get("grade_id")
        if gid in delete:
            continue
        if gid in (replace or {}):
            c.source = replace[gid]
        if gid in (edit or {}):
            c.source = edit[gid]
        cells.append(c)
        if gid in duplicate:
            dup = copy.deepcopy(c)
            dup["id"] = c["id"] + "-copy"
            cells.append(dup)
        if gid in (after or {}):
            cells.append(nbformat.v4.new_code_cell(after[gid]))
    nb.cells = cells
    return nb


def test_merge_restores_deleted_edited_and_duplicated_tests(master):
    student = variant(
        B.build_exercise(master), delete=["q1_tests"], edit={"q2_tests": "pass"}, duplicate=["q3_tests"],
        after={"q1_solution": "print('my own cell')"},
    )
    merged = merge(master, student)
    ids = [c.metadata.get("grade_id") for c in merged.notebook.cells]
    assert [i for i in ids if i and i.endswith("_tests")] == ["q1_tests", "q2_tests", "q3_tests"]
    assert ids.index("q1_tests") > ids.index("q1_solution")  # put back after what precedes it in the master
    q2 = cell(merged.notebook, "q2_tests")
    assert "assert accuracy(logits, np.array([1, 0, 1])) == 1.0" in q2.source  # master's, hidden tests included
    assert "HIDDEN" not in q2.source
    assert "raise NotImplementedError()" in cell(merged.notebook, "q1_solution").source  # student's code kept
    assert any("my own cell" in c.source for c in merged.notebook.cells)
    notes = " ".join(merged.notes)
    assert "q1_tests was missing" in notes and "q2_tests was edited" in notes and "q3_tests appeared more than once" in notes
    nbformat.validate(merged.notebook)


def test_duplicated_test_runs_once_at_its_last_copy(master):
    student = B.build_solution(master)
    early = copy.deepcopy(cell(student, "q1_tests"))
    early["id"] = "pasted-above"
    student.cells.insert(1, early)  # a copy pasted above the solution it checks
    ids = [c.metadata.get("grade_id") for c in merge(master, student).notebook.cells]
    assert ids.count("q1_tests") == 1 and ids.index("q1_tests") > ids.index("q1_solution")


def test_merge_never_brings_back_a_deleted_solution(master):
    merged = merge(master, variant(B.build_solution(master), delete=["q2_solution"]))
    assert not any("argmax" in c.source for c in merged.notebook.cells)
    assert any("q2_solution is missing" in n for n in merged.notes)


@pytest.mark.parametrize(
    "name, content, status",
    [
        ("a.ipynb", b"", "error:empty"),
        ("a.ipynb", b'{"cells": [', "error:invalid-json"),
        ("a.ipynb", b'{"hello": 1}', "error:not-a-notebook"),
        ("a.ipynb", b"\x89PNG\r\n\x1a\n\x00\x00", "error:not-a-notebook"),
        ("a.pdf", b"%PDF-1.4", "error:not-a-notebook"),
        ("a.ipynb", json.dumps(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])).encode(), "error:wrong-assignment"),
    ],
)
def test_unreadable_submissions_get_a_status(tmp_path, master, name, content, status):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SubmissionError) as err:
        read_notebook(path, master)
    assert err.value.status == status and str(err.value)


def test_notebook_of_another_assignment_is_named(tmp_path, master):
    nb = B.build_exercise(master)
    nb.metadata["course"] = {"assignment": "05_other"}
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(SubmissionError, match="'05_other', not 'toy_assignment'") as err:
        read_notebook(path, master)
    assert err.value.status == "error:wrong-assignment"


def test_discover_files_folders_and_their_problems(tmp_path):
    (tmp_path / "alice.ipynb").write_text("{}")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "work.ipynb").write_text("{}")
    (tmp_path / "bob" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "bob" / ".ipynb_checkpoints" / "work-checkpoint.ipynb").write_text("{}")
    (tmp_path / "carl").mkdir()
    (tmp_path / "dora.ipynb").write_text("{}")
    (tmp_path / "dora").mkdir()
    (tmp_path / ".DS_Store").write_text("")
    subs = {s.student: s for s in discover(tmp_path, "toy_assignment")}
    assert sorted(subs) == ["alice", "bob", "carl", "dora"]
    assert subs["alice"].problem is None and subs["bob"].notebook.name == "work.ipynb"
    assert subs["carl"].problem.status == "error:no-notebook"
    assert subs["dora"].problem.status == "error:duplicate-submission"


# ----------------------------------------------------------------------------- grading with kernels


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def batch(tmp_path_factory, master):
    """Grade one batch holding every kind of submission; return (grades by student, out dir, hashes, log)."""
    root = tmp_path_factory.mktemp("grading")
    subs = root / "submissions"
    subs.mkdir()
    sol = B.build_solution(master)
    ex = B.build_exercise(master)
    q2 = cell(sol, "q2_solution").source
    naive_softmax = "def softmax(logits):\n    e = np.exp(logits)\n    return e / e.sum(axis=-1, keepdims=True)"
    notebooks = {
        "alice": sol,  # correct
        "bob": variant(sol, replace={"q1_solution": naive_softmax, "q3_solution": cell(ex, "q3_solution").source}),
        "carol": variant(sol, after={"q1_solution": "raise RuntimeError('oops, a stray cell')"}),
        "dave": variant(sol, replace={"q2_solution": "while True:\n    pass"}),  # interruptible hang
        "erin": variant(sol, replace={"q2_solution": "hog = []\nfor _ in range(3):\n    hog.append(np.ones(2**27))  # 1 GiB each, 3 GiB if unlimited\n" + q2}),
        "frank": variant(sol, delete=["q1_tests"], edit={"q2_tests": "pass"}, duplicate=["q3_tests"]),
        "gina": variant(ex, delete=["q1_tests"], edit={"q2_tests": "pass", "q3_tests": "assert True"}),
        "nina": variant(sol, after={"q1_tests": "import os\nos._exit(1)"}),
        "oscar": variant(sol, replace={"q3_solution": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"}),
        "pete": variant(sol, after={"q2_tests": "import ctypes\nctypes.string_at(0)"}),  # segfault
    }
    for name, nb in notebooks.items():
        nbformat.write(nb, subs / f"{name}.ipynb")
    (subs / "mia").mkdir()
    probe = "import resource, sys\nprint('KERNEL', sys.executable, resource.getrlimit(resource.RLIMIT_AS)[0])"
    nbformat.write(variant(sol, after={"q3_tests": probe}), subs / "mia" / "my_submission.ipynb")
    (subs / "henry.ipynb").write_text('{"cells": [{"cell_type": "code", "source": ')
    (subs / "ivan.ipynb").write_text('{"not": "a notebook"}')
    (subs / "jack.pdf").write_bytes(b"%PDF-1.4 not a notebook")
    (subs / "kate.ipynb").write_bytes(b"")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('other course')")]), subs / "leo.ipynb")
    files = [p for p in subs.rglob("*") if p.is_file()]
    hashes = {p: sha(p) for p in files}
    out = root / "out"
    log: list[str] = []
    grades = grade_all(
        subs, "toy_assignment", out=out, workers=2, notebooks=FIXTURES, log=log.append,
        limits=Limits(timeout=20, cell_timeout=3, memory_mb=1500),
    )
    return {g.student: g for g in grades}, out, hashes, log, subs


EXPECTED = {  # student: (status, q1, q2, q3)
    "alice": ("ok", 2, 1, 2),
    "bob": ("partial", 0, 1, 0),  # naive softmax fails the hidden overflow test; q3 left as stub
    "carol": ("ok", 2, 1, 2),  # a stray raising cell does not stop the run
    "dave": ("timeout", 2, 0, 2),  # the looping cell is interrupted, later checks still run
    "erin": ("memory-limit", 2, 0, 2),
    "frank": ("ok", 2, 1, 2),  # deleting, editing, duplicating tests changes nothing
    "gina": ("partial", 0, 0, 0),  # ... nor does it rescue an unsolved notebook
    "henry": ("error:invalid-json", 0, 0, 0),
    "ivan": ("error:not-a-notebook", 0, 0, 0),
    "jack": ("error:not-a-notebook", 0, 0, 0),
    "kate": ("error:empty", 0, 0, 0),
    "leo": ("error:wrong-assignment", 0, 0, 0),
    "mia": ("ok", 2, 1, 2),  # a folder holding one notebook
    "nina": ("kernel-died", 2, 0, 0),  # os._exit after q1
    "oscar": ("timeout", 2, 1, 0),  # ignores the interrupt: the total time limit stops it
    "pete": ("kernel-died", 2, 1, 0),  # segfault after q2
}


@pytest.mark.slow
def test_every_submission_gets_its_expected_grade(batch):
    grades, out, *_ = batch
    got = {s: (g.status, *(g.points[q] for q in ("q1_tests", "q2_tests", "q3_tests"))) for s, g in grades.items()}
    assert got == EXPECTED
    assert all(g.max == 5 and g.total == sum(g.points.values()) for g in grades.values())


@pytest.mark.slow
def test_grade_sheet_has_one_column_per_check(batch):
    grades, out, *_ = batch
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["student", "q1_tests", "q2_tests", "q3_tests", "total", "max", "status", "detail"]
    by = {r["student"]: r for r in rows}
    assert sorted(by) == sorted(EXPECTED)
    assert by["bob"]["total"] == "1" and by["bob"]["max"] == "5" and by["bob"]["status"] == "partial"
    assert "3 s cell limit" in by["dave"]["detail"] and "total time limit of 20 s" in by["oscar"]["detail"]
    assert "1500 MiB" in by["erin"]["detail"] and "not valid JSON" in by["henry"]["detail"]


@pytest.mark.slow
def test_feedback_says_which_checks_failed_and_why(batch):
    grades, out, *_ = batch
    bob = (out / "feedback" / "bob.md").read_text()
    assert "AssertionError: softmax overflowed on large logits" in bob  # hidden test's message
    assert "NotImplementedError" in bob and "| `q2_tests` | 1 / 1 | passed |" in bob
    carol = (out / "feedback" / "carol.md").read_text()
    assert "RuntimeError: oops, a stray cell" in carol and "Other cells that raised" in carol
    frank = (out / "feedback" / "frank.md").read_text()
    assert "q1_tests was missing" in frank and "q2_tests was edited" in frank
    assert "did not run" in (out / "feedback" / "oscar.md").read_text()
    assert "kernel died while running cell" in (out / "feedback" / "nina.md").read_text()
    assert "not valid JSON" in (out / "feedback" / "henry.md").read_text()


@pytest.mark.slow
def test_originals_untouched_and_executed_copies_written(batch):
    grades, out, hashes, *_ = batch
    assert all(sha(p) == h for p, h in hashes.items())
    for student, g in grades.items():
        executed = out / "executed" / f"{student}.ipynb"
        assert executed.exists() == (not g.status.startswith("error:")), student
    alice = nbformat.read(out / "executed" / "alice.ipynb", as_version=4)
    injected = next(c for c in alice.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'PROFILE = "smoke"' in injected.source and "INTERACTIVE = False" in injected.source
    assert "overflowed" in cell(alice, "q1_tests").source  # hidden tests ran
    mia = nbformat.read(out / "executed" / "mia.ipynb", as_version=4)
    printed = next(o["text"] for c in mia.cells for o in c.get("outputs", []) if "KERNEL" in o.get("text", ""))
    python, limit = printed.split()[1:]
    assert python == sys.executable  # the kernelspec runs this venv's python
    assert int(limit) == 1500 * 2**20  # the memory limit reached the kernel


@pytest.mark.slow
def test_rerun_skips_graded_submissions_unless_forced(batch, tmp_path):
    grades, out, hashes, _, subs = batch
    log: list[str] = []
    again = grade_all(subs, "toy_assignment", out=out, workers=2, notebooks=FIXTURES, log=log.append, limits=Limits(timeout=20, cell_timeout=3, memory_mb=1500))
    assert all("skipped" in line for line in log) and len(log) == len(EXPECTED)
    assert {g.student: (g.status, g.total) for g in again} == {s: (g.status, g.total) for s, g in grades.items()}
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(subs / "alice.ipynb", one / "alice.ipynb")
    shutil.copy(subs / "kate.ipynb", one / "kate.ipynb")
    log.clear()
    grade_all(one, "toy_assignment", out=out, notebooks=FIXTURES, log=log.append, force=True)
    assert not any("skipped" in line for line in log) and any(line.startswith("alice: ok 5/5") for line in log)


def test_cli_reports_bad_arguments_and_summarises(tmp_path, capsys):
    from course_lib.grading.grade import cli

    assert cli([str(tmp_path / "nowhere"), "--assignment", "toy", "--notebooks", str(FIXTURES)]) == 2
    assert "no submissions folder" in capsys.readouterr().err
    assert cli([str(tmp_path), "--assignment", "nope", "--notebooks", str(FIXTURES)]) == 2
    assert "known: toy_assignment" in capsys.readouterr().err
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "zed.ipynb").write_text("")
    assert cli([str(tmp_path / "s"), "--assignment", "toy", "--notebooks", str(FIXTURES), "--out", str(tmp_path / "o")]) == 0
    assert "1 error:empty" in capsys.readouterr().out
    assert (tmp_path / "o" / "grades.csv").exists() and (tmp_path / "o" / "feedback" / "zed.md").exists()
