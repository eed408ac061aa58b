"""A private system bus with one dbusmock object on it (logind or systemd's manager).

The stock dbusmock templates for logind and systemd import PyGObject, which the test venvs do
not have; a plain mock object with the methods each test adds is all these tests need, and
dbusmock records every call made to it. Control calls are synchronous dbus-python calls to the
mock that return within milliseconds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dbus
import dbusmock

from tests.support.systembus import bus_address, start_bus, stop_process, wait_until


class MockBus:
    """The bus address and the mock's control interface (``org.freedesktop.DBus.Mock``)."""

    def __init__(self, address: str, control: Any) -> None:
        self.address = address
        self.control = control

    def calls(self, method: str) -> list[list[Any]]:
        """The arguments of every call of ``method`` so far, as plain Python values."""
        return [[_plain(arg) for arg in args] for _, args in self.control.GetMethodCalls(method)]


def _plain(value: Any) -> Any:
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.String, dbus.ObjectPath)):
        return str(value)
    return value


@contextmanager
def running(workdir: Path, name: str, path: str, interface: str) -> Iterator[MockBus]:
    """A dbus-daemon and a mock owning ``name`` with an object at ``path``; both always stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    address = bus_address(workdir)
    processes: list[subprocess.Popen[bytes]] = []
    connection: Any = None
    try:
        daemon, connection = start_bus(workdir)
        processes.append(daemon)
        with open(workdir / "mock.log", "ab") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dbusmock", "--system", name, path, interface],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,  # it logs every call; an unread pipe would fill
                    stderr=log,
                    env={"DBUS_SYSTEM_BUS_ADDRESS": address, "PATH": "/usr/bin:/bin"},
                )
            )
        wait_until(lambda: bool(connection.name_has_owner(name)), f"the mock did not own {name}")
        control = dbus.Interface(connection.get_object(name, path), dbusmock.MOCK_IFACE)
        yield MockBus(address, control)
    finally:
        if connection is not None:
            connection.close()
        for process in reversed(processes):
            stop_process(process)
