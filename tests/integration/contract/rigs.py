"""Each adapter kind built with one or two devices and its real counterpart, for the contract.

A :class:`Rig` is an adapter under test plus what the contract tests need to know about it: its
own devices, a command it supports with inputs it must refuse, and (for adapters with a
counterpart) how to watch it keep trying and how to take the counterpart away.

Counterparts: none for the simulated adapter; a pty with a query-answering instrument on its far
end for serial; pymodbus's own TCP server on 127.0.0.1 for Modbus; the BlueZ mock on a private
D-Bus for BLE (an advertising sensor, a GATT thermostat, and a stranger that is not ours).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pytest
from _pytest.mark.structures import ParameterSet

from edged.adapters.base import Adapter, AdapterContext, DeviceSpec
from edged.model import DeviceIdentity, JSONValue

Absent = Literal["none", "one", "all"]
"""Which devices' counterparts are missing: none, the second device's, or every one."""

KIND_MARKS: dict[str, tuple[pytest.MarkDecorator, ...]] = {
    "simulated": (),
    "serial": (pytest.mark.serial,),
    "modbus": (pytest.mark.modbus,),
    "ble": (pytest.mark.ble,),
}
"""Every adapter kind and its own marker (scripts/dev's oldest-library run selects on them)."""

WITH_COUNTERPART = ("serial", "modbus", "ble")
"""Kinds with something real on the far side that can be missing (the simulated adapter is its
own data source, so "counterpart missing" does not apply to it)."""
SEVERAL_DEVICES = ("modbus", "ble")
"""Kinds whose one runner serves several devices (serial and simulated run one per device, so
"one failing device does not stop another on the same adapter" does not apply to them)."""
WITH_COMMANDS = ("simulated", "serial", "modbus", "ble")
"""Kinds with a command in their test config (all of them)."""


def params(*kinds: str) -> list[ParameterSet]:
    """``kinds`` as pytest parameters carrying each kind's marker (all kinds by default)."""
    return [pytest.param(kind, marks=KIND_MARKS[kind], id=kind) for kind in kinds or KIND_MARKS]


@dataclass(frozen=True)
class CommandCase:
    """A command ``device`` supports, an input it carries out, and inputs it must refuse."""

    device: DeviceIdentity
    name: str
    good: JSONValue
    bad: tuple[JSONValue, ...]


@dataclass(frozen=True)
class Counterpart:
    """The real thing on the far side of an adapter."""

    progress: Callable[[], int]
    """A count that grows while the adapter keeps trying to reach a missing counterpart
    (failed opens, failed connects, adverts heard by a scanner that is still running)."""
    lose: Callable[[], Awaitable[None]]
    """Take the counterpart away while the adapter runs (pty closed, server stopped, devices
    gone out of range)."""


@dataclass(frozen=True)
class Rig:
    """One adapter under test and its counterpart; torn down by the fixture that built it."""

    kind: str
    adapter: Adapter
    devices: tuple[DeviceIdentity, ...]
    """Every device the adapter serves, in config order."""
    command: CommandCase
    effects: Callable[[], int]
    """How many commands had an effect on the counterpart (writes it saw)."""
    counterpart: Counterpart | None


@dataclass(frozen=True)
class Env:
    """What builders may use: a cleanup stack, a private directory, and monkeypatch."""

    stack: contextlib.AsyncExitStack
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch


Builder = Callable[[Env, Absent], Awaitable[Rig]]


class RigFactory(Protocol):
    """Builds one adapter kind with its devices and counterpart (the ``make_rig`` fixture)."""

    async def __call__(self, absent: Absent = "none") -> Rig:
        """A rig whose devices' counterparts are all there, or with ``absent`` ones missing."""


# --- simulated ------------------------------------------------------------------------------


async def build_simulated(env: Env, absent: Absent) -> Rig:
    """One simulated device; it has no counterpart."""
    from edged.adapters.simulated.adapter import SimulatedDevice
    from edged.adapters.simulated.config import DeviceConfig

    assert absent == "none", "the simulated adapter has no counterpart to be missing"
    identity = DeviceIdentity("sim", "sim-1")
    section = DeviceConfig.model_validate(
        {"interval": 0.05, "values": {"temperature": {"kind": "sine", "min": 10, "max": 30}}}
    )
    adapter = SimulatedDevice(DeviceSpec(identity, section, "reading", ()))
    return Rig(
        kind="simulated",
        adapter=adapter,
        devices=(identity,),
        command=CommandCase(
            identity,
            "set",
            good={"setpoint": 21.5},
            bad=(None, {}, [1, 2], {"setpoint": [1]}, {"setpoint": {"nested": 1}}),
        ),
        effects=lambda: len(adapter.overrides),
        counterpart=None,
    )


# --- serial ---------------------------------------------------------------------------------


async def build_serial(env: Env, absent: Absent) -> Rig:
    """A polled lab meter on a pty (absent: the port path does not exist)."""
    from edged.adapters.serial.adapter import SerialDevice
    from edged.adapters.serial.config import DeviceConfig
    from tests.integration.serial.harness import DEVICE, FAST, GATEWAY
    from tests.integration.serial.instruments import PtyPair, QueryInstrument

    pty: PtyPair | None = None
    instrument: QueryInstrument | None = None
    if absent == "none":
        pty = PtyPair()
        env.stack.callback(pty.close)
        instrument = QueryInstrument(pty.master)
        env.stack.callback(instrument.stop)
        port = pty.path
    else:  # one device per port: "one" and "all" are the same here
        port = str(env.tmp_path / "usb-ACME_meter-if00")
    section = DeviceConfig.model_validate(
        {
            "port": port,
            "poll": 0.1,
            "queries": [{"name": "measure", "send": "MEAS?\r\n", "parser": "kv", "timeout": 0.3}],
            "commands": {
                "setpoint": {
                    "send": "SP {value:.1f}\r\n",
                    "reply": "text",
                    "expect": "^(OK|ERR)",
                    "error": "^ERR",
                }
            },
        }
    )
    adapter = SerialDevice(
        DeviceSpec(DEVICE, section, "reading", ()), FAST, AdapterContext(gateway=GATEWAY)
    )

    def effects() -> int:
        return (
            0 if instrument is None else sum(line.startswith(b"SP") for line in instrument.received)
        )

    async def lose() -> None:
        assert pty is not None and instrument is not None, "built without its counterpart"
        instrument.stop()
        pty.close()  # unplugged: the open port reads end of file, the path vanishes

    return Rig(
        kind="serial",
        adapter=adapter,
        devices=(DEVICE,),
        command=CommandCase(
            DEVICE,
            "setpoint",
            good={"value": 21.5},
            bad=(None, {}, {"value": "1\r\nTARE"}, {"value": [1]}, {"value": "warm"}),
        ),
        effects=effects,
        counterpart=Counterpart(progress=lambda: adapter.stats.open_failures, lose=lose),
    )


# --- Modbus ---------------------------------------------------------------------------------


async def build_modbus(env: Env, absent: Absent) -> Rig:
    """Two meters (units 1 and 2) on one TCP line served by pymodbus's own server.

    Absent "one": unit 2 is not on the server (it never answers); "all": nothing listens.
    """
    from edged.adapters.modbus import compat
    from edged.adapters.modbus.adapter import ModbusLine
    from edged.netutil import free_port
    from tests.integration.modbus.helpers import bus, spec

    units = {
        unit: compat.EmulatedUnit(holding={0: 10 * unit, 10: 0})
        for unit in ((1,) if absent == "one" else (1, 2))
    }
    server: compat.EmulatorServer | None = None
    if absent != "all":
        server = await compat.serve_tcp(compat.EmulatedBus(units))

    async def stop() -> None:
        nonlocal server
        running, server = server, None
        if running is not None:
            await running.stop()

    env.stack.push_async_callback(stop)
    port = free_port() if server is None else server.port
    url = f"tcp://127.0.0.1:{port}"
    command = {"setpoint": {"address": 10, "min": 0, "max": 100}}
    specs = [
        spec(
            f"m{unit}",
            url=url,
            unit=unit,
            interval=0.05,
            points={"v": {"address": 0}},
            commands=command,
        )
        for unit in (1, 2)
    ]
    line = ModbusLine(bus(url, timeout=0.1, reconnect_max=0.2), specs, reconnect_initial=0.05)

    async def lose() -> None:
        assert server is not None, "built without its counterpart"
        await stop()  # the server closes every connection and stops listening

    return Rig(
        kind="modbus",
        adapter=line,
        devices=tuple(s.identity for s in specs),
        command=CommandCase(
            specs[0].identity,
            "setpoint",
            good={"value": 42},
            bad=(None, {}, {"value": "warm"}, {"value": 101}, {"value": True}, {"other": 1}),
        ),
        effects=lambda: sum(unit.writes for unit in units.values()),
        counterpart=Counterpart(progress=lambda: line.retry.failures, lose=lose),
    )


# --- BLE ------------------------------------------------------------------------------------

SENSOR = "A4:C1:38:00:00:01"
THERMOSTAT = "F0:00:00:00:00:01"
STRANGER = "11:22:33:44:55:66"
HUMIDITY = "00002a6f-0000-1000-8000-00805f9b34fb"
SETPOINT = "12345678-0000-4000-8000-00000000a001"


async def build_ble(env: Env, absent: Absent) -> Rig:
    """An advertising sensor and a GATT thermostat on hci0 of the BlueZ mock.

    A stranger (not configured) always advertises. Absent "one": the thermostat is not in the
    mock; "all": neither device is.
    """
    from bleak.backends.bluezdbus.manager import get_global_bluez_manager

    from edged.adapters.ble.adapter import BleController
    from tests.integration.ble import bluez as mock_bluez
    from tests.integration.ble.conftest import release_bleak
    from tests.integration.ble.harness import controller, identity

    fds_before = len(os.listdir("/proc/self/fd"))
    mock = env.stack.enter_context(mock_bluez.running())
    env.monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", mock.address)
    mock.add_adapter("hci0")

    async def release() -> None:
        await release_bleak()
        await _settle(fds_before)

    env.stack.push_async_callback(release)
    # bleak keeps one BlueZ connection (and a task watching it) per event loop for the loop's
    # life, as in the daemon: make it now, so it counts as the counterpart's, not the adapter's.
    await get_global_bluez_manager()

    stranger = mock.add_device(STRANGER, "NotOurs")
    mock.advertise(stranger, manufacturer={0x0059: b"\x05\x01"})
    sensor = thermostat = setpoint = ""
    if absent != "all":
        sensor = mock.add_device(SENSOR, "Sensor")
        mock.advertise(sensor, manufacturer={0x0499: b"\x05\x2a"}, rssi=-50)
    if absent == "none":
        thermostat = mock.add_device(THERMOSTAT, "Thermostat")
        sensing = mock.add_service(thermostat, 0x0010, mock_bluez.uuid16(0x181A))
        mock.add_characteristic(sensing, 0x0011, HUMIDITY, ["read"], (4500).to_bytes(2, "little"))
        control = mock.add_service(thermostat, 0x0020, "12345678-0000-4000-8000-00000000a000")
        setpoint = mock.add_characteristic(control, 0x0021, SETPOINT, ["read", "write"], b"\0\0")
    runner: BleController = controller(
        {
            "sensor": {
                "address": SENSOR,
                "timeout": "500ms",
                "min_interval": 0,
                "report": "every",
                "manufacturer_data": [
                    {"company_id": 0x0499, "prefix": "05", "fields": {"level": {"offset": 1}}}
                ],
            },
            "thermostat": {
                "address": THERMOSTAT,
                "timeout": "500ms",
                "min_interval": 0,
                "report": "every",
                "rssi": False,
                "gatt": {
                    "poll": "100ms",
                    "io_timeout": "2s",
                    "connect_timeout": "3s",
                    "reconnect": {"initial": "100ms", "max": "200ms"},
                    "characteristics": [
                        {"uuid": "2a6f", "fields": {"humidity": {"type": "uint16", "scale": 0.01}}}
                    ],
                    "commands": {
                        "setpoint": {
                            "uuid": SETPOINT,
                            "type": "int16",
                            "scale": 0.1,
                            "min": 5,
                            "max": 30,
                        }
                    },
                },
            },
        }
    )

    async def lose() -> None:
        assert sensor and thermostat, "built without its counterpart"
        mock.control.SetAdvertising(sensor, False)
        mock.control.SetAdvertising(thermostat, False)
        mock.control.SetConnectError(thermostat, "Failed")  # out of range: connects fail
        mock.control.DisconnectDevice(thermostat)

    return Rig(
        kind="ble",
        adapter=runner,
        devices=(identity("sensor"), identity("thermostat")),
        command=CommandCase(
            identity("thermostat"),
            "setpoint",
            good={"value": 21.5},
            bad=(None, {}, {"value": 45}, {"value": 1}, {"value": "warm"}, {"value": True}),
        ),
        effects=lambda: len(mock.writes(setpoint)) if setpoint else 0,
        counterpart=Counterpart(progress=lambda: runner.scanner.adverts, lose=lose),
    )


async def _settle(fds_before: int, within: float = 1.0) -> None:
    """Wait (collecting garbage) until bleak's per-client D-Bus sockets are closed.

    bleak closes them from callbacks after a disconnect, and dbus-fast frees a socket only when
    its bus object is collected; one that stays open past ``within`` is left for the leak check.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        gc.collect()
        if len(os.listdir("/proc/self/fd")) <= fds_before + 1:  # the mock's log is still open
            return
        await asyncio.sleep(0.02)


BUILDERS: dict[str, Builder] = {
    "simulated": build_simulated,
    "serial": build_serial,
    "modbus": build_modbus,
    "ble": build_ble,
}
