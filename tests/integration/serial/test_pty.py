"""The serial adapter against simulated instruments on real ptys (os.openpty and socat)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from edged.adapters.base import AdapterContext, Location
from edged.adapters.serial.adapter import HIGH_WATER
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported
from edged.model import Command, DeviceState
from tests.integration.serial.harness import (
    DEVICE,
    GATEWAY,
    detail,
    online,
    running,
    state,
    transitions,
)
from tests.integration.serial.instruments import (
    Instrument,
    PtyPair,
    QueryInstrument,
    Socat,
    garbage,
    nmea_epoch,
)

pytestmark = [pytest.mark.serial, pytest.mark.integration]


async def test_line_printing_sensor(pty: PtyPair) -> None:
    async with running({"port": pty.path, "parser": "kv"}) as (device, sink):
        await sink.wait_for(lambda: online(sink))
        sensor = Instrument(pty.master)
        try:
            for index in range(50):
                await sensor.write(b"T=%d.5 H=40\r\n" % index)
            await sink.wait_for(lambda: len(sink.readings) == 50)
        finally:
            sensor.stop()
        assert sink.values() == [{"T": index + 0.5, "H": 40} for index in range(50)]
        assert {r.event for r in sink.readings} == {"reading"}
        assert all(r.device == DEVICE for r in sink.readings)
        assert sink.states == [
            (DEVICE, DeviceState.STARTING, ""),
            (DEVICE, DeviceState.ONLINE, ""),
        ]
        counters = device.counters()
        assert counters["frames"] == 50
        assert counters["readings"] == 50


async def test_nmea_feeder_with_bad_checksums_and_location(
    pty: PtyPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edged.adapters.serial")
    context = AdapterContext(gateway=GATEWAY)
    published: list[Location] = []
    context.location.subscribe(published.append)
    section = {"port": pty.path, "parser": "nmea", "location_source": True}
    async with running(section, context) as (device, sink):
        await sink.wait_for(lambda: online(sink))
        feeder = Instrument(pty.master)
        try:
            for index in range(12):
                for sentence in nmea_epoch(index, corrupt=index % 4 == 1):
                    await feeder.write(sentence)
            await sink.wait_for(lambda: device.counters()["fixes"] >= 12)
        finally:
            feeder.stop()
        assert device.counters()["checksum"] == 3
        # Epochs with a corrupted GGA lack satellites and altitude but still have RMC's fix
        # (flushed when the next epoch starts).
        fixes = sink.values()
        assert len(fixes) == 12
        assert all(fix["valid"] for fix in fixes)
        assert [fix.get("satellites") for fix in fixes[:3]] == [9, None, 9]
        assert fixes[2]["time"] == "2024-05-01T12:00:02.000Z"
        assert fixes[2]["pdop"] == 1.6  # the first fix went out before any GSA or RMC
        assert fixes[2]["speed"] == pytest.approx(0.5144, abs=1e-3)
        assert len(published) == 12
        assert context.location.latest is published[-1]
        assert published[-1].latitude == pytest.approx(48 + 7.049 / 60)
        assert published[-1].measured_at == pytest.approx(1714564800 + 11)  # 2024-05-01T12:00:11Z
        assert published[0].elevation == 545.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "checksum mismatch" in w]) == 1  # once, not per sentence


async def test_query_response_instrument(pty: PtyPair) -> None:
    section = {
        "port": pty.path,
        "poll": 0.1,
        "queries": [
            {
                "name": "measure",
                "send": "MEAS?\r\n",
                "parser": "kv",
                "event": "climate",
                "timeout": 0.2,
            },
            {
                "name": "identity",
                "send": "ID?\r\n",
                "timeout": 0.2,
                "parser": {"csv": {"columns": ["vendor", "model"]}},
            },
            {"name": "mute", "send": "SILENT?\r\n", "parser": "text", "timeout": 0.05},
        ],
    }
    instrument = QueryInstrument(pty.master)
    try:
        async with running(section) as (device, sink):
            await sink.wait_for(lambda: len(sink.values("climate")) >= 2)
            assert sink.values("climate")[0] == {"T": 21.5, "H": 40}
            assert sink.values("reading")[0] == {"vendor": "ACME", "model": "TH-1"}
            assert device.counters()["reply_timeouts"] >= 1
            assert state(sink) is DeviceState.ONLINE  # some queries are answered

            instrument.silent = True
            await sink.wait_for(lambda: state(sink) is DeviceState.OFFLINE, "offline", within=5)
            assert detail(sink) == "no reply to any query"

            instrument.silent = False
            instrument.temperature = 30.25
            await sink.wait_for(lambda: {"T": 30.25, "H": 40} in sink.values("climate"))
            await sink.wait_for(lambda: online(sink), "online after the poll")
            # One transition each way, not one per poll.
            assert transitions(sink) == [
                DeviceState.STARTING,
                DeviceState.ONLINE,
                DeviceState.OFFLINE,
                DeviceState.ONLINE,
            ]
    finally:
        instrument.stop()
    assert instrument.received[:3] == [b"MEAS?", b"ID?", b"SILENT?"]


async def test_multi_frame_reply_and_expect_filters_unsolicited(pty: PtyPair) -> None:
    section = {
        "port": pty.path,
        "parser": "text",
        "poll": 30,
        "queries": [{"send": "MULTI?\r\n", "expect": "^[AB]=", "frames": 2, "parser": "kv"}],
    }
    instrument = QueryInstrument(pty.master)
    try:
        async with running(section) as (_, sink):
            await sink.wait_for(lambda: len(sink.readings) >= 2)
            assert sink.values()[:2] == [{"A": 1}, {"B": 2}]
            await instrument.write(b"hello\r\n")  # unsolicited: the device parser (text)
            await sink.wait_for(lambda: {"text": "hello"} in sink.values())
    finally:
        instrument.stop()


async def test_commands(pty: PtyPair) -> None:
    section = {
        "port": pty.path,
        "parser": "kv",
        "commands": {
            "setpoint": {
                "send": "SP {value:.1f}\r\n",
                "reply": "text",
                "expect": "^(OK|ERR)",
                "error": "^ERR",
            },
            "tare": {"send": "TARE\r\n"},
            "measure": {"send": "MEAS?\r\n", "reply": "parsed"},
            "raw": {"send_hex": "42 41 44 0d 0a", "reply": "text", "error": "^ERR"},
            "mute": {"send": "SILENT?\r\n", "reply": "text", "timeout": 0.1},
        },
    }

    def command(name: str, data: Any = None) -> Command:
        return Command(DEVICE, name, "json", b"", data)

    instrument = QueryInstrument(pty.master)
    try:
        async with running(section) as (device, sink):
            await sink.wait_for(lambda: online(sink))
            assert await device.execute(command("setpoint", {"value": 21.46})) == {
                "reply": "OK 21.5"
            }
            assert await device.execute(command("tare")) == {"sent": 6}
            assert await device.execute(command("measure")) == {
                "reply": "T=21.50 H=40",
                "values": {"T": 21.5, "H": 40},
            }
            with pytest.raises(CommandFailed, match="error: 'ERR unknown command'"):
                await device.execute(command("raw"))
            with pytest.raises(CommandFailed, match=r"no reply within 0\.1 s"):
                await device.execute(command("mute"))
            with pytest.raises(CommandRejected, match="control characters"):
                await device.execute(command("setpoint", {"value": "1\r\nTARE"}))
            with pytest.raises(CommandRejected, match="missing"):
                await device.execute(command("setpoint", {}))
            with pytest.raises(
                CommandUnsupported, match="known: measure, mute, raw, setpoint, tare"
            ):
                await device.execute(command("reboot"))
            # Replies went to the commands, not to the readings stream.
            assert sink.readings == []
            # TARE gets no reply: wait until the instrument has read everything written.
            await sink.wait_for(lambda: len(instrument.received) == 5, "the instrument read")
            assert instrument.received == [b"SP 21.5", b"TARE", b"MEAS?", b"BAD", b"SILENT?"]
            concurrent = await asyncio.gather(
                *(device.execute(command("setpoint", {"value": v})) for v in range(5))
            )
            assert [dict(r or {})["reply"] for r in concurrent] == [f"OK {v}.0" for v in range(5)]
    finally:
        instrument.stop()


async def test_commands_fail_cleanly_while_the_port_is_down(tmp_path: Path) -> None:
    section = {"port": str(tmp_path / "absent"), "commands": {"tare": {"send": "T\r\n"}}}
    async with running(section) as (device, sink):
        await sink.wait_for(lambda: state(sink) is DeviceState.DOWN)
        with pytest.raises(CommandFailed, match="is not open"):
            await device.execute(Command(DEVICE, "tare", "json", b"", None))


async def test_garbage_and_overlong_frames(pty: PtyPair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "edged.adapters.serial")
    section = {
        "port": pty.path,
        "encoding": "ascii",
        "framing": {"line": {"max_length": 100}},
        "parser": {"kv": {"fields": {"n": {"type": "int", "required": True}}}},
    }
    async with running(section) as (device, sink):
        await sink.wait_for(lambda: online(sink))
        source = Instrument(pty.master)
        try:
            for index in range(20):
                await source.write(b"n=%d\n" % index)
                await source.write(garbage(300, seed=index) + b"\n")  # over the limit
                await source.write(b"n=\xff\xfe\n")  # undecodable
                await source.write(b"x" * 50_000)  # a huge frame without a delimiter
                await source.write(b"\nnonsense\n")
            await source.write(b"n=999\n")
            await sink.wait_for(lambda: {"n": 999} in sink.values(), within=10)
        finally:
            source.stop()
        assert sink.values() == [{"n": index} for index in range(20)] + [{"n": 999}]
        counters = device.counters()
        assert counters["overlong"] == 40
        assert counters["decode"] == 20
        assert counters["parse"] == 20
        assert counters["discarded_bytes"] >= 20 * 50_000
        assert device._framer.pending <= 100
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) <= 4, messages  # overlong, decode, parse: once each, not per frame


async def test_slow_consumer_pauses_reading_without_loss(pty: PtyPair) -> None:
    async with running({"port": pty.path, "parser": "kv"}) as (device, sink):
        await sink.wait_for(lambda: online(sink))
        sink.gate = asyncio.Event()  # the bridge is not taking readings
        source = Instrument(pty.master)
        count = 20_000
        try:
            writer = asyncio.create_task(
                source.write(b"".join(b"i=%d pad=%s\n" % (i, b"x" * 60) for i in range(count)))
            )
            # Reading pauses at the high-water mark, then the pty fills up: the writer is held
            # back, nothing is dropped.
            await sink.wait_for(lambda: device._queued >= HIGH_WATER, "reading paused")
            assert not writer.done()
            sink.gate.set()
            await writer
            await sink.wait_for(lambda: len(sink.readings) == count, within=30)
        finally:
            source.stop()
        assert [v["i"] for v in sink.values()] == list(range(count))


async def test_missing_port_starts_down_and_comes_up_when_plugged(
    pty: PtyPair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "edged.adapters.serial")
    link = tmp_path / "usb-ACME_sensor-if00"
    section = {"port": str(link), "parser": "kv"}
    async with running(section, stable_after=0.2) as (device, sink):
        await sink.wait_for(lambda: device.counters()["open_failures"] >= 3, "3 failed opens")
        assert state(sink) is DeviceState.DOWN
        assert detail(sink) == (
            f"cannot open {link}: no such device (not plugged in? check the path, "
            "e.g. ls /dev/serial/by-id/)"
        )
        link.symlink_to(pty.path)
        await sink.wait_for(lambda: device.counters()["opens"] == 1, "the port opened")
        os.write(pty.master, b"T=1\n")
        await sink.wait_for(lambda: sink.values() == [{"T": 1}], "the first reading")
        assert online(sink)
        await sink.wait_for(
            lambda: any("recovered" in r.getMessage() for r in caplog.records), "recovery logged"
        )
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([m for m in messages if "cannot open" in m]) == 1  # then DEBUG while retrying
    assert len([m for m in messages if "recovered after" in m]) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # the sink warns
    assert transitions(sink) == [DeviceState.STARTING, DeviceState.DOWN, DeviceState.ONLINE]


async def test_device_unplugged_and_plugged_back(tmp_path: Path) -> None:
    link = tmp_path / "ttyGPS"
    first = PtyPair()
    second = PtyPair()
    try:
        link.symlink_to(first.path)
        async with running({"port": str(link), "parser": "kv"}) as (device, sink):
            await sink.wait_for(lambda: online(sink))
            os.write(first.master, b"n=1\n")
            await sink.wait_for(lambda: len(sink.readings) == 1)

            link.unlink()  # the by-id link goes away with the device
            first.close()
            await sink.wait_for(lambda: state(sink) is DeviceState.DOWN)
            assert detail(sink).startswith("port lost")
            await sink.wait_for(lambda: device.counters()["open_failures"] >= 2)

            # Plugged back: the port opens, and the device counts as back once data comes.
            link.symlink_to(second.path)
            await sink.wait_for(lambda: device.counters()["opens"] == 2)
            assert state(sink) is DeviceState.DOWN
            os.write(second.master, b"n=2\n")
            await sink.wait_for(lambda: len(sink.readings) == 2 and online(sink))
            assert sink.values() == [{"n": 1}, {"n": 2}]
            counters = device.counters()
            assert (counters["opens"], counters["losses"]) == (2, 1)
    finally:
        first.close()
        second.close()


async def test_socat_port_removed_and_recreated(tmp_path: Path) -> None:
    socat = Socat(tmp_path)
    socat.start()
    try:
        async with running({"port": str(socat.device), "parser": "json"}) as (device, sink):
            for round_ in range(2):
                expected = round_ + 1
                await sink.wait_for(lambda: device.counters()["opens"] == expected)  # noqa: B023
                fd = os.open(socat.instrument, os.O_RDWR | os.O_NOCTTY)
                try:
                    os.write(fd, b'{"round": %d}\n' % round_)
                    await sink.wait_for(lambda: len(sink.readings) == expected)  # noqa: B023
                    assert online(sink)
                finally:
                    os.close(fd)
                socat.stop()  # links removed, ptys gone
                await sink.wait_for(lambda: state(sink) is DeviceState.DOWN)
                socat.start()
            await sink.wait_for(lambda: device.counters()["opens"] == 3)
            assert sink.values() == [{"round": 0}, {"round": 1}]
            assert device.counters()["losses"] == 2
    finally:
        socat.stop()


async def test_port_is_opened_exclusively(pty: PtyPair) -> None:
    section = {"port": pty.path, "parser": "text"}
    async with running(section) as (_, first), running(section) as (_, second):
        await first.wait_for(lambda: online(first))
        await second.wait_for(lambda: state(second) is DeviceState.DOWN)
        assert "another program has it open" in detail(second)


async def test_idle_timeout_marks_the_device_offline(pty: PtyPair) -> None:
    async with running({"port": pty.path, "parser": "kv", "idle_timeout": 0.1}) as (_, sink):
        await sink.wait_for(lambda: state(sink) is DeviceState.OFFLINE)
        assert detail(sink) == "nothing received for 0.1 s"
        os.write(pty.master, b"a=1\n")
        await sink.wait_for(lambda: online(sink) and len(sink.readings) == 1)


async def test_min_interval_and_ignore(pty: PtyPair) -> None:
    section = {"port": pty.path, "parser": "kv", "min_interval": 60, "ignore": "^#"}
    async with running(section) as (device, sink):
        await sink.wait_for(lambda: online(sink))
        os.write(pty.master, b"# banner v1.0\na=1\na=2\na=3\n")
        await sink.wait_for(lambda: device.counters()["throttled"] == 2)
        assert sink.values() == [{"a": 1}]
        assert device.counters()["ignored"] == 1


async def test_scale_with_stx_etx_frames_among_noise(pty: PtyPair) -> None:
    section = {
        "port": pty.path,
        "bytesize": 7,
        "parity": "even",
        "framing": {"markers": {"start": "\x02", "end": "\x03", "max_length": 32}},
        "parser": {
            "regex": {
                "pattern": r"^(?P<weight>[-+ ]\d+\.\d+)\s*(?P<unit>kg|g)$",
                "fields": {"weight": {"type": "float"}, "unit": {}},
            }
        },
    }
    async with running(section) as (device, sink):
        await sink.wait_for(lambda: online(sink))
        scale = Instrument(pty.master)
        try:
            await scale.write(b"\x00\xff\x02 12.50 kg\x03\r\nnoise\x02-0.25 kg\x03")
            await scale.write(b"\x02 1.0 k")  # truncated by the next start marker
            await scale.write(b"\x02+3.75 g\x03" + b"\x02" + b"9" * 40 + b"\x03")
            await sink.wait_for(lambda: len(sink.readings) == 3)
        finally:
            scale.stop()
        assert sink.values() == [
            {"weight": 12.5, "unit": "kg"},
            {"weight": -0.25, "unit": "kg"},
            {"weight": 3.75, "unit": "g"},
        ]
        counters = device.counters()
        assert counters["overlong"] == 1
        assert counters["garbage_bytes"] == len(b"\x00\xff") + len(b"\r\nnoise") + len(
            b" 1.0 k\x02"
        )


async def test_a_write_the_device_never_takes_fails_the_command_not_the_port(pty: PtyPair) -> None:
    section = {
        "port": pty.path,
        "parser": "kv",
        "write_timeout": 0.2,
        "commands": {"flood": {"send": "X" * 1_000_000}, "ping": {"send": "P\r\n"}},
    }
    async with running(section) as (device, sink):
        await sink.wait_for(lambda: online(sink))
        # Nobody reads the instrument side: the pty fills up and the write stalls.
        with pytest.raises(CommandFailed, match=r"write timed out after 0\.2 s"):
            await device.execute(Command(DEVICE, "flood", "json", b"", None))
        os.write(pty.master, b"a=1\n")  # reading still works
        await sink.wait_for(lambda: sink.values() == [{"a": 1}])
        assert state(sink) is DeviceState.ONLINE  # a device that only prints: the port decides
        counters = device.counters()
        assert (counters["write_timeouts"], counters["losses"]) == (1, 0)
