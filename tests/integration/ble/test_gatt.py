"""GATT devices through the BlueZ mock: read, notify, write, disconnects, bad input, slots."""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
from typing import Any

import pytest

from edged.adapters.ble import gatt
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported
from edged.model import Command, DeviceState
from tests.integration.ble.bluez import BluezMock, uuid16
from tests.integration.ble.harness import (
    RecordingSink,
    controller,
    identity,
    run_controller,
)

pytestmark = [pytest.mark.ble, pytest.mark.integration]

ADDRESS = "F0:00:00:00:00:01"
TEMPERATURE = uuid16(0x2A6E)
HUMIDITY = uuid16(0x2A6F)
SETPOINT = "12345678-0000-4000-8000-00000000a001"
MODE = "12345678-0000-4000-8000-00000000a002"

GATT_DEVICE: dict[str, Any] = {
    "address": ADDRESS,
    "min_interval": 0,
    "rssi": False,
    "gatt": {
        "poll": "300ms",
        "io_timeout": "2s",
        "reconnect": {"initial": "100ms", "max": "200ms"},
        "characteristics": [
            {
                "uuid": "2a6e",
                "read": False,
                "notify": True,
                "fields": {"temperature": {"type": "int16", "scale": 0.01}},
            },
            {"uuid": "2a6f", "fields": {"humidity": {"type": "uint16", "scale": 0.01}}},
        ],
        "commands": {
            "setpoint": {"uuid": SETPOINT, "type": "int16", "scale": 0.1, "min": 5, "max": 30},
            "boost": {"uuid": MODE, "payload": "01", "response": False},
        },
    },
}


class Thermostat:
    """A GATT peripheral in the mock: environmental sensing plus a vendor control service."""

    def __init__(self, bluez: BluezMock, address: str = ADDRESS) -> None:
        self.bluez = bluez
        self.path = bluez.add_device(address, "Thermostat")
        sensing = bluez.add_service(self.path, 0x0010, uuid16(0x181A))
        self.temperature = bluez.add_characteristic(
            sensing, 0x0011, TEMPERATURE, ["read", "notify"], (2150).to_bytes(2, "little")
        )
        self.humidity = bluez.add_characteristic(
            sensing, 0x0013, HUMIDITY, ["read"], (4500).to_bytes(2, "little")
        )
        control = bluez.add_service(self.path, 0x0020, "12345678-0000-4000-8000-00000000a000")
        self.setpoint = bluez.add_characteristic(
            control, 0x0021, SETPOINT, ["read", "write"], b"\0\0"
        )
        self.mode = bluez.add_characteristic(
            control, 0x0023, MODE, ["write-without-response"], b"\0"
        )


def command(name: str, data: object = None, device: str = "thermostat") -> Command:
    return Command(identity(device), name, "json", b"", data)


async def test_gatt_read_notify_and_write(bluez: BluezMock) -> None:
    peripheral = Thermostat(bluez)
    runner = controller({"thermostat": GATT_DEVICE})
    sink = RecordingSink()
    device = identity("thermostat")
    async with run_controller(runner, sink):
        await sink.wait_for(
            lambda: sink.state_of(device) == (DeviceState.ONLINE, "connected"), "connection"
        )
        await sink.wait_for(
            lambda: any("humidity" in v for v in sink.values_of(device)), "a polled value"
        )
        bluez.control.SetValue(peripheral.temperature, (2275).to_bytes(2, "little"))
        await sink.wait_for(
            lambda: any(v.get("temperature") == 22.75 for v in sink.values_of(device)),
            "notification",
        )
        bluez.control.SetValue(peripheral.humidity, (4610).to_bytes(2, "little"))
        await sink.wait_for(
            lambda: any(v.get("humidity") == 46.1 for v in sink.values_of(device)), "poll"
        )

        assert await runner.execute(command("setpoint", {"value": 21.5})) == {
            "written": "d700",
            "response": True,
        }
        assert await runner.execute(command("boost")) == {"written": "01", "response": False}
        assert bluez.writes(peripheral.setpoint) == [(b"\xd7\x00", "request")]
        assert bluez.writes(peripheral.mode) == [(b"\x01", "command")]

        with pytest.raises(CommandRejected, match="above the maximum"):
            await runner.execute(command("setpoint", {"value": 45}))
        with pytest.raises(CommandRejected, match="needs a value"):
            await runner.execute(command("setpoint", {}))
        with pytest.raises(CommandUnsupported, match="known: boost, setpoint"):
            await runner.execute(command("explode", {}))
        bluez.control.SetWriteError(peripheral.setpoint, "NotPermitted")
        with pytest.raises(CommandFailed, match=r"rejected the write: .*NotPermitted"):
            await runner.execute(command("setpoint", 20))
        assert bluez.writes(peripheral.setpoint) == [(b"\xd7\x00", "request")], (
            "nothing else written"
        )
        assert sink.state_of(device) == (DeviceState.ONLINE, "connected"), (
            "a rejected write is not a fault"
        )
    merged = sink.values_of(device)[-1]
    assert set(merged) == {"temperature", "humidity"}, "notified and polled values merge"


async def test_peripheral_disconnect_and_reconnect(bluez: BluezMock) -> None:
    peripheral = Thermostat(bluez)
    runner = controller({"thermostat": GATT_DEVICE})
    sink = RecordingSink()
    device = identity("thermostat")
    async with run_controller(runner, sink):
        await sink.wait_for(
            lambda: sink.state_of(device) == (DeviceState.ONLINE, "connected"), "connection"
        )
        bluez.control.DisconnectDevice(peripheral.path)
        await sink.wait_for(
            lambda: (device, DeviceState.OFFLINE, "disconnected; reconnecting") in sink.states,
            "the drop",
        )
        with pytest.raises(CommandFailed, match="not connected"):
            await runner.execute(command("boost"))
        await sink.wait_for(
            lambda: sink.state_of(device) == (DeviceState.ONLINE, "connected"), "reconnection"
        )
        link = runner.targets[0].link
        assert link is not None
        assert link.connects == 2
        # notifications are subscribed again on the new connection
        bluez.control.SetValue(peripheral.temperature, (1999).to_bytes(2, "little"))
        await sink.wait_for(
            lambda: any(v.get("temperature") == 19.99 for v in sink.values_of(device)),
            "notification",
        )


async def test_a_peripheral_that_drops_every_connection_is_retried_ever_more_slowly(
    bluez: BluezMock, caplog: pytest.LogCaptureFixture
) -> None:
    """Accept-then-drop: the backoff must grow (it is not reset by the short-lived connects),
    and the whole episode is one log line, with no recovery line per connect."""
    peripheral = Thermostat(bluez)
    config = copy.deepcopy(GATT_DEVICE)
    config["gatt"]["reconnect"] = {"initial": "100ms", "max": "800ms"}
    runner = controller({"thermostat": config}, silence_timeout="1h")
    sink = RecordingSink()
    caplog.set_level(logging.DEBUG, logger="edged.adapters.ble")
    link = runner.targets[0].link
    assert link is not None
    connected_at: list[float] = []
    loop = asyncio.get_running_loop()
    async with run_controller(runner, sink):
        for n in range(1, 7):
            await sink.wait_for(lambda: link.connects >= n, f"connection {n}")  # noqa: B023
            connected_at.append(loop.time())
            bluez.control.DisconnectDevice(peripheral.path)  # the peripheral drops at once
        await sink.wait_for(lambda: link.retry.failures >= 6, "the sixth drop noticed")
        assert link.retry.failing
        assert link.retry.episodes == 1
        assert link.retry.backoff.attempts >= 6
    gaps = [b - a for a, b in itertools.pairwise(connected_at)]
    # Each gap holds at least the backoff delay: 0.1, 0.2, 0.4, 0.8, 0.8 s, each -20 % at worst.
    for gap, delay in zip(gaps, (0.1, 0.2, 0.4, 0.8, 0.8), strict=True):
        assert gap >= 0.8 * delay, gaps
    ours = [r for r in caplog.records if r.name == "edged.adapters.ble"]
    loud = [r.getMessage() for r in ours if r.levelno >= logging.WARNING]
    assert len(loud) == 1, loud
    assert "thermostat" in loud[0] and "retrying in" in loud[0]
    assert not [r.getMessage() for r in ours if r.levelno == logging.INFO]


async def test_vanishing_characteristic_and_refused_connections(
    bluez: BluezMock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gatt, "STABLE_AFTER", 0.3)  # recovery confirmed quickly
    peripheral = Thermostat(bluez)
    bluez.control.SetConnectError(peripheral.path, "Failed")
    runner = controller({"thermostat": GATT_DEVICE}, silence_timeout="1h")
    sink = RecordingSink()
    device = identity("thermostat")
    caplog.set_level(logging.DEBUG, logger="edged.adapters.ble")
    link = runner.targets[0].link
    assert link is not None
    async with run_controller(runner, sink):
        await sink.wait_for(
            lambda: "connect failed" in (sink.state_of(device) or (None, ""))[1],
            "refused connection",
        )
        await sink.wait_for(lambda: link.retry.failures >= 3, "retries")
        bluez.control.SetConnectError(peripheral.path, "")
        await sink.wait_for(
            lambda: sink.state_of(device) == (DeviceState.ONLINE, "connected"), "connection"
        )
        await sink.wait_for(lambda: not link.retry.failing, "recovery confirmed")

        bluez.control.RemoveGattCharacteristic(peripheral.humidity)
        await sink.wait_for(
            lambda: runner.targets[0].problems.streak(f"characteristic {HUMIDITY}") >= 2,
            "failed reads",
        )
        bluez.control.SetValue(peripheral.temperature, (2001).to_bytes(2, "little"))
        await sink.wait_for(
            lambda: any(v.get("temperature") == 20.01 for v in sink.values_of(device)),
            "notifications still arrive",
        )
        assert sink.state_of(device) == (DeviceState.ONLINE, "connected")
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("connect failed" in m for m in loud) == 1, loud
    assert sum("read failed" in m for m in loud) == 1, loud
    recovered = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
    assert len(recovered) == 1 and "thermostat" in recovered[0], recovered


async def test_connections_are_limited_per_controller(bluez: BluezMock) -> None:
    Thermostat(bluez, "F0:00:00:00:00:01")
    Thermostat(bluez, "F0:00:00:00:00:02")
    second = {**GATT_DEVICE, "address": "F0:00:00:00:00:02"}
    runner = controller({"one": GATT_DEVICE, "two": second}, max_connections=1)
    sink = RecordingSink()
    async with run_controller(runner, sink):
        await sink.wait_for(
            lambda: any(
                sink.state_of(identity(d)) == (DeviceState.ONLINE, "connected")
                for d in ("one", "two")
            ),
            "one connection",
        )
        waiting = [
            d
            for d in ("one", "two")
            if sink.state_of(identity(d)) != (DeviceState.ONLINE, "connected")
        ]
        assert len(waiting) == 1
        await sink.wait_for(
            lambda: (
                sink.state_of(identity(waiting[0]))
                == (DeviceState.OFFLINE, "waiting for a free connection slot")
            ),
            "the other waits",
        )
        assert sum(t.link is not None and t.link.connected for t in runner.targets) == 1


async def test_commands_to_advert_only_devices_are_unsupported(bluez: BluezMock) -> None:
    runner = controller({"tag": {"address": ADDRESS}})
    with pytest.raises(CommandUnsupported, match="advert-only"):
        await runner.execute(command("boost", device="tag"))
