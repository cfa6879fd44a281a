"""The course's exercise and solution notebooks, run with kernels in the smoke profile.

For every master in ``notebooks/`` that holds graded cells:

- its exercise notebook (``exercises/NN.ipynb``), run with papermill as a student would
  (``PROFILE="smoke"``, ``INTERACTIVE=False``), stops with NotImplementedError at its
  *first* exercise: everything before it works without the answers, and the first
  stub really is the first thing a student must write;
- its solution notebook (``solutions/NN.ipynb``), graded by ``course grade`` as if a
  student had handed it in, gets every point, hidden tests included.

The build check (``exercises/`` and ``solutions/`` are what ``course build`` makes of
the masters) is in test_grading.py. These tests need the real data (``COURSE_DATA``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, real_data_dir
from course_lib.grading import build as B

MASTERS = [py for py in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py")) if B.load_master(py).graded]


@pytest.fixture
def course_env(monkeypatch, tmp_path):
    """Real data (absolute path: kernels run in other folders); results and runs into tmp_path."""
    data = real_data_dir()
    if data is None:
        pytest.skip("COURSE_DATA does not point at the datasets (e.g. ../shared/data)")
    monkeypatch.setenv("COURSE_DATA", str(data.resolve()))
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("COURSE_RUNS", str(tmp_path / "runs"))
    for var in ("COURSE_PROFILE", "COURSE_INTERACTIVE"):  # the parameters must decide, as when grading
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_build_check_covers_every_notebook_with_exercises():
    """Each master with exercises has its committed, current exercise and solution copies
    (so test_grading's build check and the tests below really look at them)."""
    if not MASTERS:
        pytest.skip("no master holds graded cells yet")
    report = B.build([py.stem for py in MASTERS], REPO / "notebooks", REPO / "exercises", REPO / "solutions", check=True)
    assert report.differing == [], f"run `course build` and commit: {report.differing}"
    expected = {REPO / kind / f"{py.stem}.ipynb" for py in MASTERS for kind in ("exercises", "solutions")}
    assert {Path(p).resolve() for p in report.unchanged} == {p.resolve() for p in expected}


@pytest.mark.slow
@pytest.mark.parametrize("py", MASTERS, ids=lambda p: p.stem)
def test_exercise_notebook_stops_at_its_first_exercise(py: Path, course_env):
    import papermill as pm

    master = B.load_master(py)
    first_solution = master.solutions[0].grade_id
    first_tests = master.tests[0].grade_id
    work = course_env / "student"
    work.mkdir()
    src = work / f"{py.stem}.ipynb"
    shutil.copyfile(REPO / "exercises" / src.name, src)
    out = work / "executed.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(src), str(out), parameters={"PROFILE": "smoke", "INTERACTIVE": False},
                            kernel_name="python3", language="python", cwd=str(work), progress_bar=False,
                            execution_timeout=600)
    assert info.value.ename == "NotImplementedError", f"{src.name} failed before its first exercise: {info.value}"
    executed = nbformat.read(out, as_version=4)
    failed = [c for c in executed.cells if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.outputs)]
    assert len(failed) == 1
    where = failed[0].metadata.get("grade_id")
    assert where in (first_solution, first_tests), (
        f"{src.name} stopped at cell {where or failed[0].source[:80]!r}, not at its first exercise "
        f"({first_solution!r} or its tests {first_tests!r})")


@pytest.mark.slow
@pytest.mark.parametrize("py", MASTERS, ids=lambda p: p.stem)
def test_solution_notebook_earns_every_point(py: Path, course_env):
    from course_lib.grading.grade import grade_all
    from course_lib.grading.sandbox import Limits

    subs = course_env / "submissions"
    subs.mkdir()
    shutil.copyfile(REPO / "solutions" / f"{py.stem}.ipynb", subs / "answer_key.ipynb")
    log: list[str] = []
    (grade,) = grade_all(subs, py.stem, out=course_env / "grades", notebooks=REPO / "notebooks",
                         limits=Limits(timeout=900, cell_timeout=600), log=log.append)
    feedback = (course_env / "grades" / "feedback" / "answer_key.md").read_text()
    assert grade.status == "ok" and grade.total == grade.max, f"{grade.status} {grade.total}/{grade.max}\n{feedback}"
