"""``course run``: execute the course notebooks headlessly and gather their results.

Each notebook in ``notebooks/`` is executed with papermill (``PROFILE`` and
``INTERACTIVE=False`` injected into its ``parameters`` cell); the executed copy and
its results JSON go to ``runs/<profile>/``, and one Markdown table of all results
is printed and written to ``runs/<profile>/RESULTS.md``.  A notebook that fails is
reported and the others still run.  ``--gather`` runs nothing: it rebuilds the table
from the executed copies already in ``runs/<profile>/`` (each notebook's wall time is
papermill's own record in that copy, with the time it finished), e.g. after the
notebooks were run one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from .paths import REPO_ROOT, runs_dir
from .profiles import PROFILES
from .results import load_results, results_table

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def notebooks(names: list[str] | None = None, directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks (``NN_*.ipynb``), or those whose name starts with one of ``names``."""
    found = sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return found
    picked = [p for p in found if any(p.stem.startswith(n) or p.stem == Path(n).stem for n in names)]
    unknown = [n for n in names if not any(p.stem.startswith(n) or p.stem == Path(n).stem for p in found)]
    if unknown:
        raise SystemExit(f"no notebook matches {unknown}; available: {[p.stem for p in found]}")
    return picked


def run_notebook(path: Path, out_dir: Path, profile: str, parameters: dict | None = None,
                 timeout: float | None = None) -> tuple[bool, float, str]:
    """Execute one notebook with papermill; return ``(ok, seconds, error message)``."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    env_before = os.environ.get("COURSE_RESULTS_DIR")
    os.environ["COURSE_RESULTS_DIR"] = str(out_dir.resolve())
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path), str(out_dir / path.name),
            parameters={"PROFILE": profile, "INTERACTIVE": False, **(parameters or {})},
            kernel_name="python3", language="python", cwd=str(path.parent), progress_bar=False,
            execution_timeout=timeout,
        )
        return True, time.perf_counter() - t0, ""
    except Exception as exc:  # noqa: BLE001 - report and go on with the next notebook
        return False, time.perf_counter() - t0, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    finally:
        if env_before is None:
            os.environ.pop("COURSE_RESULTS_DIR", None)
        else:
            os.environ["COURSE_RESULTS_DIR"] = env_before


def executed_record(executed: Path) -> tuple[float, str] | None:
    """``(seconds, end time)`` papermill recorded in an executed notebook, or None if it has none."""
    try:
        meta = json.loads(executed.read_text())["metadata"].get("papermill", {})
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("duration") is None or meta.get("exception"):
        return None
    return float(meta["duration"]), str(meta.get("end_time", ""))[:19]


def gather(out: Path, names: list[str] | None = None,
           directory: Path = NOTEBOOK_DIR) -> tuple[dict[str, float], dict[str, str]]:
    """Wall times and end times of the notebooks (of ``directory``) already executed in ``out``."""
    timings, finished = {}, {}
    for nb in notebooks(names, directory):
        rec = executed_record(out / nb.name)
        if rec is not None:
            timings[nb.stem], finished[nb.stem] = rec
    return timings, finished


def command_line(names: list[str], profile: str, params: list[tuple[str, str]], gather: bool = False) -> str:
    """The ``course run`` command that made a table, for its header: notebooks, profile, ``-p`` parameters."""
    parts = ["course run", *names, f"--profile {profile}", *(["--gather"] if gather else []),
             *(f"-p {k} {shlex.quote(v)}" for k, v in params)]
    return " ".join(parts)


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="course run", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="notebooks to run (prefix like 01 or a name); default all")
    ap.add_argument("--profile", default="quick", choices=PROFILES)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default runs/<profile>)")
    ap.add_argument("--results", type=Path, default=None, help="also write the results table here (e.g. RESULTS.md)")
    ap.add_argument("--timeout", type=float, default=None, help="per-cell time limit in seconds")
    ap.add_argument("--gather", action="store_true",
                    help="run nothing; rebuild the table from the executed copies in the output folder")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="extra papermill parameter (value parsed as JSON when possible)")
    args = ap.parse_args(argv)

    out = args.out or runs_dir() / args.profile
    params = {}
    for k, v in args.param:
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    if args.gather:
        timings, finished = gather(out, args.names)
        if not timings:
            raise SystemExit(f"no executed notebooks with papermill records in {out}; run `course run` first")
        table = results_table([r for r in load_results(out) if r["notebook"] in timings], timings)
        when = ", ".join(f"{k[:2]} {v}" for k, v in finished.items())
        text = (f"# Results ({args.profile} profile)\n\nGathered by `{command_line(args.names, args.profile, args.param, True)}` from "
                f"notebooks executed one at a time (finished, UTC: {when}); sum of wall times "
                f"{sum(timings.values()):.0f} s.\n\n{table}")
        (out / "RESULTS.md").write_text(text)
        if args.results:
            args.results.write_text(text)
        print(text)
        return 0
    timings, failures = {}, {}
    t_all = time.perf_counter()
    for nb in notebooks(args.names):
        print(f"[course run] {nb.stem} ({args.profile}) ...", flush=True)
        ok, secs, err = run_notebook(nb, out, args.profile, params, args.timeout)
        timings[nb.stem] = secs
        print(f"[course run] {nb.stem}: {'ok' if ok else 'FAILED'} in {secs:.0f} s {err}", flush=True)
        if not ok:
            failures[nb.stem] = err
    total = time.perf_counter() - t_all
    table = results_table([r for r in load_results(out) if r["notebook"] in timings], timings)
    text = (f"# Results ({args.profile} profile)\n\nProduced by `{command_line(args.names, args.profile, args.param)}`; "
            f"total {total:.0f} s.\n\n{table}")
    if failures:
        text += "\nFailed notebooks:\n" + "".join(f"- {k}: {v}\n" for k, v in failures.items())
    (out / "RESULTS.md").write_text(text)
    if args.results:
        args.results.write_text(text)
    print(text)
    print(f"[course run] executed notebooks and results in {out}")
    return 1 if failures else 0
