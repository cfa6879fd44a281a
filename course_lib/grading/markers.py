"""The nbgrader-style region markers and what the build does with them.

A solution region sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; a
hidden-test region between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.
Each marker is a whole line of its own (indentation allowed). Regions do not nest.

A marker that is *almost* right (``## BEGIN SOLUTION``, ``### BEGIN SOLUTIONS``,
a trailing comment) is an error rather than plain text: a misspelt marker would
otherwise ship the solution to every student.
"""

from __future__ import annotations

import re

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"

#: What replaces a solution region in the students' copy (code cells).
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
#: What replaces a solution region in a markdown cell.
TEXT_STUB = ("YOUR ANSWER HERE",)

# A comment line naming a region in capitals is meant as a marker; its exact
# spelling is checked separately so that a near miss fails loudly.
_LOOKS_LIKE_MARKER = re.compile(r"^\s*#.*\b(BEGIN|END)\s+(SOLUTIONS?|HIDDEN\s+TESTS?)\b")
_EXACT = {BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN}


class MarkerError(ValueError):
    """A marker is misspelt, unbalanced or nested; the message says where and how to fix it."""


def _marker(line: str, where: str, lineno: int) -> str | None:
    """The exact marker on ``line``, None if the line holds no marker, or raise if misspelt."""
    stripped = line.strip()
    if stripped in _EXACT:
        return stripped
    if _LOOKS_LIKE_MARKER.search(line):
        raise MarkerError(
            f"{where}, line {lineno}: {stripped!r} looks like a grading marker but is not spelt "
            f"exactly; write one of {sorted(_EXACT)} alone on its line"
        )
    return None


def find_regions(source: str, where: str = "cell") -> list[tuple[str, int, int]]:
    """Return ``(kind, begin_line, end_line)`` for each region (0-based line numbers).

    ``kind`` is ``"solution"`` or ``"hidden"``. Raises MarkerError for an END without a
    BEGIN, a region left open, or one region inside another.
    """
    regions: list[tuple[str, int, int]] = []
    open_kind: str | None = None
    open_at = -1
    for i, line in enumerate(source.split("\n")):
        marker = _marker(line, where, i + 1)
        if marker is None:
            continue
        kind = "solution" if "SOLUTION" in marker else "hidden"
        if marker.startswith("### BEGIN"):
            if open_kind is not None:
                raise MarkerError(
                    f"{where}, line {i + 1}: {marker!r} inside the region opened on line "
                    f"{open_at + 1}; close that region first (regions do not nest)"
                )
            open_kind, open_at = kind, i
        else:
            if open_kind != kind:
                raise MarkerError(
                    f"{where}, line {i + 1}: {marker!r} without a matching "
                    f"{BEGIN_SOLUTION if kind == 'solution' else BEGIN_HIDDEN!r} above it"
                )
            regions.append((kind, open_at, i))
            open_kind = None
    if open_kind is not None:
        end = END_SOLUTION if open_kind == "solution" else END_HIDDEN
        raise MarkerError(f"{where}, line {open_at + 1}: region never closed; add {end!r} after it")
    return regions


def has_regions(source: str, kind: str, where: str = "cell") -> bool:
    """Whether ``source`` holds at least one region of ``kind`` (``solution``/``hidden``)."""
    return any(k == kind for k, _, _ in find_regions(source, where))


def _rewrite(source: str, where: str, keep: str, stub: tuple[str, ...] | None) -> str:
    """Core of the three transforms below.

    Regions of kind ``keep`` lose their marker lines only; every other region is
    dropped, replaced by ``stub`` (indented like its BEGIN marker) when given.
    """
    lines = source.split("\n")
    regions = find_regions(source, where)
    out: list[str] = []
    pos = 0
    for kind, begin, end in regions:
        out.extend(lines[pos:begin])
        if kind == keep:
            out.extend(lines[begin + 1 : end])
        elif kind == "solution" and stub is not None:
            indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
            out.extend(indent + s for s in stub)
        pos = end + 1
    out.extend(lines[pos:])
    return _trim("\n".join(out))


def _trim(source: str) -> str:
    """Drop trailing blank lines (a region removed at the end of a cell leaves some)."""
    return source.rstrip()


def student_source(source: str, where: str = "cell", markdown: bool = False) -> str:
    """The exercise version: solutions become stubs, hidden tests disappear."""
    stub = TEXT_STUB if markdown else CODE_STUB
    return _rewrite(source, where, keep="none", stub=stub)


def solution_source(source: str, where: str = "cell") -> str:
    """The solutions version: solution code kept without its markers, hidden tests gone."""
    return _rewrite(source, where, keep="solution", stub=None)


def grading_source(source: str, where: str = "cell") -> str:
    """The version the grader runs: everything kept, hidden tests included, markers removed."""
    lines = source.split("\n")
    drop = set()
    for _, begin, end in find_regions(source, where):
        drop.update((begin, end))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)
