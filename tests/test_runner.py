"""``course run --gather``: the results table rebuilt from notebooks executed one at a time."""

from __future__ import annotations

import json
from pathlib import Path

from course_lib import runner


def _executed(path: Path, meta: dict) -> None:
    path.write_text(json.dumps({"cells": [], "metadata": {"papermill": meta}, "nbformat": 4, "nbformat_minor": 5}))


def test_gather_reads_papermill_records_and_skips_failed_or_missing(tmp_path):
    nbdir, out = tmp_path / "notebooks", tmp_path / "runs"
    nbdir.mkdir(), out.mkdir()
    for name in ("00_a", "01_b", "02_c", "03_d"):
        (nbdir / f"{name}.ipynb").write_text("{}")
    _executed(out / "00_a.ipynb", {"duration": 12.5, "end_time": "2026-12-03T08:00:00.123", "exception": None})
    _executed(out / "01_b.ipynb", {"duration": 3.0, "end_time": "2026-12-03T08:01:00", "exception": True})
    (out / "02_c.ipynb").write_text("not json")  # a truncated copy: skipped, not a crash
    timings, finished = runner.gather(out, directory=nbdir)
    assert timings == {"00_a": 12.5}
    assert finished == {"00_a": "2026-12-03T08:00:00"}


def test_gather_without_any_run_says_what_to_do(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setattr(runner, "gather", lambda out, names=None: ({}, {}))
    with pytest.raises(SystemExit, match="run `course run` first"):
        runner.cli(["--gather", "--out", str(tmp_path)])


def test_table_header_names_the_notebooks_and_parameters_it_was_run_with(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "notebooks", lambda names=None, directory=None: [Path("02_moco.ipynb")])
    monkeypatch.setattr(runner, "run_notebook", lambda *a, **k: (True, 1.0, ""))
    results = tmp_path / "RESULTS-fashion.md"
    runner.cli(["02", "--profile", "smoke", "--out", str(tmp_path), "--results", str(results),
                "-p", "DATASET", '"fashion-mnist"'])
    header = results.read_text().splitlines()[2]
    expected = "Produced by `course run 02 --profile smoke -p DATASET '\"fashion-mnist\"'`; total"
    assert header.startswith(expected), header
