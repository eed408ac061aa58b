"""The one place that touches a serial port: open with pyserial, then read and write its fd.

pyserial opens and configures the port (baud, parity, stop bits, flow control, an exclusive
lock). After that its blocking read/readline are never used: the fd is non-blocking and the
asyncio loop reads it with ``add_reader`` in chunks and writes it with ``add_writer`` when the
kernel buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import termios
from collections.abc import Callable
from typing import Any

import serial

from edged.adapters.serial.config import DeviceConfig

READ_CHUNK = 16384
"""Bytes asked for per read; a tty returns what it has, at most its buffer (about 4 KiB)."""

_PARITY = {
    "none": serial.PARITY_NONE,
    "even": serial.PARITY_EVEN,
    "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK,
    "space": serial.PARITY_SPACE,
}


class PortError(Exception):
    """The port could not be opened (missing, busy, not a tty, permission denied)."""


class PortLostError(Exception):
    """An open port failed (unplugged, closed by the other end, I/O error)."""


class WriteTimeout(Exception):
    """A write did not finish within its time limit; the port is still open and usable.

    Flow control is holding the line, or the device stopped reading. What was not yet handed
    to the driver is not written, and what the driver still queued is discarded.
    """


class SerialLink:
    """An open port read on the event loop. Create with :meth:`open`; always :meth:`close`."""

    def __init__(self, port: Any, path: str) -> None:
        self._port = port
        self.path = path
        self.fd: int = port.fd
        os.set_blocking(self.fd, False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_data: Callable[[bytes], None] | None = None
        self._on_lost: Callable[[Exception], None] | None = None
        self._reading = False
        self._closed = False
        self._write_waiter: asyncio.Future[None] | None = None

    @classmethod
    def open(cls, config: DeviceConfig) -> SerialLink:
        """Open and configure ``config.port``; raises :class:`PortError`.

        Blocking edge: opening a USB serial adapter configures it over USB, which takes a few
        milliseconds. pyserial opens with O_NONBLOCK, so a missing carrier never hangs here;
        we accept the short stall on the loop rather than a thread per port.
        """
        try:
            port = serial.Serial(
                port=config.port,
                baudrate=config.baud,
                bytesize=config.bytesize,
                parity=_PARITY[config.parity],
                stopbits=config.stopbits,
                xonxoff=config.flow_control == "xonxoff",
                rtscts=config.flow_control == "rtscts",
                dsrdtr=config.flow_control == "dsrdtr",
                exclusive=config.exclusive or None,
                timeout=0,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(_describe(exc)) from exc
        return cls(port, config.port)

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[Exception], None],
    ) -> None:
        """Deliver chunks to ``on_data``; call ``on_lost(exc)`` once if the port fails."""
        self._loop = loop
        self._on_data = on_data
        self._on_lost = on_lost
        self.resume_reading()

    def pause_reading(self) -> None:
        """Stop reading (backpressure); the kernel buffers, then flow control or loss."""
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._reading = False

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        if not self._reading and not self._closed and self._loop is not None:
            self._loop.add_reader(self.fd, self._readable)
            self._reading = True

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(PortLostError(f"read failed: {_describe(exc)}"))
            return
        if not data:
            self._fail(PortLostError("the port reported end of file (device gone)"))
            return
        assert self._on_data is not None
        self._on_data(data)

    def _fail(self, exc: Exception) -> None:
        self.pause_reading()
        callback, self._on_lost = self._on_lost, None
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_exception(exc)
        if callback is not None:
            callback(exc)

    async def write(self, data: bytes, write_timeout: float) -> None:
        """Write all of ``data`` within ``write_timeout`` seconds.

        Raises :class:`WriteTimeout` if the port does not take it in time (the port stays
        open) and :class:`PortLostError` if the port failed (then ``on_lost`` is called too).
        """
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + write_timeout
        while view:
            if self._closed:
                raise PortLostError("the port is closed")
            try:
                written = os.write(self.fd, view)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                lost = PortLostError(f"write failed: {_describe(exc)}")
                self._fail(lost)
                raise lost from exc
            view = view[written:]
            if view and not await self._wait_writable(loop, deadline):
                self._discard_output()
                sent = len(data) - len(view)
                raise WriteTimeout(
                    f"write timed out after {write_timeout:g} s ({sent} of {len(data)} bytes "
                    "taken; flow control holding, or the device is not reading)"
                )

    async def _wait_writable(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        """Wait until the fd takes more; False at ``deadline``. PortLostError if it fails."""
        waiter: asyncio.Future[None] = loop.create_future()
        self._write_waiter = waiter

        def writable() -> None:
            if not waiter.done():
                waiter.set_result(None)

        loop.add_writer(self.fd, writable)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            return False
        finally:
            loop.remove_writer(self.fd)
            self._write_waiter = None
        return True

    def _discard_output(self) -> None:
        # After a timed-out write, the rest of a half-written query or command must not reach
        # the device later, when it starts reading again: drop what the driver still holds.
        with contextlib.suppress(OSError, termios.error, serial.SerialException):
            self._port.reset_output_buffer()

    def close(self) -> None:
        """Stop reading and close the port (idempotent)."""
        if self._closed:
            return
        self.pause_reading()
        self._closed = True
        self._on_lost = None
        self._port.close()


def _describe(exc: BaseException) -> str:
    """A short operator-facing reason, with advice for the usual causes."""
    code = getattr(exc, "errno", None)
    text = str(exc) or type(exc).__name__
    if "exclusively lock" in text:
        return "busy: another program has it open (exclusive lock held)"
    if code == errno.ENOENT:
        return "no such device (not plugged in? check the path, e.g. ls /dev/serial/by-id/)"
    if code == errno.EACCES:
        return "permission denied (the service user needs the dialout group)"
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return text
