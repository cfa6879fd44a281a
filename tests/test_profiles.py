"""COURSE_PROFILE / COURSE_INTERACTIVE: forcing a notebook's parameters from the environment (for nbval)."""

from __future__ import annotations

import pytest

from course_lib.profiles import from_env, resolve

TABLE = {"smoke": {"epochs": 1}, "quick": {"epochs": 8}, "full": {"epochs": 20}}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.delenv("COURSE_INTERACTIVE", raising=False)


def test_unset_environment_changes_nothing():
    assert resolve("quick", TABLE) == {"epochs": 8}
    assert from_env("quick", True) == ("quick", True)


def test_course_profile_forces_the_profile_and_keeps_overrides(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert resolve("quick", TABLE) == {"epochs": 1}
    assert resolve("full", TABLE, epochs=3) == {"epochs": 3}
    assert from_env("quick", True) == ("smoke", True)


def test_course_interactive_zero_turns_widgets_off(monkeypatch):
    monkeypatch.setenv("COURSE_INTERACTIVE", "0")
    assert from_env("quick", True) == ("quick", False)
    monkeypatch.setenv("COURSE_INTERACTIVE", "1")
    assert from_env("quick", False) == ("quick", True)


@pytest.mark.parametrize("var, value, fix", [
    ("COURSE_PROFILE", "smok", "set it to one of smoke, quick, full or unset it"),
    ("COURSE_INTERACTIVE", "maybe", "set it to 0 or 1, or unset it"),
])
def test_bad_environment_values_name_the_fix(monkeypatch, var, value, fix):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=fix):
        from_env("quick", True)


def test_empty_course_profile_counts_as_unset(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "")
    assert resolve("quick", TABLE) == {"epochs": 8}
