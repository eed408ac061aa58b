"""The adapter contract (edged/adapters/base.py, edged/supervisor.py), checked on every adapter.

Each test runs against every adapter kind with its real counterpart (see rigs.py). Where a case
cannot apply to a kind, the test is parametrised only over the kinds it applies to, and
rigs.py says why the others are left out: ``WITH_COUNTERPART`` (the simulated adapter has none),
``SEVERAL_DEVICES`` (serial and simulated runners serve one device each).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping

import orjson
import pytest

from edged.errors import (
    CommandRejected,
    CommandUnsupported,
    PermanentAdapterError,
    TransientAdapterError,
)
from edged.model import Command, DeviceIdentity, DeviceState, JSONValue
from tests.integration.contract.rigs import (
    SEVERAL_DEVICES,
    WITH_COMMANDS,
    WITH_COUNTERPART,
    Counterpart,
    Rig,
    RigFactory,
    params,
)
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

STOP_WITHIN = 2.0
"""Seconds a cancelled run() may take to end (the contract's "promptly")."""
WITHIN = 10.0
"""Seconds a counterpart gets to answer, or an adapter to notice that it is gone."""
UNREACHABLE = (DeviceState.OFFLINE, DeviceState.DOWN)


# --- helpers --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(rig: Rig, sink: RecordingSink) -> AsyncIterator[asyncio.Task[None]]:
    """Run the rig's adapter as a task for the block; cancel it afterwards if still running.

    The test checks how the task ended; this only makes sure it is gone (bounded, so an adapter
    that ignores cancellation fails the test instead of hanging the suite).
    """
    task = asyncio.create_task(rig.adapter.run(sink), name=f"contract:{rig.adapter.name}")
    try:
        yield task
    finally:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=WITHIN)
        if task in done and not task.cancelled():
            task.exception()  # retrieved: the test judged it (or is failing already)
        assert task in done, f"{rig.adapter.name}: run() ignored cancellation"


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel ``run()`` and check that it ends promptly, through CancelledError."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN)
    assert task in done, f"run() still running {STOP_WITHIN:g} s after being cancelled"
    if not task.cancelled():
        error = task.exception()
        raise AssertionError(
            f"cancelled run() ended with {error!r} instead of CancelledError"
            if error is not None
            else "cancelled run() returned normally: it swallowed the cancellation"
        )


def assert_running(task: asyncio.Task[None]) -> None:
    """``run()`` is still running (it ends only when cancelled)."""
    if task.done():
        error = None if task.cancelled() else task.exception()
        raise AssertionError(f"run() ended on its own: {error!r}")


def assert_running_or_typed(task: asyncio.Task[None]) -> None:
    """``run()`` is still running, or ended with an error the supervisor restarts it on."""
    if not task.done():
        return
    assert not task.cancelled(), "run() ended as cancelled without being cancelled"
    error = task.exception()
    assert isinstance(error, TransientAdapterError | PermanentAdapterError), (
        f"run() ended with {error!r}: only Transient- or PermanentAdapterError may end it"
    )


def online(sink: RecordingSink, device: DeviceIdentity) -> bool:
    """The device's latest state is online."""
    latest = sink.state_of(device)
    return latest is not None and latest[0] is DeviceState.ONLINE


def unreachable(sink: RecordingSink, device: DeviceIdentity) -> bool:
    """The device's latest state is offline or down."""
    latest = sink.state_of(device)
    return latest is not None and latest[0] in UNREACHABLE


def states_since(sink: RecordingSink, mark: int, device: DeviceIdentity) -> list[DeviceState]:
    """The device's states reported after the first ``mark`` state reports."""
    return [state for who, state, _ in sink.states[mark:] if who == device]


async def until_serving(
    rig: Rig, sink: RecordingSink, *, readings_from: int = 0, states_from: int = 0
) -> None:
    """Wait until every device reported online and delivered two readings (after the marks)."""

    def serving() -> bool:
        return all(
            sum(r.device == device for r in sink.readings[readings_from:]) >= 2
            and DeviceState.ONLINE in states_since(sink, states_from, device)
            for device in rig.devices
        )

    try:
        await sink.wait_for(serving, "an online state and two readings from every device", WITHIN)
    except AssertionError as exc:
        seen = {
            str(device): (
                sum(r.device == device for r in sink.readings[readings_from:]),
                states_since(sink, states_from, device),
            )
            for device in rig.devices
        }
        raise AssertionError(f"{exc}; (readings, states) per device: {seen}") from None


def check_counters(rig: Rig) -> None:
    """counters(): synchronous, a Mapping of str keys to JSON values, and cheap."""
    counters = rig.adapter.counters()
    assert not inspect.isawaitable(counters), "counters() must not be a coroutine"
    assert isinstance(counters, Mapping), f"counters() returned {type(counters).__name__}"
    assert all(isinstance(key, str) for key in counters), f"non-string keys in {counters!r}"
    orjson.dumps(dict(counters))  # raises if a value is not JSON-encodable
    # Cheap: the status loop calls it on the event loop. A generous bound that only blocking
    # work (I/O, locks, sleeps) would exceed, not a performance figure.
    started = time.perf_counter()
    for _ in range(1000):
        rig.adapter.counters()
    assert time.perf_counter() - started < 1.0, "1000 counters() calls took over a second"


def command(rig: Rig, name: str, data: JSONValue, device: DeviceIdentity | None = None) -> Command:
    """A JSON command to one of the rig's devices (its command device by default)."""
    body = orjson.dumps(data) if data is not None else b""
    return Command(device or rig.command.device, name, "json", body, data)


def live_tasks(before: set[asyncio.Task[object]]) -> list[str]:
    """Tasks started since ``before`` that are still running (this one aside), by name and code."""
    current = asyncio.current_task()
    return [
        f"{task.get_name()} ({task.get_coro()!r})"
        for task in asyncio.all_tasks() - before
        if task is not current and not task.done()
    ]


def new_threads(before: set[threading.Thread]) -> list[str]:
    """Names of threads started since ``before`` that are still alive."""
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive()]


def open_fds() -> set[str]:
    """This process's open file descriptors, as "number -> what it is"."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
            found.add(f"{name} -> {os.readlink(f'/proc/self/fd/{name}')}")
    return found


async def fds_back_to(before: set[str], sink: RecordingSink) -> None:
    """Every descriptor opened since ``before`` is closed again (soon after the adapter stopped).

    Checked while the counterpart still runs: the autouse leak check comes after the fixture
    stopped it, and a counterpart that goes away can close what the adapter left open.
    """

    def closed() -> bool:
        gc.collect()  # dbus-fast frees a closed bus's socket only when the bus is collected
        return not open_fds() - before

    with contextlib.suppress(AssertionError):
        await sink.wait_for(closed, "descriptors closed", STOP_WITHIN)
    assert not open_fds() - before, f"descriptors left open: {sorted(open_fds() - before)}"


# --- 1. readings and states -----------------------------------------------------------------


async def test_run_delivers_readings_of_its_own_devices_and_reports_them_online(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    sink = RecordingSink()
    started = time.time()
    async with running(rig, sink) as task:
        await until_serving(rig, sink)
        assert_running(task)
        for device in rig.devices:
            assert online(sink, device), f"{device}: latest state {sink.state_of(device)}"
    finished = time.time()
    for reading in sink.readings:
        assert reading.device in rig.devices, f"a reading of a device not its own: {reading}"
        assert isinstance(reading.event, str) and reading.event, reading
        assert isinstance(reading.values, Mapping) and reading.values, reading
        assert all(isinstance(key, str) for key in reading.values), reading
        orjson.dumps(dict(reading.values))  # raises if a value is not JSON-encodable
        assert isinstance(reading.timestamp, float) and math.isfinite(reading.timestamp), reading
        assert started - 1 <= reading.timestamp <= finished + 1, (
            f"timestamp {reading.timestamp} is not wall-clock time of the test ({started})"
        )
    for device, state, detail in sink.states:
        assert device in rig.devices, f"a state of a device not its own: {device}"
        assert isinstance(state, DeviceState) and isinstance(detail, str)


# --- 2. cancellation ------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["starting", "serving"])
async def test_cancel_ends_run_promptly_and_leaves_nothing_running(
    make_rig: RigFactory, when: str
) -> None:
    rig = await make_rig()
    sink = RecordingSink()
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    async with running(rig, sink) as task:
        if when == "starting":
            await asyncio.sleep(0)  # run() has begun; nothing has answered yet
        else:
            await until_serving(rig, sink)
        await stop(task)
    # Counterparts may take a moment to notice the adapter hung up; the adapter's own tasks
    # and threads are gone at once. Anything left longer is a leak.
    with contextlib.suppress(AssertionError):
        await sink.wait_for(lambda: not live_tasks(tasks_before), "tasks to end", STOP_WITHIN)
    assert not live_tasks(tasks_before), f"tasks left running: {live_tasks(tasks_before)}"
    assert not new_threads(threads_before), f"threads left running: {new_threads(threads_before)}"
    await fds_back_to(fds_before, sink)


# --- 3. restart -----------------------------------------------------------------------------


async def test_run_works_again_after_being_cancelled(make_rig: RigFactory) -> None:
    rig = await make_rig()
    sink = RecordingSink()  # the supervisor hands every restart the same sink
    for _ in range(3):
        readings, states = len(sink.readings), len(sink.states)
        async with running(rig, sink) as task:
            await until_serving(rig, sink, readings_from=readings, states_from=states)
            assert_running(task)
            await stop(task)


# --- 4. commands ----------------------------------------------------------------------------


async def test_unknown_commands_are_unsupported_before_and_while_running(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    for device in rig.devices:
        with pytest.raises(CommandUnsupported):
            await rig.adapter.execute(command(rig, "no-such-command", {"value": 1}, device))
    sink = RecordingSink()
    async with running(rig, sink) as task:
        await until_serving(rig, sink)
        for device in rig.devices:
            with pytest.raises(CommandUnsupported):
                await rig.adapter.execute(command(rig, "no-such-command", {"value": 1}, device))
        assert_running(task)
    assert rig.effects() == 0


@pytest.mark.parametrize("make_rig", params(*WITH_COMMANDS), indirect=True)
async def test_bad_input_is_rejected_and_nothing_is_done(make_rig: RigFactory) -> None:
    rig = await make_rig()
    case = rig.command
    sink = RecordingSink()
    async with running(rig, sink) as task:
        await until_serving(rig, sink)
        for bad in case.bad:
            with pytest.raises(CommandRejected):
                await rig.adapter.execute(command(rig, case.name, bad))
        assert rig.effects() == 0, "a rejected command reached the device"
        # The same command with good input is carried out: the refusals were about the input.
        result = await rig.adapter.execute(command(rig, case.name, case.good))
        assert result is None or isinstance(result, Mapping), result
        orjson.dumps(None if result is None else dict(result))
        await sink.wait_for(lambda: rig.effects() == 1, "the good command's effect", WITHIN)
        assert_running(task)


# --- 5. counters ----------------------------------------------------------------------------


async def test_counters_before_during_and_after_run(make_rig: RigFactory) -> None:
    rig = await make_rig()
    check_counters(rig)
    sink = RecordingSink()
    async with running(rig, sink) as task:
        check_counters(rig)
        await until_serving(rig, sink)
        check_counters(rig)
        await stop(task)
    check_counters(rig)


# --- 6. a missing counterpart ---------------------------------------------------------------


async def keeps_trying(rig: Rig, sink: RecordingSink, task: asyncio.Task[None]) -> None:
    """Every device ends up offline or down and run() keeps trying (or ends typed)."""
    counterpart = rig.counterpart
    assert isinstance(counterpart, Counterpart)
    await sink.wait_for(
        lambda: task.done() or all(unreachable(sink, d) for d in rig.devices),
        "every device offline or down",
        WITHIN,
    )
    assert_running_or_typed(task)
    check_counters(rig)
    attempts = counterpart.progress()
    await sink.wait_for(
        lambda: task.done() or counterpart.progress() >= attempts + 2, "further attempts", WITHIN
    )
    assert_running_or_typed(task)
    check_counters(rig)
    if not task.done():
        assert all(unreachable(sink, d) for d in rig.devices), sink.states[-5:]
        await stop(task)  # cancellation works while it is failing, too


@pytest.mark.parametrize("make_rig", params(*WITH_COUNTERPART), indirect=True)
async def test_a_counterpart_missing_from_the_start(make_rig: RigFactory) -> None:
    rig = await make_rig("all")
    sink = RecordingSink()
    async with running(rig, sink) as task:
        await keeps_trying(rig, sink, task)
    assert sink.readings == [], "readings from a counterpart that is not there"


@pytest.mark.parametrize("make_rig", params(*WITH_COUNTERPART), indirect=True)
async def test_a_counterpart_lost_while_running(make_rig: RigFactory) -> None:
    rig = await make_rig()
    assert rig.counterpart is not None
    sink = RecordingSink()
    fds_before = open_fds()
    async with running(rig, sink) as task:
        await until_serving(rig, sink)
        await rig.counterpart.lose()
        await keeps_trying(rig, sink, task)
    # What the lost connection held is released too (it is not the counterpart's to close).
    await fds_back_to(fds_before, sink)


@pytest.mark.parametrize("make_rig", params(*SEVERAL_DEVICES), indirect=True)
async def test_one_missing_device_does_not_stop_the_others(make_rig: RigFactory) -> None:
    rig = await make_rig("one")
    present, missing = rig.devices
    sink = RecordingSink()
    async with running(rig, sink) as task:
        await sink.wait_for(
            lambda: unreachable(sink, missing) and len(sink.of(present)) >= 1,
            "the missing device offline, the present one delivering",
            WITHIN,
        )
        count = len(sink.of(present))
        await sink.wait_for(
            lambda: len(sink.of(present)) >= count + 3, "more readings of the present one", WITHIN
        )
        assert online(sink, present), sink.state_of(present)
        assert unreachable(sink, missing), sink.state_of(missing)
        assert_running(task)
        check_counters(rig)
    assert sink.of(missing) == []
