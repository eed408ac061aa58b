"""The serial adapter under field faults: stalled writes, devices that ignore their queries,
ports that vanish as soon as they open, devices that invent event names (issue 8)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import tty
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edged.adapters.base import AdapterContext, DeviceSpec
from edged.adapters.serial.adapter import SerialDevice
from edged.adapters.serial.config import DeviceConfig, ReopenConfig, Settings
from edged.adapters.serial.port import SerialLink
from edged.adapters.serial.throttle import CAPACITY
from edged.model import DeviceState, Reading
from tests.integration.serial.harness import DEVICE, detail, online, running, state, transitions
from tests.integration.serial.instruments import Instrument, PtyPair, Responder
from tests.support.sink import RecordingSink

pytestmark = [pytest.mark.serial, pytest.mark.integration]

SERIAL_LOG = "edged.adapters.serial"


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """Messages of the serial adapter's logger at exactly ``level``."""
    return [r.getMessage() for r in caplog.records if r.name == SERIAL_LOG and r.levelno == level]


async def test_a_stalled_query_write_is_counted_and_polling_goes_on(
    pty: PtyPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, SERIAL_LOG)
    # A query larger than the pty's buffer (about 12 KiB) never gets through while nobody
    # reads the instrument side.
    query = "#" * 65536 + "MEAS?\r\n"
    section = {
        "port": pty.path,
        "poll": 0.3,
        "write_timeout": 0.2,
        "queries": [{"name": "measure", "send": query, "parser": "kv", "timeout": 0.5}],
    }
    async with running(section) as (device, sink):
        await sink.wait_for(
            lambda: device.counters().get("write_timeouts", 0) >= 3, "three stalled polls"
        )
        counters = device.counters()
        # Counted as what it is: not a reply timeout, not a lost port.
        assert (counters["reply_timeouts"], counters["replies"], counters["losses"]) == (0, 0, 0)
        assert state(sink) is DeviceState.OFFLINE
        assert detail(sink).startswith("write timed out after 0.2 s")
        assert transitions(sink) == [DeviceState.STARTING, DeviceState.ONLINE, DeviceState.OFFLINE]

        # The device starts reading: the next poll gets through and is answered. (What the
        # instrument reads first is the start of a discarded write; the line still ends in
        # the query.)
        instrument = Responder(
            pty.master, lambda line: b"T=21.50 H=40\r\n" if line.endswith(b"MEAS?") else None
        )
        try:
            await sink.wait_for(lambda: sink.values() != [], "an answered poll", within=10)
            await sink.wait_for(lambda: online(sink), "online again")
        finally:
            instrument.stop()
        assert sink.values()[0] == {"T": 21.5, "H": 40}
        assert device.counters()["losses"] == 0
    warnings = messages(caplog, logging.WARNING)
    assert len([w for w in warnings if "write timed out" in w]) == 1, warnings
    assert len([m for m in messages(caplog, logging.INFO) if "writing recovered" in m]) == 1


class BrokenSink(RecordingSink):
    """A sink whose ``emit`` fails (a bug further on)."""

    async def emit(self, reading: Reading) -> None:
        raise RuntimeError("the bridge broke")


async def test_a_poll_that_crashes_ends_the_runner_loudly(pty: PtyPair) -> None:
    section = {"port": pty.path, "poll": 0.1, "queries": [{"send": "MEAS?\r\n", "parser": "kv"}]}
    spec = DeviceSpec(DEVICE, DeviceConfig.model_validate(section), "reading", ())
    device = SerialDevice(spec, Settings(), AdapterContext(gateway=DEVICE))
    instrument = Responder(pty.master, lambda line: b"T=1\r\n")
    try:
        runner = asyncio.create_task(device.run(BrokenSink()))
        # The supervisor sees the error (and restarts the adapter); polling does not just stop.
        with pytest.raises(RuntimeError, match="the bridge broke"):
            await asyncio.wait_for(runner, 5)
    finally:
        instrument.stop()


class Streamer:
    """Prints a reading every 20 ms and ignores everything written to it."""

    def __init__(self, fd: int) -> None:
        self.instrument = Instrument(fd)
        self.task = asyncio.create_task(self._stream(), name="streamer")

    async def _stream(self) -> None:
        index = 0
        while True:
            await self.instrument.write(b"T=%d\r\n" % index)
            index += 1
            await asyncio.sleep(0.02)  # the device's own pace, not synchronisation

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.instrument.stop()


@pytest.fixture
async def streamer(pty: PtyPair) -> AsyncIterator[Streamer]:
    device = Streamer(pty.master)
    try:
        yield device
    finally:
        await device.stop()


@pytest.mark.parametrize(
    ("idle_timeout", "expected"),
    [
        # Polled only: the polls decide; streamed lines are not answers.
        (None, [DeviceState.STARTING, DeviceState.ONLINE, DeviceState.OFFLINE]),
        # Polled and streaming with idle_timeout: either sign of life keeps it online.
        (0.5, [DeviceState.STARTING, DeviceState.ONLINE]),
    ],
)
async def test_a_device_that_streams_but_ignores_its_query_does_not_flap(
    pty: PtyPair,
    streamer: Streamer,
    caplog: pytest.LogCaptureFixture,
    idle_timeout: float | None,
    expected: list[DeviceState],
) -> None:
    caplog.set_level(logging.INFO, SERIAL_LOG)
    section: dict[str, Any] = {
        "port": pty.path,
        "parser": "kv",
        "poll": 0.1,
        "queries": [{"name": "status", "send": "ST?\r\n", "expect": "^ST=", "timeout": 0.05}],
    }
    if idle_timeout is not None:
        section["idle_timeout"] = idle_timeout
    async with running(section) as (device, sink):
        await sink.wait_for(lambda: device.counters()["reply_timeouts"] >= 12, "12 polls")
        assert len(sink.readings) >= 12  # the stream is published all along
        assert transitions(sink) == expected
        if idle_timeout is None:
            assert detail(sink) == "no reply to any query"
    warnings = messages(caplog, logging.WARNING)
    assert warnings == [f"{DEVICE} on {pty.path}: no reply to status within 0.05 s"]
    assert len(messages(caplog, logging.INFO)) <= 2  # port open; no reply to any query


class VanishingPorts:
    """A link factory whose first ``flaps`` ports are lost as soon as they open: each is a
    fresh pty whose far end closes right after the open (a loose USB connector). Later opens
    get a pty that stays."""

    def __init__(self, flaps: int) -> None:
        self.flaps = flaps
        self.opened_at: list[float] = []
        self.stable = PtyPair()

    def __call__(self, config: DeviceConfig) -> SerialLink:
        self.opened_at.append(time.monotonic())
        if len(self.opened_at) > self.flaps:
            return SerialLink.open(config.model_copy(update={"port": self.stable.path}))
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            return SerialLink.open(config.model_copy(update={"port": os.ttyname(slave)}))
        finally:
            os.close(master)  # the adapter's read now fails: the port is gone
            os.close(slave)

    def close(self) -> None:
        self.stable.close()


async def test_a_port_that_vanishes_as_it_opens_backs_off_and_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, SERIAL_LOG)
    flaps = 5
    ports = VanishingPorts(flaps)
    settings = Settings(reopen=ReopenConfig(initial=0.05, max=1.6))
    try:
        async with running(
            {"port": "/dev/ttyLOOSE", "parser": "kv"},
            settings=settings,
            link_factory=ports,
            stable_after=0.3,
        ) as (device, sink):
            await sink.wait_for(lambda: len(ports.opened_at) > flaps, "the last reopen", within=10)
            assert state(sink) is DeviceState.DOWN  # reopened, but not proved itself yet
            os.write(ports.stable.master, b"n=1\n")
            await sink.wait_for(lambda: sink.values() == [{"n": 1}] and online(sink), "data")
            await sink.wait_for(
                lambda: any("recovered" in m for m in messages(caplog, logging.INFO)),
                "recovery logged",
            )
            counters = device.counters()
            assert (counters["opens"], counters["losses"]) == (flaps + 1, flaps)
    finally:
        ports.close()
    gaps = [b - a for a, b in zip(ports.opened_at, ports.opened_at[1:], strict=False)]
    assert gaps[-1] > 4 * gaps[0], gaps  # 0.05 s doubling (jitter ±20%) up to about 0.8 s
    assert gaps[-1] >= 0.6, gaps
    # Down once (one WARNING from the bridge), back once; not once per open.
    assert transitions(sink) == [
        DeviceState.STARTING,
        DeviceState.ONLINE,
        DeviceState.DOWN,
        DeviceState.ONLINE,
    ]
    info = messages(caplog, logging.INFO)
    assert len(info) == 3, info
    assert info[0].endswith("port open")
    assert "port lost: the port reported end of file" in info[1]
    assert info[2].endswith("recovered after 5 failure(s)")
    assert messages(caplog, logging.WARNING) == []  # the bridge warns about the state


async def test_event_names_invented_by_the_device_do_not_grow_the_throttle(
    pty: PtyPair,
) -> None:
    section = {"port": pty.path, "parser": {"json": {"event_key": "kind"}}, "min_interval": 60}
    names = 3 * CAPACITY
    async with running(section) as (device, sink):
        await sink.wait_for(lambda: online(sink))
        source = Instrument(pty.master)
        try:
            for index in range(names):
                await source.write(json.dumps({"kind": f"k{index}", "v": index}).encode() + b"\n")
            await source.write(b'{"kind": "k0", "v": -1}\n')  # k0 was forgotten: published
            await source.write(b'{"kind": "kX", "v": 1}\n{"kind": "kX", "v": 2}\n')
            await sink.wait_for(lambda: device.counters()["throttled"] == 1, within=20)
            await sink.wait_for(lambda: len(sink.readings) == names + 2)
        finally:
            source.stop()
        assert len(device._throttle) <= CAPACITY
        assert sink.values()[-2:] == [{"v": -1}, {"v": 1}]
