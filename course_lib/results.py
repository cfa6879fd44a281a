"""Per-notebook results JSON and the course-wide ``RESULTS.md`` table.

Each notebook ends with ``save_results(...)``: its key numbers (test accuracy, time,
...) and, where the student report gave a number for the same quantity, that number
too.  ``course run`` collects the files into one Markdown table.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .paths import runs_dir


def results_dir() -> Path:
    """Where results JSON go: ``$COURSE_RESULTS_DIR`` (set by ``course run``), else ``runs/``."""
    return Path(os.environ.get("COURSE_RESULTS_DIR") or runs_dir())


def save_results(notebook: str, profile: str, metrics: dict[str, Any], report: dict[str, Any] | None = None,
                 notes: dict[str, str] | None = None, directory: str | os.PathLike | None = None) -> Path:
    """Write ``<notebook>.results.json``: ``metrics`` measured here, ``report`` = the report's own numbers.

    ``notes`` may explain a metric (e.g. "seed sweep on a 10k subset, 3 epochs").
    """
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"metrics {bad} are not finite; fix the run before recording it")
    path = Path(directory or results_dir()) / f"{notebook}.results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"notebook": notebook, "profile": profile, "metrics": metrics, "report": report or {}, "notes": notes or {}}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
    return path


def load_results(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """All ``*.results.json`` in ``directory``, sorted by notebook name."""
    return [json.loads(p.read_text()) for p in sorted(Path(directory).glob("*.results.json"))]


def _fmt(key: str, v: Any) -> str:
    """Accuracies (keys with ``acc`` or ``top``) as percentages, other floats with 4 digits."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v * 100:.2f} %" if ("acc" in key or "top" in key) and 0 <= v <= 1 else f"{v:.4g}"
    return str(v)


def results_table(results: list[dict[str, Any]], timings: dict[str, float] | None = None) -> str:
    """A Markdown table: notebook, quantity, our value, the report's value, note."""
    lines = ["| notebook | profile | quantity | this course | original report | note |", "|---|---|---|---|---|---|"]
    for r in results:
        nb = r["notebook"]
        for key, value in r["metrics"].items():
            report = r.get("report", {}).get(key)
            note = r.get("notes", {}).get(key, "")
            lines.append(f"| {nb} | {r['profile']} | {key} | {_fmt(key, value)} | {'' if report is None else _fmt(key, report)} | {note} |")
        if timings and nb in timings:
            lines.append(f"| {nb} | {r['profile']} | notebook wall time (s) | {timings[nb]:.0f} |  |  |")
    return "\n".join(lines) + "\n"
