"""Shared pieces of the device-management end-to-end tests: identities, configs, scripts."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from edged.emulator import PlatformEmulator
from edged.emulator.records import DMMessage
from edged.model import DeviceIdentity
from tests.support.broker import Broker
from tests.support.daemon import GATEWAY, write_config

GW = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])
PUMP = DeviceIdentity("pump", "pump-1")
"""The managed attached device (simulated)."""
FAN = DeviceIdentity("fan", "fan-1")
"""An attached device without ``manage:``."""

MANAGE = "mgmt/manage"
UNMANAGE = "mgmt/unmanage"
REBOOT = "mgmt/initiate/device/reboot"
FACTORY_RESET = "mgmt/initiate/device/factory_reset"


def sim(device: DeviceIdentity, manage: dict[str, Any] | None = None) -> dict[str, Any]:
    """A simulated device reading a counter every 0.1 s, managed when ``manage`` is given."""
    config: dict[str, Any] = {
        "id": device.device_id,
        "type": device.type_id,
        "adapter": "simulated",
        "simulated": {"interval": 0.1, "values": {"n": {"kind": "counter", "max": 10**9}}},
    }
    if manage is not None:
        config["manage"] = manage
    return config


def dm_config(
    directory: Path,
    broker: Broker,
    managed: dict[str, Any] | None = None,
    devices: list[dict[str, Any]] | None = None,
) -> Path:
    """A config with the gateway managed (``managed`` merged over short test timings)."""
    section = {"response_timeout": 2, "request_timeout": 10, **(managed or {})}
    return write_config(directory, broker, devices or [], extra={"managed": section})


def script(path: Path, body: str) -> str:
    """Write an executable ``/bin/sh`` script; returns its path for a ``run:`` action."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def manages(emulator: PlatformEmulator, device: DeviceIdentity) -> list[DMMessage]:
    """The manage requests the gateway sent for ``device`` so far."""
    return [
        m
        for m in emulator.dm_messages
        if m.direction == "up" and m.device == device and m.suffix == MANAGE
    ]


def wait_managed(emulator: PlatformEmulator, *devices: DeviceIdentity, timeout: float = 15) -> None:
    """Block until the emulated DM server holds every one of ``devices`` as managed."""
    emulator.wait_for(
        lambda: all(emulator.is_managed(d) for d in devices), timeout, f"{devices} managed"
    )


def answers(emulator: PlatformEmulator, device: DeviceIdentity, req_id: str) -> list[DMMessage]:
    """Every answer the gateway sent for ``device`` with ``req_id``."""
    return [
        m
        for m in emulator.dm_messages
        if m.direction == "up" and m.suffix == "response" and m.device == device
        and m.req_id == req_id
    ]  # fmt: skip
