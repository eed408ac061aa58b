"""A private system D-Bus for tests: ``dbus-daemon`` on a socket in a work folder.

Used by the BLE tests (BlueZ played by dbusmock) and the privileged-path tests (logind and
systemd played by dbusmock).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dbus

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
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


def bus_address(workdir: Path) -> str:
    """The address of the bus :func:`start_bus` runs in ``workdir``."""
    return f"unix:path={workdir / 'system_bus.socket'}"


def start_bus(workdir: Path) -> tuple[subprocess.Popen[bytes], Any]:
    """Start the bus (its log in ``workdir/bus.log``); returns the daemon and a connection to
    it once it accepts connections. Stop the daemon with :func:`stop_process`."""
    socket = workdir / "system_bus.socket"
    config = workdir / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=socket))
    with open(workdir / "bus.log", "ab") as log:
        daemon = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,  # it warns that it cannot raise its fd limit when not root
        )
    connection: list[Any] = []

    def connect() -> bool:
        if not socket.exists():
            return False
        try:
            connection.append(dbus.bus.BusConnection(bus_address(workdir)))
        except dbus.exceptions.DBusException:  # bound but not listening yet
            return False
        return True

    try:
        wait_until(connect, "dbus-daemon did not accept connections")
    except BaseException:
        stop_process(daemon)
        raise
    return daemon, connection[0]


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate ``process`` (killed if it lingers) and reap it."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=3)


def wait_until(check: Callable[[], bool], message: str, within: float = 10.0) -> None:
    """Poll ``check`` until it holds; ``TimeoutError(message)`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.005)
