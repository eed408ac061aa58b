"""A private system bus with one dbusmock object on it (logind or systemd's manager).

The stock dbusmock templates for logind and systemd import PyGObject, which the test venvs do
not have; a plain mock object with the methods each test adds is all these tests need, and
dbusmock records every call made to it. Control calls are synchronous dbus-python calls to the
mock that return within milliseconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dbus
import dbusmock

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


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


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=3)


def _wait_for(check: Callable[[], bool], message: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.01)


@contextmanager
def running(workdir: Path, name: str, path: str, interface: str) -> Iterator[MockBus]:
    """A dbus-daemon and a mock owning ``name`` with an object at ``path``; both always stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    socket = workdir / "system_bus.socket"
    address = f"unix:path={socket}"
    config = workdir / "bus.conf"
    config.write_text(_BUS_CONFIG.format(socket=socket))
    processes: list[subprocess.Popen[bytes]] = []
    connection: Any = None
    try:
        with open(workdir / "bus.log", "ab") as log:
            processes.append(
                subprocess.Popen(
                    ["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )

        def connect() -> bool:
            nonlocal connection
            if not socket.exists():
                return False
            try:
                connection = dbus.bus.BusConnection(address)
            except dbus.exceptions.DBusException:
                return False
            return True

        _wait_for(connect, "dbus-daemon did not accept connections")
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
        _wait_for(lambda: bool(connection.name_has_owner(name)), f"the mock did not own {name}")
        control = dbus.Interface(connection.get_object(name, path), dbusmock.MOCK_IFACE)
        yield MockBus(address, control)
    finally:
        if connection is not None:
            connection.close()
        for process in reversed(processes):
            _stop(process)
