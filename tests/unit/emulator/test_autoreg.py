"""The emulated platform's auto-registration model, on a fake clock."""

from __future__ import annotations

import pytest

from edged.emulator import notify as n
from edged.emulator.autoreg import RULE_REGISTRATION_CAP, AutoRegistration
from edged.model import DeviceIdentity

GATEWAY = DeviceIdentity("test-gw", "gw-0001")
BOILER = DeviceIdentity("modbus-meter", "boiler-1")
PUMP = DeviceIdentity("pump", "pump-7")
BOILER_TOPIC = "iot-2/type/modbus-meter/id/boiler-1/evt/reading/fmt/json"
PUMP_TOPIC = "iot-2/type/pump/id/pump-7/evt/reading/fmt/json"
WALL = 1_800_000_000.0  # what the emulator passes as the arrival time (time.time())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def model(clock: Clock, *, delay: float = 5.0, max_pending: int = 128) -> AutoRegistration:
    return AutoRegistration(
        GATEWAY, org="testorg", delay=delay, max_pending=max_pending, clock=clock
    )


def meter(i: int) -> DeviceIdentity:
    return DeviceIdentity("meter", f"m{i}")


def meter_topic(i: int) -> str:
    return f"iot-2/type/meter/id/m{i}/evt/reading/fmt/json"


def test_a_new_device_is_pending_for_the_delay_then_registered() -> None:
    clock = Clock()
    reg = model(clock)
    assert reg.state(BOILER) == "unknown"

    assert reg.admit(BOILER, BOILER_TOPIC, WALL).accepted
    assert reg.state(BOILER) == "pending"
    assert reg.pending_count(GATEWAY) == 1
    clock.now = 104.999
    assert reg.admit(BOILER, BOILER_TOPIC, WALL).accepted  # delivered while pending
    assert reg.state(BOILER) == "pending"
    assert reg.next_change() == 105.0

    clock.now = 105.0
    assert reg.state(BOILER) == "registered"
    assert reg.pending_count(GATEWAY) == 0
    assert reg.next_change() is None
    assert reg.pending_history(GATEWAY) == [(100.0, 0), (100.0, 1), (105.0, 0)]
    assert reg.dropped == []


def test_the_gateway_itself_is_registered_and_counts_nothing() -> None:
    reg = model(Clock())
    admission = reg.admit(GATEWAY, "iot-2/type/test-gw/id/gw-0001/evt/status/fmt/json", WALL)
    assert admission.accepted
    assert reg.state(GATEWAY) == "registered"
    assert reg.pending_count(GATEWAY) == 0
    assert reg.pending_count(BOILER) == 0  # not a gateway the model knows
    with pytest.raises(ValueError, match="registered"):
        reg.fail_registration(GATEWAY, n.INTERNAL_ERROR, window=1)


def test_the_history_records_each_registration_at_its_due_time_even_when_read_late() -> None:
    clock = Clock()
    reg = model(clock, delay=2.0)
    reg.admit(BOILER, BOILER_TOPIC, WALL)
    clock.now = 101.0
    reg.admit(PUMP, PUMP_TOPIC, WALL)
    clock.now = 500.0
    assert reg.pending_history(GATEWAY) == [
        (100.0, 0),
        (100.0, 1),
        (101.0, 2),
        (102.0, 1),
        (103.0, 0),
    ]
    assert reg.max_pending_seen(GATEWAY) == 2


def test_zero_delay_registers_at_once() -> None:
    reg = model(Clock(), delay=0)
    reg.admit(BOILER, BOILER_TOPIC, WALL)
    assert reg.state(BOILER) == "registered"
    assert reg.max_pending_seen(GATEWAY) == 1


def test_beyond_the_cap_is_a_violation_but_still_pending() -> None:
    clock = Clock()
    reg = model(clock, max_pending=3)
    admissions = [reg.admit(meter(i), meter_topic(i), WALL) for i in range(5)]

    assert all(a.accepted for a in admissions)
    assert [a.violation for a in admissions[:3]] == [None, None, None]
    fourth = admissions[3].violation
    assert fourth is not None
    assert (fourth.topic, fourth.rule) == (meter_topic(3), RULE_REGISTRATION_CAP)
    assert "meter/m3" in fourth.detail
    assert "3 registrations" in fourth.detail
    assert admissions[4].violation is not None
    assert reg.pending_count(GATEWAY) == 5
    assert reg.max_pending_seen(GATEWAY) == 5

    clock.now = 105.0
    assert reg.pending_count(GATEWAY) == 0
    assert reg.max_pending_seen(GATEWAY) == 5  # a high-water mark
    assert reg.admit(meter(5), meter_topic(5), WALL).violation is None


def test_a_failed_attempt_drops_the_message_and_notifies_the_gateway() -> None:
    clock = Clock()
    reg = model(clock)
    reg.fail_registration(BOILER, n.INVALID_DEVICE_TYPE, window=10, rc=21)
    assert reg.state(BOILER) == "unknown"  # nothing was attempted yet

    admission = reg.admit(BOILER, BOILER_TOPIC, WALL)

    assert not admission.accepted
    assert admission.dropped is not None
    assert admission.dropped.reason == "registration-failed"
    assert (admission.dropped.device, admission.dropped.topic) == (BOILER, BOILER_TOPIC)
    assert admission.dropped.message == n.INVALID_DEVICE_TYPE
    assert admission.dropped.at == WALL
    sent = admission.notify
    assert sent is not None
    assert (sent.gateway, sent.topic) == (GATEWAY, "iot-2/type/test-gw/id/gw-0001/notify")
    assert sent.body == {
        "Request": "publish",
        "Time": n.iso_time(WALL),
        "Topic": BOILER_TOPIC,
        "Type": "modbus-meter",
        "Id": "boiler-1",
        "Client": "g:testorg:test-gw:gw-0001",
        "RC": 21,
        "Message": "Device type is not valid.",
    }
    assert reg.state(BOILER) == "failed"
    assert reg.pending_count(GATEWAY) == 0
    assert reg.dropped == [admission.dropped]


def test_the_window_drops_everything_with_at_most_one_notify_a_second() -> None:
    clock = Clock()
    reg = model(clock, delay=1.0)
    reg.fail_registration(BOILER, n.INTERNAL_ERROR, window=10)
    assert reg.admit(BOILER, BOILER_TOPIC, WALL).notify is not None
    notified = []
    for now in (100.2, 100.9, 101.0, 101.5, 102.5, 109.99):
        clock.now = now
        admission = reg.admit(BOILER, BOILER_TOPIC, WALL + now)
        assert not admission.accepted
        assert admission.dropped is not None
        assert admission.dropped.reason == "failure-window"
        if admission.notify is not None:
            notified.append(now)
            assert admission.notify.body["Message"] == n.INTERNAL_ERROR
    assert notified == [101.0, 102.5, 109.99]
    assert reg.next_change() == 110.0
    assert len(reg.dropped) == 7
    assert reg.state(PUMP) == "unknown"  # other devices are not affected
    assert reg.admit(PUMP, PUMP_TOPIC, WALL).accepted

    clock.now = 110.0  # the window is over: the device is unknown, the next message a new try
    assert reg.state(BOILER) == "unknown"
    admission = reg.admit(BOILER, BOILER_TOPIC, WALL)
    assert admission.accepted
    assert admission.notify is None
    assert reg.state(BOILER) == "pending"
    clock.now = 111.0
    assert reg.state(BOILER) == "registered"
    with pytest.raises(ValueError, match="registered"):
        reg.fail_registration(BOILER, n.INTERNAL_ERROR, window=1)


def test_times_fails_that_many_attempts_in_a_row() -> None:
    clock = Clock()
    reg = model(clock, delay=0)
    reg.fail_registration(BOILER, n.GATEWAY_DEVICE_LIMIT, window=2, times=2)
    reg.fail_registration(BOILER, n.ORG_DEVICE_LIMIT, window=3)  # queued behind those

    outcomes = []
    for now in (100.0, 101.0, 102.0, 103.0, 104.0, 106.0, 107.0):
        clock.now = now
        admission = reg.admit(BOILER, BOILER_TOPIC, WALL)
        outcomes.append(admission.dropped.reason if admission.dropped else "accepted")
    assert outcomes == [
        "registration-failed",  # attempt 1, window to 102
        "failure-window",
        "registration-failed",  # attempt 2, window to 104
        "failure-window",
        "registration-failed",  # attempt 3 (the queued failure), window to 107
        "failure-window",
        "accepted",  # attempt 4
    ]
    assert [d.message for d in reg.dropped if d.reason == "registration-failed"] == [
        n.GATEWAY_DEVICE_LIMIT,
        n.GATEWAY_DEVICE_LIMIT,
        n.ORG_DEVICE_LIMIT,
    ]
    assert reg.state(BOILER) == "registered"


def test_a_zero_window_drops_only_the_failing_message() -> None:
    clock = Clock()
    reg = model(clock)
    reg.fail_registration(BOILER, n.INVALID_DEVICE_ID, window=0)
    assert not reg.admit(BOILER, BOILER_TOPIC, WALL).accepted
    assert reg.admit(BOILER, BOILER_TOPIC, WALL).accepted


def test_clear_forgets_records_and_with_states_the_registrations() -> None:
    clock = Clock()
    reg = model(clock)
    reg.fail_registration(PUMP, n.INTERNAL_ERROR, window=60, times=2)
    reg.admit(BOILER, BOILER_TOPIC, WALL)
    reg.admit(PUMP, PUMP_TOPIC, WALL)
    clock.now = 101.0

    reg.clear(states=False)
    assert reg.dropped == []
    assert reg.pending_history(GATEWAY) == [(101.0, 1)]
    assert reg.max_pending_seen(GATEWAY) == 1
    assert (reg.state(BOILER), reg.state(PUMP)) == ("pending", "failed")

    reg.clear(states=True)
    assert (reg.state(BOILER), reg.state(PUMP)) == ("unknown", "unknown")
    assert reg.pending_count(GATEWAY) == 0
    assert reg.admit(PUMP, PUMP_TOPIC, WALL).accepted  # the injected failure is gone too


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"delay": -1.0}, "delay"), ({"delay": float("nan")}, "delay"), ({"max_pending": -1}, "max")],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    settings: dict[str, float] = {"delay": 1.0} | kwargs
    with pytest.raises(ValueError, match=message):
        AutoRegistration(GATEWAY, org="o", clock=Clock(), **settings)  # type: ignore[arg-type]


def test_bad_failures_are_refused() -> None:
    reg = model(Clock())
    with pytest.raises(ValueError, match="window"):
        reg.fail_registration(BOILER, n.INTERNAL_ERROR, window=-1)
    with pytest.raises(ValueError, match="window"):
        reg.fail_registration(BOILER, n.INTERNAL_ERROR, window=1, times=-1)
    reg.admit(BOILER, BOILER_TOPIC, WALL)
    with pytest.raises(ValueError, match="pending"):
        reg.fail_registration(BOILER, n.INTERNAL_ERROR, window=1)
