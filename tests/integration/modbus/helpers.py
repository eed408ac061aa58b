"""Helpers for the Modbus integration tests: specs, a line runner, socat ptys, RTU frames."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edged.adapters.base import DeviceSpec, ReadingSink
from edged.adapters.modbus.adapter import ModbusLine
from edged.adapters.modbus.config import BusConfig, DeviceConfig
from edged.model import DeviceIdentity


def spec(device_id: str, **section: Any) -> DeviceSpec[DeviceConfig]:
    """A device spec with a validated ``modbus:`` section."""
    return DeviceSpec(
        identity=DeviceIdentity("meter", device_id),
        section=DeviceConfig.model_validate(section),
        event="reading",
        loc=("devices", 0),
    )


def bus(url: str, **options: Any) -> BusConfig:
    """A validated bus config."""
    return BusConfig.model_validate({"url": url, **options})


@contextlib.asynccontextmanager
async def running(line: ModbusLine, sink: ReadingSink) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``line`` in a task for the duration of the block, then cancel it and wait."""
    task = asyncio.create_task(line.run(sink), name=line.name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class SocatPair:
    """Two linked ptys with stable names (``a`` and ``b``), made by socat."""

    def __init__(self, directory: Path) -> None:
        self.a = str(directory / "ttyA")
        self.b = str(directory / "ttyB")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start socat and wait for both links."""
        socat = shutil.which("socat")
        assert socat is not None, "socat is not installed"
        self.process = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (Path(self.a).exists() and Path(self.b).exists()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop socat (the ptys vanish, like an unplugged adapter)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None


def crc16(frame: bytes) -> bytes:
    """The Modbus RTU CRC of ``frame``, low byte first as it goes on the wire."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def rtu_registers_reply(unit: int, registers: list[int]) -> bytes:
    """A function-3 RTU reply carrying ``registers``."""
    body = bytes([unit, 3, 2 * len(registers)]) + b"".join(r.to_bytes(2, "big") for r in registers)
    return body + crc16(body)
