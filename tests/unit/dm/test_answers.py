"""The answer book: repeats of a request are answered alike, never carried out twice; bounded."""

from __future__ import annotations

from edged.dm.answers import KEEP_ANSWER_BYTES, AnswerBook
from edged.model import DeviceIdentity

S1 = DeviceIdentity("sensor", "S1")
S2 = DeviceIdentity("sensor", "S2")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_sight_then_running_then_answered() -> None:
    book = AnswerBook(clock=Clock())
    assert book.check_in(S1, "r") is None
    running = book.check_in(S1, "r")
    assert running is not None and running.running
    book.done(S1, "r", 202, b'{"rc":202}')
    done = book.check_in(S1, "r")
    assert done is not None and (done.outcome, done.payload) == (202, b'{"rc":202}')
    book.done(S1, "r", 500, b"x")  # only the first answer counts
    assert book.check_in(S1, "r").outcome == 202  # type: ignore[union-attr]


def test_per_device() -> None:
    book = AnswerBook(clock=Clock())
    assert book.check_in(S1, "r") is None
    assert book.check_in(S2, "r") is None


def test_expiry_and_bound() -> None:
    clock = Clock()
    book = AnswerBook(seconds=10, entries=3, clock=clock)
    for name in "abc":
        book.check_in(S1, name)
    book.check_in(S1, "d")  # over the bound: "a" forgotten
    assert len(book) == 3
    assert book.check_in(S1, "a") is None  # new again
    clock.now = 11
    assert book.check_in(S1, "z") is None
    assert len(book) == 1


def test_large_answers_kept_by_code_only_and_forget() -> None:
    book = AnswerBook(clock=Clock())
    book.done(S1, "r", 200, b"x" * (KEEP_ANSWER_BYTES + 1))
    seen = book.check_in(S1, "r")
    assert seen is not None and (seen.outcome, seen.payload) == (200, None)
    book.forget(S1, "r")
    assert book.check_in(S1, "r") is None
