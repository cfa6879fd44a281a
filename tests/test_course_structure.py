"""The course as a whole: every notebook the mission names exists, and each one has what
the issues ask of all notebooks — at least three graded exercises with unique ids across
the course, and at least one interactive panel that headless runs skip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO
from course_lib.grading import build as B

NOTEBOOKS = ["00_getting_started", "01_alexnet", "02_moco", "03_byol", "04_fashion_mnist", "05_model_comparison",
             "06_masked_image_modelling"]
MASTERS = {name: REPO / "notebooks" / f"{name}.py" for name in NOTEBOOKS}


def test_every_course_notebook_exists_as_a_pair():
    for name, py in MASTERS.items():
        assert py.is_file(), f"notebooks/{name}.py is missing"
        assert py.with_suffix(".ipynb").is_file(), f"notebooks/{name}.ipynb is missing: jupytext --sync {py.name}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_three_graded_exercises_and_a_panel(name: str):
    py = MASTERS[name]
    if not py.is_file():
        pytest.skip(f"{py.name} missing (reported by test_every_course_notebook_exists_as_a_pair)")
    master = B.load_master(py)
    tests = master.tests
    assert len(tests) >= 3, f"{name}: {len(tests)} graded test cells, the course asks for at least 3"
    assert all(t.points > 0 for t in tests), f"{name}: every graded test cell carries points"
    assert len(master.solutions) >= 3, f"{name}: at least 3 solution cells for students to fill in"
    text = py.read_text()
    panels = re.findall(r"^if INTERACTIVE:\n(?:    .*\n)*?    .*course_lib\.widgets import (\w+)", text, flags=re.M)
    assert panels, f"{name}: no panel; add one built by course_lib.widgets, guarded by `if INTERACTIVE:`"


def test_grade_ids_are_unique_across_the_course():
    owner: dict[str, str] = {}
    for name, py in MASTERS.items():
        if not py.is_file():
            continue
        for g in B.load_master(py).graded:
            assert g.grade_id not in owner, f"grade_id {g.grade_id!r} is used in {owner.get(g.grade_id)} and {name}"
            owner[g.grade_id] = name
