"""A private system bus with the BlueZ mock on it, for tests and the BLE benchmark.

:class:`BluezMock` starts ``dbus-daemon`` and ``python -m dbusmock`` with
``bluez_gatt_template.py`` and always stops both (an orphaned daemon keeps CI's pipes open and
hangs the job). It does not touch ``os.environ``: point bleak at :attr:`BluezMock.address` through
``DBUS_SYSTEM_BUS_ADDRESS`` yourself (the ``bluez`` fixture does, with monkeypatch).

The control calls are synchronous dbus-python calls to the mock; each returns within
milliseconds, so calling them from a coroutine is acceptable in tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dbus

from tests.support.systembus import bus_address, start_bus, stop_process, wait_until

TEMPLATE = Path(__file__).with_name("bluez_gatt_template.py")
MOCK_IFACE = "org.bluez.Mock"
BASE_UUID = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """The full 128-bit form of a 16-bit SIG UUID."""
    return f"{short:08x}{BASE_UUID}"


class BluezMock:
    """The running bus plus mock; use :func:`running` to get one that is always cleaned up."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.address = bus_address(workdir)
        self.daemon: subprocess.Popen[bytes] | None = None
        self.mock: subprocess.Popen[bytes] | None = None
        self._connection: Any = None
        self._control: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def start_bus(self) -> None:
        """Start the private dbus-daemon (no BlueZ on it yet: 'bluetoothd not running')."""
        self.daemon, self._connection = start_bus(self.workdir)

    def start_bluez(self, parameters: Mapping[str, Any] | None = None) -> None:
        """Start the mock 'bluetoothd' and wait until it owns org.bluez."""
        argv = [sys.executable, "-m", "dbusmock", "--system", "--template", str(TEMPLATE)]
        if parameters:
            argv += ["--parameters", json.dumps(dict(parameters))]
        with open(self.workdir / "mock.log", "ab") as log:
            self.mock = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                # dbusmock logs every call: an unread pipe would fill up and block it
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address},
            )
        wait_until(
            lambda: (
                self._has_owner("org.bluez") or self.mock is None or self.mock.poll() is not None
            ),
            "the BlueZ mock did not claim org.bluez",
        )
        if self.mock.poll() is not None:
            raise RuntimeError(f"the BlueZ mock exited: {self.log_tail()}")
        self._control = dbus.Interface(self._connection.get_object("org.bluez", "/"), MOCK_IFACE)

    def stop_bluez(self) -> None:
        """Stop the mock 'bluetoothd' (the bus stays up)."""
        self._control = None
        stop_process(self.mock)
        self.mock = None

    def close(self) -> None:
        """Stop everything; safe to call twice and after a failed start."""
        try:
            self.stop_bluez()
        finally:
            try:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
            finally:
                stop_process(self.daemon)
                self.daemon = None

    def _has_owner(self, name: str) -> bool:
        return bool(self._connection.name_has_owner(name))

    def log_tail(self, limit: int = 2000) -> str:
        """The end of the mock's stderr, for assertion messages."""
        try:
            return (self.workdir / "mock.log").read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    # -- control --------------------------------------------------------------------------

    @property
    def control(self) -> Any:
        """The org.bluez.Mock interface; see the template for every method."""
        if self._control is None:
            raise RuntimeError("the BlueZ mock is not running")
        return self._control

    def add_adapter(self, name: str = "hci0") -> str:
        """Add a powered controller."""
        return str(self.control.AddAdapter(name, f"edged-test-{name}"))

    def add_device(self, address: str, name: str = "", adapter: str = "hci0") -> str:
        """Add a peripheral; it advertises (empty data until :meth:`advertise`)."""
        return str(self.control.AddDevice(adapter, address, name))

    def advertise(
        self,
        device: str,
        *,
        manufacturer: Mapping[int, bytes] | None = None,
        service: Mapping[str, bytes] | None = None,
        rssi: int = -60,
    ) -> None:
        """Set what ``device`` advertises."""
        self.control.SetAdvertisement(
            device,
            dbus.Dictionary(
                {dbus.UInt16(k): dbus.ByteArray(v) for k, v in (manufacturer or {}).items()},
                signature="qay",
            ),
            dbus.Dictionary(
                {dbus.String(k): dbus.ByteArray(v) for k, v in (service or {}).items()},
                signature="say",
            ),
            dbus.Int16(rssi),
        )

    def add_service(self, device: str, handle: int, uuid: str) -> str:
        """Add a GATT service."""
        return str(self.control.AddGattService(device, dbus.UInt16(handle), uuid))

    def add_characteristic(
        self, service: str, handle: int, uuid: str, flags: list[str], value: bytes = b""
    ) -> str:
        """Add a GATT characteristic."""
        return str(
            self.control.AddGattCharacteristic(
                service,
                dbus.UInt16(handle),
                uuid,
                dbus.Array(flags, signature="s"),
                dbus.ByteArray(value),
            )
        )

    def writes(self, characteristic: str) -> list[tuple[bytes, str]]:
        """Every write the characteristic accepted, as (value, "request" | "command")."""
        return [(bytes(v), str(kind)) for v, kind in self.control.GetWrites(characteristic)]

    def stats(self, adapter: str = "hci0") -> dict[str, int]:
        """Discovery start/stop and power-off counters of ``adapter``."""
        return {str(k): int(v) for k, v in self.control.GetStats(adapter).items()}

    def powered(self, adapter: str = "hci0") -> bool:
        """Whether the controller is powered (read straight from the mock)."""
        props = dbus.Interface(
            self._connection.get_object("org.bluez", f"/org/bluez/{adapter}"), dbus.PROPERTIES_IFACE
        )
        return bool(props.Get("org.bluez.Adapter1", "Powered"))


@contextmanager
def running(
    *, bluez: bool = True, parameters: Mapping[str, Any] | None = None
) -> Iterator[BluezMock]:
    """A private bus (with the BlueZ mock unless ``bluez=False``), torn down on any exit."""
    workdir = Path(tempfile.mkdtemp(prefix="edged-bluez-"))
    mock = BluezMock(workdir)
    try:
        mock.start_bus()
        if bluez:
            mock.start_bluez(parameters)
        yield mock
    finally:
        try:
            mock.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
