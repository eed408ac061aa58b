"""Diagnostics: state changes become error codes and logs, rate-limited and coalesced per device
(fake clocks)."""

from __future__ import annotations

from edged.dm.diag import (
    ADD_ERROR_CODE,
    ADD_LOG,
    CLEAR_ERROR_CODES,
    MAX_MESSAGE,
    DiagTracker,
)
from edged.model import DeviceIdentity, DeviceState

WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z
A = DeviceIdentity("sensor", "a")
B = DeviceIdentity("sensor", "b")
ONLINE, OFFLINE, DOWN = DeviceState.ONLINE, DeviceState.OFFLINE, DeviceState.DOWN


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker(clock: Clock, min_interval: float = 60.0) -> DiagTracker:
    return DiagTracker(min_interval=min_interval, clock=clock, wall=lambda: WALL + clock.now)


def suffixes(messages: list[tuple[DeviceIdentity, str, dict[str, object]]]) -> list[str]:
    return [suffix for _, suffix, _ in messages]


def test_offline_sends_code_and_warning_log_at_once() -> None:
    clock = Clock()
    t = tracker(clock)
    assert t.next_due() is None
    t.state_changed(A, OFFLINE, "not heard for 60 s")
    assert t.next_due() == 100.0
    assert t.take_due() == [
        (A, ADD_ERROR_CODE, {"errorCode": 1}),
        (
            A,
            ADD_LOG,
            {
                "message": "offline: not heard for 60 s",
                "timestamp": "2027-01-15T08:01:40.000Z",
                "severity": 1,
            },
        ),
    ]
    assert t.take_due() == []
    assert t.next_due() is None


def test_down_is_an_error_and_recovery_clears() -> None:
    clock = Clock()
    t = tracker(clock, min_interval=0.0)
    t.state_changed(A, DOWN, "cannot open /dev/ttyUSB0: [Errno 2] No such file")
    messages = t.take_due()
    assert messages[0] == (A, ADD_ERROR_CODE, {"errorCode": 2})
    assert messages[1][2]["severity"] == 2
    clock.now += 1
    t.state_changed(A, ONLINE, "")
    assert t.take_due() == [
        (A, CLEAR_ERROR_CODES, {}),
        (
            A,
            ADD_LOG,
            {"message": "recovered", "timestamp": "2027-01-15T08:01:41.000Z", "severity": 0},
        ),
    ]


def test_online_and_starting_without_a_problem_send_nothing() -> None:
    clock = Clock()
    t = tracker(clock)
    t.state_changed(A, DeviceState.STARTING, "")
    t.state_changed(A, ONLINE, "")
    assert t.next_due() is None
    assert t.take_due() == []


def test_another_problem_replaces_the_code() -> None:
    clock = Clock()
    t = tracker(clock, min_interval=0.0)
    t.state_changed(A, OFFLINE, "not advertising")
    t.take_due()
    t.state_changed(A, DOWN, "controller wedged", error_code=5101)
    assert t.take_due()[:2] == [
        (A, CLEAR_ERROR_CODES, {}),
        (A, ADD_ERROR_CODE, {"errorCode": 5101}),
    ]
    # Same state and code, new detail: nothing new to tell.
    t.state_changed(A, DOWN, "controller still wedged", error_code=5101)
    assert t.take_due() == []


def test_changes_within_the_interval_are_coalesced_to_the_latest() -> None:
    clock = Clock()
    t = tracker(clock)
    t.state_changed(A, OFFLINE, "not heard")
    assert suffixes(t.take_due()) == [ADD_ERROR_CODE, ADD_LOG]
    clock.now += 10
    t.state_changed(A, ONLINE, "")
    clock.now += 10
    t.state_changed(A, DOWN, "adapter failed")
    assert t.take_due() == []
    assert t.next_due() == 160.0
    clock.now = 159.0
    assert t.take_due() == []
    clock.now = 160.0
    messages = t.take_due()
    assert suffixes(messages) == [CLEAR_ERROR_CODES, ADD_ERROR_CODE, ADD_LOG]
    assert messages[2][2]["message"] == "down: adapter failed"
    assert messages[2][2]["timestamp"] == "2027-01-15T08:02:00.000Z"  # when it happened
    assert t.next_due() is None


def test_flapping_device_sends_at_most_two_batches_a_minute() -> None:
    clock = Clock()
    t = tracker(clock)
    batches = []
    for i in range(100):
        t.state_changed(A, OFFLINE if i % 2 == 0 else ONLINE, f"flap {i}")
        if messages := t.take_due():
            batches.append(messages)
        clock.now += 0.59
    clock.now = 100.0 + 60.0
    if messages := t.take_due():
        batches.append(messages)
    # Sent at once: offline. It ended online (i = 99): the recovery, once the minute passed.
    assert [suffixes(batch) for batch in batches] == [
        [ADD_ERROR_CODE, ADD_LOG],
        [CLEAR_ERROR_CODES, ADD_LOG],
    ]
    assert batches[1][1][2]["message"] == "recovered: flap 99"


def test_flapping_back_to_where_it_started_sends_nothing() -> None:
    clock = Clock()
    t = tracker(clock)
    t.state_changed(A, OFFLINE, "not heard")
    t.take_due()
    for i in range(100):
        clock.now += 0.5
        t.state_changed(A, ONLINE if i % 2 == 0 else OFFLINE, "")
    assert t.next_due() is None  # it ended offline, which the platform already knows
    clock.now += 3600
    assert t.take_due() == []


def test_devices_are_limited_independently() -> None:
    clock = Clock()
    t = tracker(clock)
    t.state_changed(A, OFFLINE, "")
    assert [device for device, _, _ in t.take_due()] == [A, A]
    clock.now += 1
    t.state_changed(A, ONLINE, "")
    t.state_changed(B, DOWN, "")
    assert [device for device, _, _ in t.take_due()] == [B, B]
    assert t.next_due() == 160.0


def test_log_message_is_escaped_and_bounded() -> None:
    clock = Clock()
    t = tracker(clock)
    t.state_changed(A, DOWN, "line one\nforged line\x1b[31m" + "x" * 5000)
    message = t.take_due()[1][2]["message"]
    assert isinstance(message, str)
    assert len(message) <= MAX_MESSAGE
    assert message.startswith("down: line one\\nforged line\\x1b[31m")
    assert "\n" not in message


def test_forget() -> None:
    clock = Clock()
    t = tracker(clock)
    t.state_changed(A, OFFLINE, "")
    t.forget(A)
    t.forget(B)
    assert t.next_due() is None
    assert t.take_due() == []
