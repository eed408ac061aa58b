"""sd_notify over ``$NOTIFY_SOCKET``: READY, STATUS, WATCHDOG, RELOADING, STOPPING. A no-op without
systemd.

Written against the documented datagram protocol instead of python-systemd so the daemon has one
dependency fewer; sending a datagram to a local socket does not block.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes to the service manager, if there is one."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2  # ping at half the deadline
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when started by a service manager that listens for notifications."""
        return self._address is not None

    def notify(self, *fields: str) -> None:
        """Send ``KEY=VALUE`` fields, e.g. ``notify("READY=1", "STATUS=running")``."""
        if self._address is None:
            return
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)

    def reloading(self, status: str = "reloading the config") -> None:
        """Tell the service manager a reload began (``RELOADING=1`` with ``MONOTONIC_USEC``,
        as ``Type=notify-reload`` requires); send ``READY=1`` when it is over."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")

    async def watchdog(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Ping the watchdog until cancelled (only when ``WatchdogSec`` is set), skipping the
        pings while ``alive()`` says a part is wedged (see :mod:`edged.liveness`)."""
        if self.watchdog_interval is None or not self.enabled:
            await asyncio.Event().wait()
            return
        while True:
            if alive():
                self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)

    def close(self) -> None:
        """Release the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
