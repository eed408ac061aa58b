"""Simulated serial instruments on the far side of a pty (os.openpty or socat).

The adapter under test opens the pty's slave path like a real port; the instrument reads and
writes the master fd on the test's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import subprocess
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from edged.adapters.serial import nmea


class PtyPair:
    """``os.openpty`` in raw mode. The test keeps the slave open so data written before the
    adapter opens the port is not lost to a hang-up, and closes the master to unplug."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.closed = False

    def close(self) -> None:
        """Close both ends (the adapter's open port then reads end of file)."""
        if not self.closed:
            self.closed = True
            os.close(self.master)
            os.close(self.slave)


class Instrument:
    """Base of simulated devices: reads lines the adapter writes, writes bytes back."""

    def __init__(self, fd: int, delimiter: bytes = b"\r\n") -> None:
        self.fd = fd
        self.delimiter = delimiter
        self.received: list[bytes] = []
        self._buf = b""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)
        self._stopped = False

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            self.stop()
            return
        self._buf += data
        *lines, self._buf = self._buf.replace(b"\r\n", b"\n").split(b"\n")
        for line in lines:
            self.received.append(line)
            self.on_line(line)

    def on_line(self, line: bytes) -> None:
        """Handle one line written by the adapter (override)."""

    def write_now(self, data: bytes) -> None:
        """Write from a callback; the pty buffer must have room (small replies)."""
        os.write(self.fd, data)

    async def write(self, data: bytes) -> None:
        """Write everything, waiting while the pty buffer is full (the adapter reads slowly)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await self._writable()

    async def _writable(self) -> None:
        ready = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(self.fd, wake)
        try:
            await ready
        finally:
            self._loop.remove_writer(self.fd)

    def stop(self) -> None:
        """Stop reading the master fd (does not close it)."""
        if not self._stopped:
            self._stopped = True
            self._loop.remove_reader(self.fd)


class Responder(Instrument):
    """Answers each line with ``respond(line)`` (``None``: no answer), on the test's loop."""

    def __init__(self, fd: int, respond: Callable[[bytes], bytes | None]) -> None:
        super().__init__(fd)
        self.respond = respond

    def on_line(self, line: bytes) -> None:
        reply = self.respond(line)
        if reply:
            self.write_now(reply)


class QueryInstrument(Instrument):
    """Answers queries like a lab meter: ``MEAS?``, ``ID?``, ``SP <v>``, ``TARE``, ``BAD``."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.silent = False
        self.temperature = 21.5

    def on_line(self, line: bytes) -> None:
        if self.silent or line == b"SILENT?":
            return
        if line == b"MEAS?":
            self.write_now(b"T=%.2f H=40\r\n" % self.temperature)
        elif line == b"ID?":
            self.write_now(b"ACME,TH-1,SN42\r\n")
        elif line.startswith(b"SP "):
            self.write_now(b"OK " + line[3:] + b"\r\n")
        elif line == b"TARE":
            pass  # no reply
        elif line == b"MULTI?":
            self.write_now(b"A=1\r\nB=2\r\n")
        else:
            self.write_now(b"ERR unknown command\r\n")


def answer(line: bytes) -> bytes | None:
    """The query instrument's answers as a plain function (for :class:`ThreadedInstrument`)."""
    if line == b"MEAS?":
        return b"T=21.50 H=40\r\n"
    if line.startswith(b"SP "):
        return b"OK " + line[3:] + b"\r\n"
    return b"ERR unknown command\r\n"


class ThreadedInstrument:
    """An instrument on its own thread, for tests whose main thread blocks (the daemon tests).

    ``respond(line)`` returns the reply to write, or ``None``. Always :meth:`stop` it.
    """

    def __init__(self, fd: int, respond: Callable[[bytes], bytes | None]) -> None:
        self.fd = fd
        self.respond = respond
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serial-instrument", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            try:
                buf += os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            *lines, buf = buf.replace(b"\r\n", b"\n").split(b"\n")
            for line in lines:
                self.received.append(line)
                reply = self.respond(line)
                if reply:
                    self.write(reply)

    def write(self, data: bytes) -> None:
        """Write ``data`` (small writes: the pty has room)."""
        with self._lock:
            os.write(self.fd, data)

    def stop(self) -> None:
        """Stop and join the thread."""
        self._stop.set()
        self._thread.join(5)


def nmea_epoch(index: int, *, corrupt: bool = False) -> list[bytes]:
    """GGA, GSA, RMC for second ``index`` after 12:00:00 on 2024-05-01; ``corrupt`` breaks GGA."""
    seconds = 12 * 3600 + index
    hhmmss = f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}{seconds % 60:02d}.00"
    minutes = 7.038 + index * 0.001
    gga = nmea.build_sentence(
        f"GNGGA,{hhmmss},48{minutes:06.3f},N,01131.000,E,1,09,0.8,545.{index % 10},M,46.9,M,,"
    )
    gsa = nmea.build_sentence("GNGSA,A,3,04,05,,09,12,,,24,,,,,1.6,0.8,1.4")
    rmc = nmea.build_sentence(
        f"GNRMC,{hhmmss},A,48{minutes:06.3f},N,01131.000,E,001.0,090.0,010524,,,A"
    )
    if corrupt:
        gga = gga[:-2] + ("00" if not gga.endswith("00") else "11")
    return [(sentence + "\r\n").encode() for sentence in (gga, gsa, rmc)]


def garbage(size: int, seed: int = 7) -> bytes:
    """Random bytes without line feeds (so they join the next line or hit the length limit)."""
    rng = random.Random(seed)
    return bytes(rng.choice([b for b in range(256) if b != 0x0A]) for _ in range(size))


class Socat:
    """``socat`` linking two ptys under named links: ``device`` (for the adapter) and
    ``instrument`` (for the simulator). Stopping it removes both links, like an unplug."""

    def __init__(self, directory: Path) -> None:
        self.device = directory / "ttyDEVICE"
        self.instrument = directory / "ttyINSTRUMENT"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start socat and wait until both links exist."""
        self.process = subprocess.Popen(
            [
                "socat",
                f"pty,raw,echo=0,link={self.device}",
                f"pty,raw,echo=0,link={self.instrument}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (self.device.exists() and self.instrument.exists()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("socat did not create its links")
            time.sleep(0.005)

    def stop(self) -> None:
        """Terminate socat and reap it."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
