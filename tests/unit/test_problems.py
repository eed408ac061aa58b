"""Bad input is counted always and logged once per state change."""

from __future__ import annotations

import logging

import pytest

from edged.problems import ProblemLog

pytestmark = pytest.mark.serial


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_failure_warns_then_debug_then_one_recovery(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    problems = ProblemLog(logging.getLogger("test.problems"), "dev", quiet=10.0, clock=clock)
    caplog.set_level(logging.DEBUG, "test.problems")
    for _ in range(3):
        problems.fail("checksum", "checksum mismatch")
    problems.ok("checksum", "parse")  # too soon: still failing
    clock.now = 5.0
    problems.fail("checksum", "checksum mismatch")
    clock.now = 14.0
    problems.ok("checksum")  # 9 s quiet: not yet
    clock.now = 15.0
    problems.ok("checksum")
    problems.ok("checksum")  # already recovered: silent
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert records == [
        ("WARNING", "dev: checksum mismatch"),
        ("DEBUG", "dev: checksum mismatch (2 so far)"),
        ("DEBUG", "dev: checksum mismatch (3 so far)"),
        ("DEBUG", "dev: checksum mismatch (4 so far)"),
        ("INFO", "dev: checksum recovered after 4 failure(s)"),
    ]
    assert problems.counts == {"checksum": 4}
    assert problems.failing == {}


def test_kinds_are_independent(caplog: pytest.LogCaptureFixture) -> None:
    problems = ProblemLog(logging.getLogger("test.problems"), "dev", quiet=0.0)
    caplog.set_level(logging.INFO, "test.problems")
    problems.fail("parse", "bad frame")
    problems.fail("overlong", "too long")
    problems.ok("parse")
    assert set(problems.failing) == {"overlong"}
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "INFO"]
