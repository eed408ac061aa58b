"""Auto-registration of a gateway's devices (PROTOCOL.md §3.1), as the gateway sees it."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from edged.emulator import PlatformEmulator
from edged.emulator import notify as n
from tests.integration.emulator.helpers import (
    BOILER,
    BOILER_READING,
    GATEWAY,
    ORG,
    PATH,
    PUMP,
    RawClient,
    event_body,
)
from tests.support.broker import APP_USER, Broker

pytestmark = pytest.mark.integration

DELAY = 0.6
PUMP_READING = f"iot-2/{PATH[PUMP]}/evt/reading/fmt/json"
NOTIFY = "iot-2/type/test-gw/id/gw-0001/notify"


@pytest.fixture
def platform(broker: Broker) -> Iterator[PlatformEmulator]:
    """An emulator that registers the gateway's new devices after DELAY, two pending at most."""
    with PlatformEmulator(
        broker.host,
        broker.port,
        ORG,
        username=APP_USER,
        password=broker.app_password,
        gateway=GATEWAY,
        registration_delay=DELAY,
        max_pending=2,
    ) as emulator:
        yield emulator


def test_a_new_device_is_pending_then_registered(
    platform: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.publish(f"iot-2/{PATH[GATEWAY]}/evt/status/fmt/json", event_body(up=True))
    gateway.publish(BOILER_READING, event_body(t=1))

    platform.wait_for_events(device=BOILER)  # delivered while pending
    assert platform.registration_state(BOILER) == "pending"
    assert platform.registration_state(GATEWAY) == "registered"
    assert platform.pending_count() == 1

    platform.wait_registered([BOILER], timeout=5)

    assert platform.pending_count(GATEWAY) == 0
    (_, before), (pending_at, one), (registered_at, after) = platform.pending_history()
    assert (before, one, after) == (0, 1, 0)
    assert registered_at - pending_at == pytest.approx(DELAY)
    assert platform.violations == []
    assert platform.dropped() == []


def test_a_waiting_predicate_sees_a_registration_fall_due(
    platform: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.publish(BOILER_READING, event_body(t=1))
    platform.wait_for_events(device=BOILER)
    # no message comes after this one: the wait must wake for the due time on its own
    platform.wait_for(lambda: platform.pending_count() == 0, timeout=5)
    assert platform.registration_state(BOILER) == "registered"


def test_more_new_devices_than_the_cap_is_a_violation(
    platform: PlatformEmulator, gateway: RawClient
) -> None:
    for device_id in ("m1", "m2", "m3"):
        gateway.publish(f"iot-2/type/meter/id/{device_id}/evt/reading/fmt/json", event_body(t=1))

    [violation] = platform.wait_for_violations(rule="registration-cap")
    assert violation.topic == "iot-2/type/meter/id/m3/evt/reading/fmt/json"
    assert len(platform.wait_for_events(count=3)) == 3  # still delivered
    assert platform.max_pending_seen(GATEWAY) == 3


def test_a_failed_registration_drops_messages_for_its_window(
    platform: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.subscribe(NOTIFY)
    platform.fail_registration(BOILER, n.INVALID_DEVICE_TYPE, window=1.0, rc=21)

    gateway.publish(BOILER_READING, event_body(t=1))

    message = gateway.next_message()
    assert message.topic == NOTIFY
    body = orjson.loads(message.payload)
    assert (body["Type"], body["Id"], body["Topic"]) == ("modbus-meter", "boiler-1", BOILER_READING)
    assert (body["Message"], body["RC"]) == ("Device type is not valid.", 21)
    assert body["Client"] == "g:testorg:test-gw:gw-0001"
    assert platform.registration_state(BOILER) == "failed"
    [dropped] = platform.dropped(BOILER)
    assert (dropped.topic, dropped.reason) == (BOILER_READING, "registration-failed")

    # within the window: dropped too, and the DM server does not answer for the device;
    # no second notify within a second of the first
    gateway.publish(BOILER_READING, event_body(t=2))
    gateway.publish(f"iotdevice-1/{PATH[BOILER]}/mgmt/manage", {"reqId": "m1", "d": {}})
    platform.wait_for(lambda: len(platform.dropped()) == 3, timeout=5)
    assert [d.reason for d in platform.dropped()[1:]] == ["failure-window"] * 2
    assert len(platform.notifies_sent) == 1
    gateway.publish(PUMP_READING, event_body(t=1))  # other devices go on as usual
    platform.wait_for_events(device=PUMP)
    assert platform.events[0].device == PUMP
    assert platform.dm_messages == []
    assert len(platform.publications) == 4  # the gateway did publish them all

    # after the window the next message is a fresh attempt, which succeeds
    platform.wait_for(lambda: platform.registration_state(BOILER) == "unknown", timeout=5)
    gateway.publish(BOILER_READING, event_body(t=3))
    [event] = platform.wait_for_events(device=BOILER)
    assert event.values == {"t": 3}
    platform.wait_registered([BOILER, PUMP], timeout=5)
    assert len(platform.dropped(BOILER)) == 3
    assert platform.dropped(PUMP) == []
    assert gateway.received.empty()  # only the one notify reached the gateway


def test_with_the_model_off_every_device_is_registered_once_seen(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    assert emu.registration_state(BOILER) == "unknown"
    gateway.publish(BOILER_READING, event_body(t=1))
    emu.wait_registered([BOILER], timeout=5)
    assert (emu.pending_count(), emu.max_pending_seen(), emu.pending_history()) == (0, 0, [])
    with pytest.raises(ValueError, match="auto-registration is off"):
        emu.fail_registration(PUMP, n.INTERNAL_ERROR, window=1)
    with pytest.raises(TimeoutError, match="pump/pump-7"):
        emu.wait_registered([BOILER, PUMP], timeout=0.2)


def test_registration_delay_needs_the_gateway(broker: Broker) -> None:
    with pytest.raises(ValueError, match="needs the gateway"):
        PlatformEmulator(
            broker.host, broker.port, ORG, username=APP_USER, password="x", registration_delay=1
        )
