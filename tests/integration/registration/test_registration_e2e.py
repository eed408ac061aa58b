"""Auto-registration end to end: the daemon as a process, the emulator playing the platform.

The emulator registers new devices after a delay, counts pending registrations per gateway and
drops the messages of a device whose registration it was told to fail (with a notify), as the
platform does (PROTOCOL.md section 3).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edged.emulator import PlatformEmulator, notify
from edged.model import DeviceIdentity
from tests.support.broker import APP_USER, Broker
from tests.support.daemon import GATEWAY, ORG, running_daemon, write_config

pytestmark = pytest.mark.integration

GW = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])
DELAY = 0.3


@pytest.fixture
def platform(broker: Broker) -> Iterator[Callable[..., PlatformEmulator]]:
    """Emulators with auto-registration on (``registration_delay`` and ``max_pending``)."""
    started: list[PlatformEmulator] = []

    def make(delay: float = DELAY, max_pending: int = 128) -> PlatformEmulator:
        emulator = PlatformEmulator(
            broker.host,
            broker.port,
            ORG,
            app_id=f"autoreg{len(started)}",
            username=APP_USER,
            password=broker.app_password,
            gateway=GW,
            registration_delay=delay,
            max_pending=max_pending,
        )
        emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


def _sim(device_id: str, interval: float = 0.5) -> dict[str, Any]:
    return {
        "id": device_id,
        "type": "sim",
        "adapter": "simulated",
        "simulated": {"interval": interval, "values": {"n": {"kind": "counter", "max": 10**9}}},
    }


def _counts(emulator: PlatformEmulator, device: str) -> list[int]:
    return [int(e.values["n"]) for e in emulator.events if e.device.device_id == device]


def _gapless(values: list[int]) -> bool:
    """Every reading from 0 up to the last one seen arrived (duplicates allowed)."""
    return bool(values) and set(values) == set(range(max(values) + 1))


def test_300_new_devices_register_through_the_cap_with_every_event_delivered(
    tmp_path: Path, broker: Broker, platform: Callable[..., PlatformEmulator]
) -> None:
    cap = 64
    emulator = platform(max_pending=cap)
    ids = [f"s{i:03d}" for i in range(300)]
    config = write_config(
        tmp_path,
        broker,
        [_sim(i, interval=0.5) for i in ids],
        extra={"registration": {"max_pending": cap, "confirm_after": 2 * DELAY}},
    )
    with running_daemon(config):
        emulator.wait_registered([DeviceIdentity("sim", i) for i in ids], timeout=60)
        emulator.wait_for(
            lambda: all(len(_counts(emulator, i)) >= 3 for i in ids), 30, "3 readings each"
        )
    assert emulator.max_pending_seen() <= cap
    assert emulator.max_pending_seen() > cap // 2  # the cap was really used, not trickled
    assert emulator.dropped() == []
    assert all(_gapless(_counts(emulator, i)) for i in ids)
    assert emulator.violations == []


def test_a_refused_device_is_held_then_delivered_in_full_and_others_keep_going(
    tmp_path: Path, broker: Broker, platform: Callable[..., PlatformEmulator]
) -> None:
    emulator = platform()
    refused = DeviceIdentity("sim", "refused")
    window = 2.0
    emulator.fail_registration(refused, notify.INTERNAL_ERROR, window=window)
    config = write_config(
        tmp_path,
        broker,
        [_sim("refused", interval=0.1), _sim("fine", interval=0.1)],
        extra={
            "registration": {
                "confirm_after": 2 * DELAY,
                "retry_initial": window + 1.0,
                "retry_max": 60,
            }
        },
    )
    with running_daemon(config) as daemon:
        emulator.wait_for(lambda: emulator.dropped(refused), 10, "the probe dropped")
        refused_at = time.monotonic()
        emulator.wait_for(lambda: len(_counts(emulator, "fine")) >= 20, 10, "fine keeps going")
        assert _counts(emulator, "refused") == []  # held, not sent into the drop window
        emulator.wait_registered([refused], timeout=20)
        held_for = time.monotonic() - refused_at
        emulator.wait_for(
            lambda: len(_counts(emulator, "refused")) >= 40, 20, "the backlog delivered"
        )
        daemon.wait_for_output("refused")
    assert held_for >= window
    assert [d.reason for d in emulator.dropped(refused)] == ["registration-failed"]
    assert _gapless(_counts(emulator, "refused"))  # the dropped probe was sent again
    assert _gapless(_counts(emulator, "fine"))
    assert emulator.violations == []


def test_an_invalid_device_type_is_held_for_good_and_shown_in_status(
    tmp_path: Path, broker: Broker, platform: Callable[..., PlatformEmulator]
) -> None:
    emulator = platform()
    bad = DeviceIdentity("sim", "bad-type")
    emulator.fail_registration(bad, notify.INVALID_DEVICE_TYPE, window=0.5)
    config = write_config(
        tmp_path,
        broker,
        [_sim("bad-type", interval=0.1), _sim("good", interval=0.1)],
        extra={
            "registration": {"confirm_after": 2 * DELAY, "retry_initial": 0.5},
            "status": {"interval": 1},
        },
    )
    with running_daemon(config):
        emulator.wait_for(lambda: emulator.dropped(bad), 10, "the probe dropped")
        status = emulator.wait_for_events(
            device=GW,
            event="status",
            predicate=lambda e: e.values["registration"]["counts"]["permanent"] == 1,
            timeout=15,
        )[0]
        time.sleep(1.5)  # three times the window and the retry time: still never retried
    listed = status.values["registration"]["devices"]
    assert [d["device"] for d in listed if d["state"] == "permanent"] == ["sim/bad-type"]
    assert len(emulator.dropped(bad)) == 1
    assert _counts(emulator, "bad-type") == []
    assert _gapless(_counts(emulator, "good"))


def test_malformed_notify_messages_are_ignored_with_one_line_each_kind(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    config = write_config(tmp_path, broker, [_sim("s1", interval=0.1)])
    with running_daemon(config) as daemon:
        emulator.wait_for_events(device="s1")
        topic = f"iot-2/type/{GW.type_id}/id/{GW.device_id}/notify"
        _publish_raw(broker, topic, [b"not json", b"not json either", b"[1, 2]", b"[3]"])
        _publish_raw(broker, topic, [b"x" * 100_000])
        before = len(emulator.events)
        emulator.wait_for(lambda: len(emulator.events) > before + 3, 5, "events go on")
        assert daemon.process.poll() is None
        output = daemon.output
    ignored = [line for line in output.splitlines() if "WARNING edged.notify: ignored" in line]
    assert len(ignored) == 3, ignored  # one line per kind: not JSON, not an object, too large


def test_a_restart_does_not_throttle_registered_devices_again(
    tmp_path: Path, broker: Broker, platform: Callable[..., PlatformEmulator]
) -> None:
    emulator = platform()
    ids = [f"r{i}" for i in range(5)]
    devices = [_sim(i, interval=0.1) for i in ids]
    first = write_config(tmp_path, broker, devices, extra={"registration": {"confirm_after": 1}})
    with running_daemon(first):
        emulator.wait_registered([DeviceIdentity("sim", i) for i in ids], timeout=20)
        emulator.wait_for(lambda: _saved(tmp_path) == [f"sim/{i}" for i in ids], 10, "saved")
    # A second run whose confirmation would take a minute: registered devices do not wait for it.
    second = write_config(tmp_path, broker, devices, extra={"registration": {"confirm_after": 60}})
    emulator.clear()
    with running_daemon(second):
        emulator.wait_for(
            lambda: all(len(_counts(emulator, i)) >= 5 for i in ids), 10, "5 readings each"
        )


def _saved(directory: Path) -> list[str]:
    try:
        return sorted(json.loads((directory / "registered.json").read_text())["registered"])
    except (FileNotFoundError, ValueError):
        return []


def _publish_raw(broker: Broker, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-notify")
    client.username_pw_set(APP_USER, broker.app_password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()
