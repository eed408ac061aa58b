"""A line runner against pymodbus's own TCP server: decoding, planning, health, reports, writes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct

import pytest

from edged.adapters.base import AdapterContext
from edged.adapters.modbus import compat
from edged.adapters.modbus.adapter import ModbusLine, create_adapters
from edged.adapters.modbus.config import Settings
from edged.adapters.modbus.device import DevicePoller
from edged.adapters.modbus.link import Link
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported
from edged.model import Command, DeviceIdentity, DeviceState
from tests.integration.modbus.helpers import bus, running, spec
from tests.support.sink import RecordingSink

pytestmark = [pytest.mark.modbus, pytest.mark.integration]

Units = dict[int, compat.EmulatedUnit]


def url_of(server: compat.EmulatorServer) -> str:
    return f"tcp://127.0.0.1:{server.port}"


def command(device_id: str, name: str, data: object) -> Command:
    return Command(DeviceIdentity("meter", device_id), name, "json", b"", data)


def float_registers(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


async def test_every_type_decoded_end_to_end(
    units: Units, tcp_server: compat.EmulatorServer
) -> None:
    msw, lsw = float_registers(21.5)
    units[5] = compat.EmulatedUnit(
        holding={
            0: 0xFFFE,  # int16 -2
            1: 215,  # uint16 scaled 0.1
            2: 0x0001,
            3: 0xE240,  # int32 123456
            4: lsw,
            5: msw,  # float32 21.5, word order little
            6: 0x4142,
            7: 0x4300,  # string "ABC"
            8: 0b1010_0000_0000_0101,  # bit fields
            20: 0,
            21: 0,
            22: 0,
            23: 100,  # uint64
        },
        input={0: 0x4035, 1: 0x8000, 2: 0, 3: 0},  # float64 21.5
        coils={3: True},
        discrete={9: False},
    )
    device = spec(
        "m1",
        url=url_of(tcp_server),
        unit=5,
        interval=0.05,
        points={
            "i16": {"address": 0, "type": "int16"},
            "temp": {"address": 1, "scale": 0.1, "unit": "°C"},
            "count": {"address": 2, "type": "int32"},
            "flow": {"address": 4, "type": "float32", "word_order": "little"},
            "name": {"address": 6, "type": "string", "count": 2},
            "alarm": {"address": 8, "type": "bits", "bit": 0},
            "door": {"address": 8, "type": "bits", "bit": 1},
            "mode": {"address": 8, "type": "bits", "bit": 13, "width": 3},
            "energy": {"address": 20, "type": "uint64", "scale": 0.001, "offset": 1},
            "level": {"address": 0, "kind": "input", "type": "float64"},
            "pump": {"address": 3, "kind": "coil"},
            "switch": {"address": 9, "kind": "discrete"},
        },
    )
    line = ModbusLine(bus(url_of(tcp_server)), [device])
    sink = RecordingSink()
    async with running(line, sink):
        await sink.wait_for(lambda: len(sink.readings) >= 1)
    values = dict(sink.readings[0].values)
    assert values == {
        "i16": -2,
        "temp": 21.5,
        "count": 123456,
        "flow": 21.5,
        "name": "ABC",
        "alarm": True,
        "door": False,
        "mode": 5,
        "energy": 1.1,
        "level": 21.5,
        "pump": True,
        "switch": False,
        "_units": {"temp": "°C"},
    }
    assert sink.state_of("m1") == (DeviceState.ONLINE, "")


async def test_requests_per_cycle_equal_the_plan(
    units: Units, tcp_server: compat.EmulatorServer
) -> None:
    units[1] = compat.EmulatedUnit(
        holding={a: a for a in range(2000)}, coils=dict.fromkeys(range(64), True)
    )
    points: dict[str, dict[str, object]] = {f"r{a}": {"address": a} for a in range(0, 2000, 2)}
    points.update({f"c{a}": {"address": a, "kind": "coil"} for a in range(0, 64, 3)})
    device = spec("m1", url=url_of(tcp_server), unit=1, interval=0.0, points=points)
    line = ModbusLine(bus(url_of(tcp_server)), [device])
    (poller,) = line.pollers
    assert len(poller.full_plan()) == 17  # 16 register reads + 1 coil read
    sink = RecordingSink()
    async with running(line, sink):
        await sink.wait_for(lambda: len(sink.readings) >= 5)
    cycles = poller.cycles
    assert units[1].reads in (17 * cycles, 17 * cycles + 1)  # a read of the cut-off cycle
    last = sink.readings[-1].values
    assert last["r1998"] == 1998
    assert last["c63"] is True
    assert len(last) == 1000 + 22


async def test_a_dead_device_costs_one_timeout_per_probe_and_never_stalls_the_others(
    units: Units, tcp_server: compat.EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 11})
    units[3] = compat.EmulatedUnit(holding={0: 33})
    devices = [
        spec(name, url=url_of(tcp_server), unit=unit, interval=0.05, points={"v": {"address": 0}})
        for name, unit in (("live1", 1), ("dead", 2), ("live3", 3))
    ]
    line = ModbusLine(bus(url_of(tcp_server), timeout=0.1, retries=1, quarantine_max=0.4), devices)
    sink = RecordingSink()
    caplog.set_level(logging.DEBUG, logger="edged.adapters.modbus")
    async with running(line, sink):
        await sink.wait_for(lambda: len(sink.of("live1")) >= 3)
        started = asyncio.get_running_loop().time()
        before = (len(sink.of("live1")), len(sink.of("live3")))
        await asyncio.sleep(1.0)
        elapsed = asyncio.get_running_loop().time() - started
        assert line.link is not None
        timeouts = line.link.stats.timeouts
        dead = line.pollers[1]
        # The dead unit was probed a few times, each probe one timeout, never more.
        assert dead.requests - 2 <= timeouts <= dead.requests
        # Live devices kept their 50 ms rhythm: the probes cost at most a few of their cycles.
        for name, count in zip(("live1", "live3"), before, strict=True):
            assert len(sink.of(name)) - count >= elapsed / 0.05 * 0.6
        assert sink.state_of("dead") is not None
        assert sink.state_of("dead")[0] is DeviceState.OFFLINE  # type: ignore[index]
        units[2] = compat.EmulatedUnit(holding={0: 22})  # it comes back
        await sink.wait_for(lambda: len(sink.of("dead")) >= 1, within=3)
    assert sink.of("dead")[0].values == {"v": 22}
    assert sink.state_of("dead") == (DeviceState.ONLINE, "")
    # Each health change is reported once (the daemon's bridge logs it); the adapter itself
    # logs nothing above DEBUG about it.
    dead_states = [(state, detail) for who, state, detail in sink.states if who.device_id == "dead"]
    assert [state for state, _ in dead_states] == [
        DeviceState.STARTING,
        DeviceState.OFFLINE,
        DeviceState.ONLINE,
    ]
    assert dead_states[1][1].startswith("no answer from unit 2 within 100 ms (tcp://127.0.0.1:")
    assert dead_states[1][1].endswith("); probing with backoff")
    assert [r.message for r in caplog.records if r.levelno > logging.DEBUG] == []


async def test_exception_responses_mark_only_the_affected_points(
    units: Units, tcp_server: compat.EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Register 3 is missing: the merged read 0..5 is refused, so the poller learns.
    units[1] = compat.EmulatedUnit(holding={0: 10, 1: 11, 2: 12, 4: 14, 5: 15})
    points = {f"r{a}": {"address": a} for a in (0, 1, 2, 3, 4, 5)}
    device = spec("m1", url=url_of(tcp_server), unit=1, interval=0.02, points=points)
    line = ModbusLine(bus(url_of(tcp_server)), [device])
    (poller,) = line.pollers
    sink = RecordingSink()
    async with running(line, sink):
        await sink.wait_for(lambda: len(sink.readings) >= 4)
        first = sink.readings[0].values
        assert first == {
            "r0": 10, "r1": 11, "r2": 12, "r4": 14, "r5": 15,
            "_errors": {"r3": {"code": 2, "error": "illegal data address"}},
        }  # fmt: skip
        # Learned: the refused read was split until r3 stood alone; the rest stays merged.
        plan = [(block.address, block.count) for block in poller.full_plan()]
        assert plan == [(0, 3), (3, 1), (4, 2)]
        reads = units[1].reads
        cycles = poller.cycles
        await sink.wait_for(lambda: poller.cycles >= cycles + 4)
        served = (units[1].reads - reads) / (poller.cycles - cycles)
        assert 1.5 <= served <= 2.5  # two reads served per cycle (plus a cut-off cycle)
        state = sink.state_of("m1")
        assert state == (
            DeviceState.ONLINE,
            "1 point(s) refused: r3 (exception 2 (illegal data address))",
        )
        # A busy device: every point bad with code 6, the device itself still online.
        units[1].failure = 6
        await sink.wait_for(lambda: "r0" in sink.readings[-1].values.get("_errors", {}))
        errors = sink.readings[-1].values["_errors"]
        assert errors["r0"] == {"code": 6, "error": "device busy"}
        assert sink.state_of("m1")[0] is DeviceState.ONLINE  # type: ignore[index]
        units[1].failure = None
        await sink.wait_for(lambda: sink.readings[-1].values.get("r0") == 10)
    refusals = [r for r in caplog.records if "point r0 refused" in r.message]
    assert len(refusals) == 1  # logged once, not every cycle


async def test_splits_around_a_refused_register_are_undone_where_not_needed(
    units: Units, tcp_server: compat.EmulatorServer
) -> None:
    """Learning isolates register 2 (missing) with scaffolding splits; only what the device
    proved stays: r2 alone, r0-r1 and r3-r7 merged (3 reads, not 4), and the split over a
    refused hole between x0 and x2 (both readable) kept without being tried again."""
    units[1] = compat.EmulatedUnit(holding={a: 10 + a for a in range(8) if a != 2})
    units[2] = compat.EmulatedUnit(holding={0: 5, 2: 7})  # address 1 is a hole it refuses
    url = url_of(tcp_server)
    registers = {f"r{a}": {"address": a} for a in range(8)}
    m1 = spec("m1", url=url, unit=1, interval=0.02, points=registers)
    holes = {"x0": {"address": 0}, "x2": {"address": 2}}
    m2 = spec("m2", url=url, unit=2, interval=0.02, points=holes)
    line = ModbusLine(bus(url), [m1, m2])
    p1, p2 = line.pollers
    sink = RecordingSink()

    def plan(poller: DevicePoller) -> list[tuple[int, int]]:
        return [(block.address, block.count) for block in poller.full_plan()]

    async def requests_per_poll(poller: DevicePoller, unit: compat.EmulatedUnit) -> float:
        requests, cycles = unit.reads + unit.refused, poller.cycles
        await sink.wait_for(lambda: poller.cycles >= cycles + 10, "ten polls")
        return (unit.reads + unit.refused - requests) / (poller.cycles - cycles)

    async with running(line, sink):
        await sink.wait_for(lambda: p1.cycles >= 2 and p2.cycles >= 2, "learning")
        assert plan(p1) == [(0, 2), (2, 1), (3, 5)]
        assert plan(p2) == [(0, 1), (2, 1)]
        assert 2.8 <= await requests_per_poll(p1, units[1]) <= 3.2
        refused = units[2].refused
        assert 1.8 <= await requests_per_poll(p2, units[2]) <= 2.2
        assert units[2].refused == refused  # the proven split is not tried again
        assert sink.values_of("m1")[-1]["_errors"] == {
            "r2": {"code": 2, "error": "illegal data address"}
        }
        units[1].holding[2] = 12  # the register appears: everything merges again
        await sink.wait_for(lambda: sink.values_of("m1")[-1].get("r2") == 12, "r2 reads again")
        await sink.wait_for(lambda: plan(p1) == [(0, 8)], "the merged plan")
        assert 0.8 <= await requests_per_poll(p1, units[1]) <= 1.2
    assert sink.values_of("m1")[-1] == {f"r{a}": 10 + a for a in range(8)}


async def test_report_on_change_with_deadband(
    units: Units, tcp_server: compat.EmulatorServer
) -> None:
    unit = compat.EmulatedUnit(holding={0: 200, 1: 5, 2: 0x4142})
    units[1] = unit
    device = spec(
        "m1",
        url=url_of(tcp_server),
        unit=1,
        interval=0.02,
        report="changes",
        points={
            "temp": {"address": 0, "scale": 0.1, "deadband": 0.5},
            "count": {"address": 1},
            "tag": {"address": 2, "type": "string", "count": 1},
        },
    )
    line = ModbusLine(bus(url_of(tcp_server)), [device])
    (poller,) = line.pollers
    sink = RecordingSink()
    async with running(line, sink):
        await sink.wait_for(lambda: len(sink.readings) >= 1)
        assert sink.readings[0].values == {"temp": 20.0, "count": 5, "tag": "AB"}
        cycles = poller.cycles
        unit.holding[0] = 204  # 20.4: within the deadband
        await sink.wait_for(lambda: poller.cycles >= cycles + 5)
        assert len(sink.readings) == 1
        unit.holding[0] = 206  # 20.6: beyond it
        unit.holding[2] = 0x4143
        await sink.wait_for(lambda: len(sink.readings) >= 2)
        assert sink.readings[1].values == {"temp": 20.6, "tag": "AC"}
        unit.holding[1] = 6
        await sink.wait_for(lambda: len(sink.readings) >= 3)
        assert sink.readings[2].values == {"count": 6}


async def test_full_report_every(units: Units, tcp_server: compat.EmulatorServer) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 1, 1: 2})
    device = spec(
        "m1",
        url=url_of(tcp_server),
        unit=1,
        interval=0.02,
        report="changes",
        full_report_every=0.15,
        points={"a": {"address": 0}, "b": {"address": 1}},
    )
    line = ModbusLine(bus(url_of(tcp_server)), [device])
    sink = RecordingSink()
    async with running(line, sink):
        await sink.wait_for(lambda: len(sink.readings) >= 3, within=2)
    assert all(r.values == {"a": 1, "b": 2} for r in sink.readings)
    gaps = [
        b.timestamp - a.timestamp for a, b in zip(sink.readings, sink.readings[1:], strict=False)
    ]
    assert all(gap >= 0.12 for gap in gaps)


async def test_per_point_intervals(units: Units, tcp_server: compat.EmulatorServer) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 1, 100: 2})
    device = spec(
        "m1",
        url=url_of(tcp_server),
        unit=1,
        interval=0.02,
        points={"fast": {"address": 0}, "slow": {"address": 100, "interval": 0.2}},
    )
    line = ModbusLine(bus(url_of(tcp_server)), [device])
    sink = RecordingSink()
    async with running(line, sink):
        await sink.wait_for(lambda: len(sink.readings) >= 20, within=3)
    slow = sum("slow" in r.values for r in sink.readings)
    assert all("fast" in r.values for r in sink.readings)
    assert 1 <= slow <= 5


async def test_writes_and_refused_writes(units: Units, tcp_server: compat.EmulatorServer) -> None:
    unit = compat.EmulatedUnit(holding={0: 0, 10: 0, 11: 0}, coils={4: False})
    units[1] = unit
    device = spec(
        "m1",
        url=url_of(tcp_server),
        unit=1,
        interval=0.05,
        points={"sp": {"address": 0, "scale": 0.1, "type": "int16"}},
        commands={
            "setpoint": {"address": 0, "type": "int16", "scale": 0.1, "min": 5, "max": 30},
            "total": {"address": 10, "type": "float32"},
            "pump": {"address": 4, "kind": "coil"},
            "ghost": {"address": 500},
        },
    )
    line = ModbusLine(bus(url_of(tcp_server), timeout=0.1), [device])
    sink = RecordingSink()
    async with running(line, sink):
        await sink.wait_for(lambda: len(sink.readings) >= 1)
        result = await line.execute(command("m1", "setpoint", {"value": 21.5, "reqId": "r1"}))
        assert result == {"written": {"kind": "holding", "address": 0, "registers": [215]}}
        assert unit.holding[0] == 215
        await sink.wait_for(lambda: sink.readings[-1].values.get("sp") == 21.5)
        await line.execute(command("m1", "total", 21.5))
        assert [unit.holding[10], unit.holding[11]] == float_registers(21.5)
        await line.execute(command("m1", "pump", {"value": True}))
        assert unit.coils[4] is True
        writes = unit.writes
        with pytest.raises(CommandRejected, match="above the maximum 30"):
            await line.execute(command("m1", "setpoint", {"value": 31}))
        with pytest.raises(CommandRejected, match="expected a number"):
            await line.execute(command("m1", "setpoint", {"value": "warm"}))
        with pytest.raises(CommandRejected, match="expected true or false"):
            await line.execute(command("m1", "pump", {"value": "on"}))
        with pytest.raises(CommandUnsupported, match="known: setpoint, total, pump, ghost"):
            await line.execute(command("m1", "reboot", {}))
        assert unit.writes == writes  # nothing was written
        with pytest.raises(
            CommandFailed, match=r"refused the write: exception 2 \(illegal data address\)"
        ):
            await line.execute(command("m1", "ghost", 1))
        unit.failure = 4
        with pytest.raises(CommandFailed, match=r"exception 4 \(device failure\)"):
            await line.execute(command("m1", "setpoint", 20))
        units.pop(1)
        with pytest.raises(CommandFailed, match="no answer from unit 1"):
            await line.execute(command("m1", "setpoint", 20))
    assert unit.holding[0] == 215


async def test_reconnects_after_the_server_goes_away(
    units: Units, caplog: pytest.LogCaptureFixture
) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 7})
    server = await compat.serve_tcp(compat.EmulatedBus(units))
    port = server.port
    device = spec(
        "m1",
        url=f"tcp://127.0.0.1:{port}",
        unit=1,
        interval=0.02,
        points={"v": {"address": 0}},
        commands={"set": {"address": 0}},
    )
    line = ModbusLine(
        bus(f"tcp://127.0.0.1:{port}", timeout=0.1, reconnect_max=0.2), [device], stable_after=0.3
    )
    sink = RecordingSink()
    caplog.set_level(logging.INFO, logger="edged.adapters.modbus")
    try:
        async with running(line, sink):
            await sink.wait_for(lambda: len(sink.readings) >= 1)
            await server.stop()
            await sink.wait_for(lambda: sink.state_of("m1")[0] is DeviceState.OFFLINE)  # type: ignore[index]
            with pytest.raises(CommandFailed, match="not connected"):
                await line.execute(command("m1", "set", 1))
            await asyncio.sleep(0.5)  # several failed reconnects
            count = len(sink.readings)
            server = await compat.serve_tcp(compat.EmulatedBus(units), port=port)
            await sink.wait_for(lambda: len(sink.readings) > count, within=3)
            assert sink.state_of("m1") == (DeviceState.ONLINE, "")
            await sink.wait_for(lambda: not line.retry.failing, "recovery confirmed", within=3)
    finally:
        await server.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "recovered" in r.message]
    assert len(errors) == 1, [r.message for r in errors]
    assert len(infos) == 1
    assert line.counters()["line_outages"] == 1


async def test_an_endpoint_that_accepts_and_drops_is_retried_ever_more_slowly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A gateway at its connection limit accepts and closes at once: the backoff must grow
    (a connect is no success), and the whole episode is one ERROR, with no INFO per connect."""
    loop = asyncio.get_running_loop()
    accepted: list[float] = []

    def accept_and_close(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(loop.time())
        writer.close()

    server = await asyncio.start_server(accept_and_close, "127.0.0.1", 0)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    device = spec("m1", url=url, unit=1, interval=0.02, points={"v": {"address": 0}})
    line = ModbusLine(bus(url, timeout=0.1, reconnect_max=0.8), [device], reconnect_initial=0.05)
    sink = RecordingSink()
    caplog.set_level(logging.DEBUG, logger="edged.adapters.modbus")
    try:
        async with running(line, sink):
            await sink.wait_for(lambda: len(accepted) >= 7, "seven connections", within=10)
    finally:
        server.close()
        await server.wait_closed()
    gaps = [b - a for a, b in itertools.pairwise(accepted)]
    # Each gap holds at least the backoff delay (doubling from 0.05 s to 0.8 s, -20 % at worst).
    for gap, delay in zip(gaps, (0.05, 0.1, 0.2, 0.4, 0.8, 0.8), strict=True):
        assert gap >= 0.8 * delay, gaps
    assert line.retry.episodes == 1 and line.retry.failures >= 6
    ours = [r for r in caplog.records if r.name.startswith("edged.adapters.modbus")]
    loud = [r.getMessage() for r in ours if r.levelno >= logging.WARNING]
    assert len(loud) == 1, loud
    assert ours[0].levelno == logging.ERROR and "retrying in" in loud[0]
    assert not [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert set(sink.states_of("m1")) == {DeviceState.STARTING, DeviceState.OFFLINE}


async def test_create_adapters_groups_devices_by_line(
    units: Units, tcp_server: compat.EmulatorServer
) -> None:
    settings = Settings.model_validate(
        {"buses": {"plc": {"url": url_of(tcp_server), "timeout": 0.2}}}
    )
    devices = [
        spec("a", bus="plc", unit=1, points={"v": {"address": 0}}),
        spec("b", url=url_of(tcp_server), unit=2, points={"v": {"address": 0}}),
        spec("c", url="tcp://127.0.0.1:1", unit=1, points={"v": {"address": 0}}),
    ]
    context = AdapterContext(gateway=DeviceIdentity("gw", "gw-1"))
    lines = create_adapters(devices, settings, context)
    assert [sorted(d.device_id for d in line.devices) for line in lines] == [["a", "b"], ["c"]]
    first = lines[0]
    assert isinstance(first, ModbusLine)
    assert first.bus.timeout == 0.2


async def test_a_cancellation_arriving_with_an_answer_stops_the_line(
    units: Units, tcp_server: compat.EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel lands after the answer completed pymodbus's future but before its
    ``wait_for`` resumed: Python 3.11 then returns the answer and drops the cancellation."""
    units[1] = compat.EmulatedUnit(holding={0: 1})
    url = url_of(tcp_server)
    line = ModbusLine(
        bus(url), [spec("m1", url=url, unit=1, interval=0, points={"a": {"address": 0}})]
    )
    sink = RecordingSink()
    task = asyncio.create_task(line.run(sink))
    received = Link._received
    answers = 0

    def cancel_on_fifth_answer(link: Link) -> None:
        nonlocal answers
        received(link)
        answers += 1
        if answers == 5:
            asyncio.get_running_loop().call_soon(task.cancel)

    monkeypatch.setattr(Link, "_received", cancel_on_fifth_answer)
    done, _ = await asyncio.wait({task}, timeout=2)
    if task not in done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pytest.fail("the line ignored its cancellation")
    assert task.cancelled()
    assert len(sink.readings) >= 4
