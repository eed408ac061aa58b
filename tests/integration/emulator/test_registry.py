"""The device registry and the waiting helpers, on a real broker."""

from __future__ import annotations

import threading
import time

import pytest

from edged.emulator import EmulatorError, PlatformEmulator, ReceivedEvent, Record, Violation
from tests.integration.emulator.helpers import (
    BOILER,
    BOILER_READING,
    PATH,
    PUMP,
    RawClient,
    event_body,
)

pytestmark = pytest.mark.integration


def test_registry_auto_registers_every_device_seen(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    before = time.time()
    gateway.publish(BOILER_READING, event_body(t=1))
    gateway.publish(f"iot-2/{PATH[PUMP]}/evt/status/fmt/json", event_body(on=True))
    gateway.publish(BOILER_READING, event_body(t=2))
    gateway.publish(f"iot-2/{PATH[BOILER]}/evt/alarm/fmt/json", event_body(level="high"))
    gateway.publish(f"iotdevice-1/{PATH[PUMP]}/notify", {"d": {"field": "x", "value": 1}})

    emu.wait_for_events(4)
    emu.wait_for_dm("notify", device=PUMP)
    devices = emu.devices
    assert devices.keys() == {BOILER, PUMP}
    boiler, pump = devices[BOILER], devices[PUMP]
    assert boiler.event_count == 3
    assert before <= boiler.first_seen <= boiler.last_seen
    assert boiler.last_events["reading"].values == {"t": 2}
    assert boiler.last_events["alarm"].values == {"level": "high"}
    assert (pump.event_count, pump.dm_count) == (1, 1)
    assert emu.device(BOILER) == boiler
    assert not emu.is_managed(BOILER)


def test_wait_for_events_filters_and_counts_what_came_before(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    for value in range(5):
        gateway.publish(BOILER_READING, event_body(t=value))
    gateway.publish(f"iot-2/{PATH[PUMP]}/evt/reading/fmt/json", event_body(t=99))

    odd = emu.wait_for_events(2, device="boiler-1", predicate=lambda e: e.values["t"] % 2 == 1)
    assert [e.values["t"] for e in odd] == [1, 3]
    [pump] = emu.wait_for_events(device=PUMP, event="reading")
    assert pump.values == {"t": 99}


def test_wait_for_events_waits_for_events_still_to_come(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    def publish_later() -> None:
        time.sleep(0.1)
        for value in range(50):
            gateway.publish(BOILER_READING, event_body(t=value), qos=0)

    thread = threading.Thread(target=publish_later)
    thread.start()
    try:
        events = emu.wait_for_events(50, event="reading")
    finally:
        thread.join()
    assert [e.values["t"] for e in events] == list(range(50))


def test_wait_timeout_says_what_came(emu: PlatformEmulator, gateway: RawClient) -> None:
    gateway.publish(BOILER_READING, event_body(t=1))
    emu.wait_for_events()

    with pytest.raises(TimeoutError) as caught:
        emu.wait_for_events(device=PUMP, timeout=0.2)
    assert "0 of 1" in str(caught.value)
    assert "modbus-meter/boiler-1:reading x1" in str(caught.value)


def test_clear_forgets_messages_but_keeps_the_registry(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.publish(BOILER_READING, event_body(t=1), retain=True)
    emu.wait_for_violations()
    emu.clear()
    assert (emu.events, emu.violations, emu.publications) == ([], [], [])
    assert BOILER in emu.devices

    gateway.publish(BOILER_READING, event_body(t=2))
    [event] = emu.wait_for_events()
    assert event.values == {"t": 2}
    emu.clear(registry=True)
    assert emu.devices == {}


def test_listeners_see_records_in_order(emu: PlatformEmulator, gateway: RawClient) -> None:
    seen: list[Record] = []

    def broken(record: Record) -> None:
        raise RuntimeError("listener bug")

    remove = emu.add_listener(seen.append)
    emu.add_listener(broken)  # a broken listener changes nothing
    gateway.publish(BOILER_READING, event_body(t=1), retain=True)
    emu.wait_for(lambda: len(seen) == 2, what="two records")
    remove()
    gateway.publish(BOILER_READING, event_body(t=2))
    emu.wait_for_events(2)

    event, violation = seen
    assert isinstance(event, ReceivedEvent)
    assert isinstance(violation, Violation)
    assert violation[:2] == (BOILER_READING, "retain")
    assert len(seen) == 2


def test_sending_from_a_listener_is_refused_not_deadlocked(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    errors: list[Exception] = []
    refused = threading.Event()

    def send_back(record: Record) -> None:
        if isinstance(record, ReceivedEvent):
            try:
                emu.send_command(record.device, "echo", {})
            except EmulatorError as exc:
                errors.append(exc)
                refused.set()

    emu.add_listener(send_back)
    gateway.publish(BOILER_READING, event_body(t=1))
    assert refused.wait(5)
    assert "listener" in str(errors[0])
