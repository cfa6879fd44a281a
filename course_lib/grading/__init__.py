"""Exercises, solutions and headless grading, from one master per notebook.

- ``markers``     the ``### BEGIN SOLUTION`` / ``### BEGIN HIDDEN TESTS`` regions
- ``build``       ``course build``: exercises/ and solutions/ from notebooks/*.py
- ``submission``  reading submissions defensively; merging them with the master's tests
- ``sandbox``     papermill in a child process with time and memory limits
- ``grade``       ``course grade``: scores, grades.csv, per-student feedback

Instructors' walk-through: ``docs/instructors.md``. Submodules are imported on
demand, so ``import course_lib.grading`` is cheap.
"""

from __future__ import annotations


def cli_build(argv: list[str]) -> int:
    """``course build ...`` (see ``course_lib.grading.build.cli``)."""
    from course_lib.grading.build import cli

    return cli(argv)


def cli_grade(argv: list[str]) -> int:
    """``course grade ...`` (see ``course_lib.grading.grade.cli``)."""
    from course_lib.grading.grade import cli

    return cli(argv)


__all__ = ["cli_build", "cli_grade"]
