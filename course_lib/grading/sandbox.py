"""Run one notebook with papermill in a child process, under time and memory limits.

``run_notebook`` starts ``python -m course_lib.grading.sandbox JOB.json``. That child

1. lowers its own address-space limit (``RLIMIT_AS``, soft and hard, so student code
   cannot raise it back) and forbids core dumps; the kernel papermill launches
   inherits both, since rlimits pass from parent to child process;
2. executes the notebook with papermill: ``allow_errors`` so a failing cell does not
   stop the run, a per-cell timeout that *interrupts* the kernel (KeyboardInterrupt in
   the cell, then execution goes on), ``PROFILE``/``INTERACTIVE`` injected;
3. appends one JSON line per executed cell to an events file from nbclient's
   ``on_cell_start``/``on_cell_executed`` hooks: the kernel's *execute reply* status
   (``ok``/``error``, exception name, message, traceback), which the grader trusts
   rather than anything the notebook prints.

The parent enforces the total wall-clock limit: when it expires it kills the child,
the kernel and everything they started. Events already written survive the kill, so
the cells that finished before a hang still count.

The limits protect the grading machine from runaway notebooks; they are not a
security boundary (the kernel runs as the grader's user). ``RLIMIT_AS`` counts
address space, not resident memory, and works on Linux; elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Phrases in a dead kernel's stderr that mean it ran out of (allowed) memory.
MEMORY_SIGNS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "can't allocate memory", "out of memory")


@dataclass
class Limits:
    """Resource limits for one notebook run.

    ``timeout``: total wall-clock seconds, kernel start included. ``cell_timeout``:
    seconds one cell may run before the kernel is interrupted. ``memory_mb``: address
    space of the kernel in MiB (None: no limit). PyTorch alone reserves about 4 GB of
    address space, hence the generous default.
    """

    timeout: float = 600.0
    cell_timeout: float = 120.0
    memory_mb: int | None = 8192

    def __post_init__(self) -> None:
        if not self.timeout > 0 or not self.cell_timeout > 0:
            raise ValueError(f"timeouts must be positive, got timeout={self.timeout}, cell_timeout={self.cell_timeout}")
        if self.memory_mb is not None and self.memory_mb < 256:
            raise ValueError(f"memory_mb={self.memory_mb} is too small to start a Python kernel; use at least 256")


@dataclass
class CellRun:
    """What happened to one executed cell (from the kernel's execute reply)."""

    index: int
    cell_id: str | None
    grade_id: str | None
    status: str  # "ok", "error" or "running" (started, never finished)
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    timed_out: bool = False


@dataclass
class RunResult:
    """The outcome of a run: how it ended, each cell's result, the tail of the child's log.

    ``outcome`` is ``finished`` (ran to the end; cells may have failed), ``timeout``
    (wall clock), ``kernel-died``, ``memory-limit`` (the child or kernel ran out of
    memory and died) or ``error`` (papermill itself failed, e.g. the kernel never started).
    """

    outcome: str
    detail: str = ""
    cells: list[CellRun] = field(default_factory=list)
    log_tail: str = ""
    seconds: float = 0.0

    def by_grade_id(self) -> dict[str, CellRun]:
        """The last run of each graded cell."""
        return {c.grade_id: c for c in self.cells if c.grade_id}


def _child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"
    if threads:  # several notebooks at once: do not oversubscribe the cores
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(threads))
    return env


def _kill_tree(pid: int) -> None:
    """SIGKILL a process, all its descendants and the kernel's process group."""
    import signal

    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil ships with ipykernel
        psutil = None
    victims: list[int] = [pid]
    if psutil is not None:
        try:
            victims += [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            pass
    groups = set()
    for v in victims:
        try:
            groups.add(os.getpgid(v))
        except OSError:
            pass
    for v in victims:
        try:
            os.kill(v, signal.SIGKILL)
        except OSError:
            pass
    for g in groups:  # the kernel runs in its own session; get its subprocesses too
        if g != os.getpgid(0):
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass


_LIVE: set[int] = set()  # child pids still running, for kill_all
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    """Kill every child (and its kernel) still running, e.g. when the grader is interrupted."""
    with _LIVE_LOCK:
        pids = list(_LIVE)
    for pid in pids:
        _kill_tree(pid)


def read_events(path: Path) -> tuple[list[CellRun], dict[str, Any] | None]:
    """Parse the events file: the cells (in execution order) and the final ``end`` event."""
    started: dict[int, CellRun] = {}
    order: list[int] = []
    end = None
    if not path.exists():
        return [], None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        kind = ev.get("event")
        if kind == "cell_start":
            started[ev["index"]] = CellRun(ev["index"], ev.get("cell_id"), ev.get("grade_id"), "running")
            order.append(ev["index"])
        elif kind == "cell_done" and ev["index"] in started:
            run = started[ev["index"]]
            run.status = ev.get("status", "error")
            run.ename, run.evalue = ev.get("ename", ""), ev.get("evalue", "")
            run.traceback, run.elapsed = ev.get("traceback", []), ev.get("elapsed", 0.0)
            run.timed_out = bool(ev.get("timed_out"))
        elif kind == "end":
            end = ev
    return [started[i] for i in order], end


def run_notebook(
    notebook: Path,
    output: Path,
    cwd: Path,
    parameters: dict[str, Any],
    limits: Limits,
    kernel_name: str = "python3",
    threads: int | None = None,
) -> RunResult:
    """Execute ``notebook`` into ``output`` in a limited child process; never raises for notebook faults.

    ``cwd`` is the kernel's working directory (the submission's scratch copy). The
    job, events and log files go next to ``output``, outside ``cwd``.
    """
    output = Path(output)
    run_dir = output.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    events = run_dir / "events.jsonl"
    events.unlink(missing_ok=True)
    job = {
        "input": str(notebook),
        "output": str(output),
        "events": str(events),
        "cwd": str(cwd),
        "parameters": parameters,
        "kernel_name": kernel_name,
        "cell_timeout": limits.cell_timeout,
        "memory_mb": limits.memory_mb,
    }
    job_path = run_dir / "job.json"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    log_path = run_dir / "sandbox.log"
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "course_lib.grading.sandbox", str(job_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_child_env(threads),
            start_new_session=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(proc.pid)
        timed_out = False
        try:
            proc.wait(timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc.pid)
            proc.wait()
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc.pid)
    cells, end = read_events(events)
    log_tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
    result = RunResult(outcome="finished", cells=cells, log_tail=log_tail, seconds=time.monotonic() - start)
    running = [c for c in cells if c.status == "running"]
    where = ""
    if running:
        last = running[-1]
        where = f" while running cell {last.index + 1}" + (f" ({last.grade_id})" if last.grade_id else "")
    if timed_out:
        result.outcome, result.detail = "timeout", f"stopped after the total time limit of {limits.timeout:g} s{where}"
    elif end is None:
        if any(sign in log_tail for sign in MEMORY_SIGNS):
            result.outcome, result.detail = "memory-limit", f"the grading process ran out of memory (limit {limits.memory_mb} MiB)"
        else:
            result.outcome, result.detail = "error", f"the grading process exited with code {proc.returncode}"
    else:
        result.outcome, result.detail = end["outcome"], end.get("detail", "")
        if result.outcome == "kernel-died":
            result.detail = f"the kernel died{where} (os._exit, a crash or a signal); later cells did not run"
            if any(sign in log_tail for sign in MEMORY_SIGNS):
                result.outcome = "memory-limit"
                result.detail = f"the kernel died{where} after running out of memory (limit {limits.memory_mb} MiB)"
    return result


# --------------------------------------------------------------------------- child side


def _limit_memory(memory_mb: int | None) -> None:
    """Lower this process's address space (inherited by the kernel) and forbid core dumps."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    if memory_mb is not None and sys.platform.startswith("linux"):
        limit = int(memory_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _child(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    _limit_memory(job["memory_mb"])
    events = open(job["events"], "a", encoding="utf-8", buffering=1)
    started: dict[int, float] = {}
    cell_timeout = float(job["cell_timeout"])

    def emit(**event: Any) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    def on_cell_start(cell: Any, cell_index: int, **_: Any) -> None:
        if cell.get("cell_type") != "code" or not cell.get("source", "").strip():
            return
        started[cell_index] = time.monotonic()
        emit(event="cell_start", index=cell_index, cell_id=cell.get("id"), grade_id=cell.metadata.get("grade_id"))

    def on_cell_executed(cell: Any, cell_index: int, execute_reply: dict, **_: Any) -> None:
        content = (execute_reply or {}).get("content", {})
        elapsed = time.monotonic() - started.get(cell_index, time.monotonic())
        status = content.get("status", "error")
        ename = content.get("ename", "") if status != "ok" else ""
        timed_out = status != "ok" and ename == "KeyboardInterrupt" and elapsed >= 0.9 * cell_timeout
        emit(
            event="cell_done",
            index=cell_index,
            status="ok" if status == "ok" else "error",
            ename=ename,
            evalue=content.get("evalue", "") if status != "ok" else "",
            traceback=content.get("traceback", []) if status != "ok" else [],
            elapsed=round(elapsed, 3),
            timed_out=timed_out,
        )

    outcome, detail = "finished", ""
    try:
        import papermill
        from nbclient.exceptions import CellTimeoutError, DeadKernelError
        from papermill.exceptions import PapermillExecutionError

        try:
            papermill.execute_notebook(
                job["input"],
                job["output"],
                parameters=job["parameters"],
                kernel_name=job["kernel_name"],
                language="python",
                progress_bar=False,
                execution_timeout=cell_timeout,
                start_timeout=60,
                cwd=job["cwd"],
                allow_errors=True,
                interrupt_on_timeout=True,
                on_cell_start=on_cell_start,
                on_cell_executed=on_cell_executed,
            )
        except PapermillExecutionError:
            pass  # cells raised; allow_errors kept going and the events say which
        except DeadKernelError as exc:
            outcome, detail = "kernel-died", f"the kernel died ({exc}); cells after that point did not run"
        except CellTimeoutError as exc:
            outcome, detail = "timeout", f"a cell did not respond after an interrupt ({str(exc).splitlines()[0]})"
    except MemoryError:
        outcome, detail = "memory-limit", f"the grading process ran out of memory (limit {job['memory_mb']} MiB)"
    except Exception as exc:  # the kernel failed to start, a broken notebook, ...
        outcome, detail = "error", f"{type(exc).__name__}: {exc}"
    emit(event="end", outcome=outcome, detail=detail)
    events.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m course_lib.grading.sandbox JOB.json")
    sys.exit(_child(sys.argv[1]))
