"""``course grade``: grade a folder of submissions against the master notebook.

For each submission (``alice.ipynb`` or ``alice/…ipynb``) the grader

1. reads it defensively (empty, broken JSON, not a notebook, another assignment:
   each gets an ``error:…`` row, nothing runs);
2. copies it into a fresh scratch folder (the original is only ever read);
3. merges it with the master: the student's cells stay, every test cell, hidden
   tests included, comes from the master by ``grade_id`` (see ``submission.merge``);
4. runs it with papermill in a limited child process (``sandbox.run_notebook``):
   ``PROFILE="smoke"``, ``INTERACTIVE=False``, a per-cell timeout that interrupts the
   cell, a total timeout, a memory limit, and execution that goes on past errors;
5. scores each test cell from the kernel's execute reply: it earns its points iff
   it ran without raising.

Results go to ``--out`` (default ``grades/NAME/``): ``grades.csv`` (one column per
test cell), ``feedback/<student>.md``, ``executed/<student>.ipynb`` and
``logs/<student>.log``. ``records/<student>.json`` remembers the hash of what was
graded (submission and master), so a re-run only grades new or changed
submissions unless ``--force``. Submissions run in parallel (``--workers``), each in
its own child process; no single submission can stop the batch.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat

from course_lib.grading import sandbox
from course_lib.grading.build import Master, MasterError, find_masters, load_master
from course_lib.grading.markers import MarkerError
from course_lib.grading.sandbox import Limits, RunResult
from course_lib.grading.submission import Submission, SubmissionError, discover, merge, read_notebook
from course_lib.paths import REPO_ROOT

#: What the grader injects into every notebook (papermill parameters).
PARAMETERS = {"PROFILE": "smoke", "INTERACTIVE": False}
#: Bump when grading rules change, so that old records are regraded.
GRADER_VERSION = "1"
#: Traceback lines kept in the feedback.
TRACEBACK_LINES = 15

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Failure:
    """Why a check (or another cell) failed: exception type, message, end of traceback."""

    grade_id: str | None
    cell: int | None  # 1-based position in the executed notebook
    ename: str
    evalue: str
    traceback: str


@dataclass
class Grade:
    """One row of the grade sheet plus what the feedback needs."""

    student: str
    status: str
    points: dict[str, float]
    total: float
    max: float
    detail: str = ""
    failures: list[Failure] = field(default_factory=list)
    other_errors: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key: str = ""
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grade:
        d = dict(d)
        d["failures"] = [Failure(**f) for f in d.get("failures", [])]
        d["other_errors"] = [Failure(**f) for f in d.get("other_errors", [])]
        return cls(**d)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _tail(tb: list[str]) -> str:
    text = _ANSI.sub("", "\n".join(tb))
    return "\n".join(text.rstrip().splitlines()[-TRACEBACK_LINES:])


def score(master: Master, run: RunResult, limits: Limits) -> tuple[str, str, dict[str, float], list[Failure], list[Failure]]:
    """Status, detail, points per test cell and failures from a run.

    A test cell earns its points iff the kernel reported it ``ok``. The status says
    how the run ended when something stopped it (``timeout``, ``memory-limit``,
    ``kernel-died``, ``error:execution``), else ``ok`` (full marks) or ``partial``.
    """
    runs = run.by_grade_id()
    points: dict[str, float] = {}
    failures: list[Failure] = []
    for g in master.tests:
        r = runs.get(g.grade_id)
        if r is not None and r.status == "ok":
            points[g.grade_id] = g.points
            continue
        points[g.grade_id] = 0.0
        if r is None or r.status == "running":
            why = run.detail or "the notebook stopped before this cell"
            failures.append(Failure(g.grade_id, r.index + 1 if r else None, "NotRun", f"this check did not finish: {why}", ""))
        else:
            failures.append(Failure(g.grade_id, r.index + 1, r.ename, r.evalue, _tail(r.traceback)))
    test_ids = {g.grade_id for g in master.tests}
    others = [
        Failure(c.grade_id, c.index + 1, c.ename, c.evalue, _tail(c.traceback))
        for c in run.cells
        if c.status == "error" and c.grade_id not in test_ids
    ]
    timed = [c for c in run.cells if c.timed_out]
    hogs = [c for c in run.cells if c.ename == "MemoryError" or (c.status == "error" and "allocate memory" in c.evalue)]
    detail = run.detail
    if run.outcome in ("timeout", "memory-limit", "kernel-died"):
        status = run.outcome
    elif run.outcome == "error":
        status = "error:execution"
    elif timed:
        status = "timeout"
        detail = "; ".join(
            f"cell {c.index + 1}{f' ({c.grade_id})' if c.grade_id else ''} ran past the {limits.cell_timeout:g} s cell limit and was interrupted"
            for c in timed
        )
    elif hogs:
        status = "memory-limit"
        detail = "; ".join(
            f"cell {c.index + 1}{f' ({c.grade_id})' if c.grade_id else ''} ran out of memory (limit {limits.memory_mb} MiB)" for c in hogs
        )
    else:
        status = "ok" if all(points[g.grade_id] == g.points for g in master.tests) else "partial"
    return status, detail, points, failures, others


def _contains(path: Path, inner: Path) -> bool:
    """Whether ``inner`` is ``path`` or lies inside it (an --out folder among the submissions)."""
    try:
        inner.resolve().relative_to(path.resolve())
        return True
    except ValueError:
        return False


def grading_key(sub: Submission, master: Master, parameters: dict[str, Any] | None = None) -> str:
    """What a grade depends on: the submitted bytes, the master, the parameters, the grader version."""
    h = hashlib.sha256()
    params = json.dumps(parameters or PARAMETERS, sort_keys=True, default=str)
    for part in (sub.digest(), hashlib.sha256(master.path.read_bytes()).hexdigest(), GRADER_VERSION, params):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _copy_submission(sub: Submission, scratch: Path) -> None:
    if sub.path.is_dir():
        shutil.copytree(sub.path, scratch, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        shutil.copy2(sub.path, scratch / sub.path.name)


def grade_submission(
    sub: Submission,
    master: Master,
    out: Path,
    limits: Limits,
    parameters: dict[str, Any] | None = None,
    threads: int | None = None,
) -> Grade:
    """Grade one submission; write its executed copy, log and feedback into ``out``."""
    start = time.monotonic()
    zero = {g.grade_id: 0.0 for g in master.tests}
    key = grading_key(sub, master, parameters)
    executed = out / "executed" / f"{sub.student}.ipynb"
    executed.unlink(missing_ok=True)
    try:
        if sub.problem is not None:
            raise sub.problem
        assert sub.notebook is not None
        student_nb = read_notebook(sub.notebook, master)
    except SubmissionError as exc:
        return Grade(sub.student, exc.status, zero, 0.0, master.max_points, str(exc), key=key, seconds=time.monotonic() - start)
    tmp = Path(tempfile.mkdtemp(prefix=f"course-grade-{sub.student}-"))
    try:
        scratch, run_dir = tmp / "scratch", tmp / "run"
        scratch.mkdir()
        _copy_submission(sub, scratch)
        merged = merge(master, student_nb)
        to_run = run_dir / "merged.ipynb"
        run_dir.mkdir()
        nbformat.write(merged.notebook, to_run)
        cwd = scratch / sub.notebook.parent.relative_to(sub.path) if sub.path.is_dir() else scratch
        result = sandbox.run_notebook(
            to_run, run_dir / "executed.ipynb", cwd, parameters or PARAMETERS, limits, threads=threads
        )
        status, detail, points, failures, others = score(master, result, limits)
        executed.parent.mkdir(parents=True, exist_ok=True)
        src = run_dir / "executed.ipynb"
        shutil.copyfile(src if src.exists() else to_run, executed)
        logs = out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "sandbox.log", logs / f"{sub.student}.log")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Grade(
        sub.student, status, points, sum(points.values()), master.max_points, detail,
        failures, others, merged.notes, key, time.monotonic() - start,
    )


def feedback_markdown(grade: Grade, master: Master) -> str:
    """The per-student feedback: status, a table of checks, why each failed, notes."""
    lines = [
        f"# Feedback: {master.name} — {grade.student}",
        "",
        f"**Status:** `{grade.status}` · **{_fmt(grade.total)} / {_fmt(grade.max)} points**",
    ]
    if grade.detail:
        lines += ["", grade.detail]
    failed = {f.grade_id: f for f in grade.failures}
    if not grade.status.startswith("error:"):
        lines += ["", "| check | points | result |", "|---|---|---|"]
        for g in master.tests:
            f = failed.get(g.grade_id)
            result = "passed" if f is None else ("did not run" if f.ename == "NotRun" else f"failed: `{f.ename}`")
            lines.append(f"| `{g.grade_id}` | {_fmt(grade.points.get(g.grade_id, 0))} / {_fmt(g.points)} | {result} |")
    if grade.failures:
        lines += ["", "## Failed checks"]
        for f in grade.failures:
            lines += ["", f"### `{f.grade_id}`" + (f" (cell {f.cell})" if f.cell else ""), "", f"{f.ename}: {f.evalue}".rstrip(": ")]
            if f.traceback:
                lines += ["", "```", f.traceback, "```"]
    if grade.other_errors:
        lines += ["", "## Other cells that raised", "", "These cells are not checks, but later checks may depend on them."]
        for f in grade.other_errors:
            where = f"cell {f.cell}" + (f" (`{f.grade_id}`)" if f.grade_id else "")
            lines += ["", f"### {where}", "", f"{f.ename}: {f.evalue}".rstrip(": ")]
            if f.traceback:
                lines += ["", "```", f.traceback, "```"]
    if grade.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in grade.notes]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_grades_csv(path: Path, grades: list[Grade], master: Master) -> None:
    """``student, <one column per test grade_id>, total, max, status, detail``, sorted by student."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *[g.grade_id for g in master.tests], "total", "max", "status", "detail"])
        for grade in sorted(grades, key=lambda g: g.student):
            row = [grade.student, *[_fmt(grade.points.get(g.grade_id, 0.0)) for g in master.tests]]
            w.writerow(row + [_fmt(grade.total), _fmt(grade.max), grade.status, " ".join(grade.detail.split())])
    os.replace(tmp, path)


def resolve_master(assignment: str, notebooks: str | Path | None = None) -> Master:
    """Load the master named ``assignment`` (stem or number) and check it has tests."""
    folder = Path(notebooks) if notebooks else REPO_ROOT / "notebooks"
    (path,) = find_masters(folder, [assignment])
    master = load_master(path)
    if not master.tests:
        raise MasterError(f"{path.name} has no test cells (points=N); there is nothing to grade")
    return master


def grade_all(
    submissions: str | Path,
    assignment: str,
    out: str | Path | None = None,
    workers: int = 1,
    limits: Limits | None = None,
    force: bool = False,
    notebooks: str | Path | None = None,
    parameters: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> list[Grade]:
    """Grade every submission in ``submissions``; write the grade sheet and feedback; return the grades."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    limits = limits or Limits()
    master = resolve_master(assignment, notebooks)
    out = Path(out) if out else Path("grades") / master.name
    subs = [s for s in discover(submissions, master.name) if not _contains(s.path, out)]
    if not subs:
        raise FileNotFoundError(f"no submissions in {submissions}; expected files like alice.ipynb or folders like alice/")
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    grades: dict[str, Grade] = {}
    todo: list[Submission] = []
    for sub in subs:
        record = out / "records" / f"{sub.student}.json"
        if not force and record.is_file():
            try:
                saved = json.loads(record.read_text(encoding="utf-8"))
                if saved.get("key") == grading_key(sub, master, parameters):
                    grades[sub.student] = Grade.from_dict(saved)
                    log(f"{sub.student}: unchanged since last grading, skipped ({saved['status']}, use --force to regrade)")
                    continue
            except (OSError, ValueError, TypeError, KeyError):
                pass  # unreadable record: grade again
        todo.append(sub)

    def finish(sub: Submission, grade: Grade) -> None:
        grades[sub.student] = grade
        _write_atomic(out / "feedback" / f"{sub.student}.md", feedback_markdown(grade, master))
        _write_atomic(out / "records" / f"{sub.student}.json", json.dumps(asdict(grade), indent=1, sort_keys=True))
        log(f"{sub.student}: {grade.status} {_fmt(grade.total)}/{_fmt(grade.max)} ({grade.seconds:.1f} s)")

    def safe(sub: Submission) -> Grade:
        try:
            return grade_submission(sub, master, out, limits, parameters, threads)
        except Exception as exc:  # a grader bug must not stop the batch
            detail = f"internal grader error: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}"
            zero = {g.grade_id: 0.0 for g in master.tests}
            return Grade(sub.student, "error:internal", zero, 0.0, master.max_points, detail)

    if todo:
        log(f"grading {len(todo)} submission(s) of {master.name} with {min(workers, len(todo))} worker(s)")
    pool = ThreadPoolExecutor(max_workers=workers)  # each job runs in its own child process
    try:
        futures = {pool.submit(safe, sub): sub for sub in todo}
        for fut in as_completed(futures):
            finish(futures[fut], fut.result())
    except BaseException:  # Ctrl-C: stop the running notebooks instead of waiting for them
        pool.shutdown(wait=False, cancel_futures=True)
        sandbox.kill_all()
        raise
    pool.shutdown()
    result = [grades[s.student] for s in subs]
    write_grades_csv(out / "grades.csv", result, master)
    return result


def cli(argv: list[str]) -> int:
    """``course grade SUBMISSIONS_DIR --assignment NAME [options]``."""
    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog="course grade",
        description="Run each submission with papermill against the master's tests (hidden tests "
        "included) and write grades.csv, feedback/ and executed/ into --out.",
    )
    parser.add_argument("submissions", type=Path, metavar="SUBMISSIONS_DIR", help="one alice.ipynb file or alice/ folder per student")
    parser.add_argument("--assignment", required=True, help="master notebook name, e.g. 03_contrastive (or just 03)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: grades/NAME/)")
    parser.add_argument("--workers", type=int, default=1, help="submissions graded at once (default: 1)")
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help=f"total seconds per submission (default: {defaults.timeout:g})")
    parser.add_argument("--cell-timeout", type=float, default=defaults.cell_timeout, help=f"seconds per cell before it is interrupted (default: {defaults.cell_timeout:g})")
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help=f"kernel address-space limit in MiB, 0 for none (default: {defaults.memory_mb}; "
                        "torch alone takes ~4 GB of address space)")
    parser.add_argument("--force", action="store_true", help="regrade submissions already graded")
    parser.add_argument("--notebooks", type=Path, default=None, help="folder of .py masters (default: notebooks/)")
    args = parser.parse_args(argv)
    if args.memory_mb and Path("/dev/nvidiactl").exists():
        print(
            "course grade: note: CUDA reserves far more address space than it uses; if kernels fail "
            "to initialise the GPU, pass --memory-mb 0 (no limit) or a much larger limit",
            file=sys.stderr,
        )
    try:
        limits = Limits(args.timeout, args.cell_timeout, args.memory_mb or None)
        grades = grade_all(
            args.submissions, args.assignment, args.out, args.workers, limits, args.force, args.notebooks
        )
    except (FileNotFoundError, ValueError, MasterError, MarkerError) as exc:
        print(f"course grade: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("course grade: interrupted; finished submissions are kept, run again to grade the rest", file=sys.stderr)
        return 130
    out = args.out or Path("grades") / resolve_master(args.assignment, args.notebooks).name
    counts: dict[str, int] = {}
    for g in grades:
        counts[g.status] = counts.get(g.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"graded {len(grades)} submission(s): {summary}; see {out / 'grades.csv'}")
    return 0


cli_grade = cli
