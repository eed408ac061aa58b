"""The durable outbox under faults: the daemon as a process, a real broker, counted at the emulator.

Every event here is QoS 1 and carries a per-device sequence number (the simulated counter), so
what arrived can be checked for gaps, order and duplicates independently of the daemon.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.emulator import PlatformEmulator, ReceivedEvent
from edged.model import DeviceIdentity
from tests.integration.uplink.faultproxy import Down, FaultProxy
from tests.support.broker import APP_USER, Broker
from tests.support.daemon import GATEWAY, Daemon, running_daemon, write_config

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

GW = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])


class Counter:
    """An independent subscriber: mosquitto_sub with a persistent session (clean session off,
    QoS 1), so that events published while it is away (a broker restart) are kept for it."""

    def __init__(self, broker: Broker, directory: Path) -> None:
        self.path = directory / "counted.txt"
        self._out = self.path.open("wb")
        self.process = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                broker.host,
                "-p",
                str(broker.port),
                "-q",
                "1",
                "-c",
                "-i",
                "a:testorg:counter",
                "-u",
                APP_USER,
                "-P",
                broker.app_password,
                "-t",
                "iot-2/type/+/id/+/evt/+/fmt/+",
                "-F",
                "%t %p",
            ],
            stdout=self._out,
            stderr=subprocess.DEVNULL,
        )

    def values(self, device_id: str) -> list[int]:
        """The sequence numbers received for ``device_id``, in arrival order."""
        values = []
        prefix = f"iot-2/type/sim/id/{device_id}/evt/"
        for line in self.path.read_text(errors="replace").splitlines():
            topic, _, payload = line.partition(" ")
            if topic.startswith(prefix) and payload.endswith("}"):
                values.append(int(json.loads(payload)["d"]["n"]))
        return values

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)
        self._out.close()


@pytest.fixture
def counter(broker: Broker, tmp_path: Path) -> Iterator[Counter]:
    subscriber = Counter(broker, tmp_path)
    try:
        deadline = time.monotonic() + 10
        while "a:testorg:counter" not in broker.log():
            assert time.monotonic() < deadline, "the counting subscriber did not connect"
            time.sleep(0.02)
        yield subscriber
    finally:
        subscriber.stop()


def _sim(device_id: str, **section: Any) -> dict[str, Any]:
    section.setdefault("values", {"n": {"kind": "counter", "min": 0, "max": 10_000_000}})
    return {"id": device_id, "type": "sim", "adapter": "simulated", "simulated": section}


def _sequence(emulator: PlatformEmulator, device_id: str) -> list[int]:
    return [int(e.values["n"]) for e in emulator.events if e.device.device_id == device_id]


def _wait_contiguous(
    received: Callable[[], list[int]], device_id: str, at_least: int, timeout: float = 30
) -> list[int]:
    """Wait until the distinct values received are 0..k-1 with k >= ``at_least``."""
    deadline = time.monotonic() + timeout
    while True:
        values = received()
        distinct = sorted(set(values))
        if len(distinct) >= at_least and distinct == list(range(len(distinct))):
            return values
        if time.monotonic() > deadline:
            missing = sorted(set(range(max(distinct, default=-1) + 1)) - set(distinct))
            raise AssertionError(
                f"{device_id}: {len(distinct)} distinct of >= {at_least}; missing {missing[:20]}"
            )
        time.sleep(0.05)


def _in_order(values: list[int]) -> bool:
    """Each value's first arrival is in increasing order (repeats allowed after a resend)."""
    firsts = list(dict.fromkeys(values))
    return firsts == sorted(firsts)


def _freeze(broker: Broker) -> int:
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    return broker.process.pid


def test_kill9_with_a_backlog_then_restart_delivers_everything_without_gaps(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    config = write_config(tmp_path, broker, [_sim("s-1", interval=0.005)])
    daemon = Daemon(config)
    try:
        emulator.wait_for_events(50, device="s-1", timeout=20)
        pid = _freeze(broker)
        try:
            time.sleep(1.0)  # a backlog forms in the outbox (committed every 100 ms)
            daemon.process.kill()
            daemon.process.wait(10)
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        daemon.stop()
    before = len(set(_sequence(emulator, "s-1")))
    with contextlib.closing(sqlite3.connect(tmp_path / "outbox.sqlite")) as db:
        stored = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert stored > 50, "no backlog was left behind by the kill"
    # Restart with the device silent: only what the outbox kept can arrive.
    config = write_config(tmp_path, broker, [_sim("s-1", interval=1, count=0)])
    with running_daemon(config) as again:
        again.wait_for_output(r"the outbox holds \d+ message\(s\) from the last run")
        values = _wait_contiguous(lambda: _sequence(emulator, "s-1"), "s-1", before + stored - 200)
        assert _in_order(values)
        again.wait_for_output(r"connected")


def test_a_broker_restart_mid_stream_loses_no_event(
    tmp_path: Path, broker: Broker, counter: Counter
) -> None:
    config = write_config(tmp_path, broker, [_sim("s-1", interval=0.003, count=3000)])
    with running_daemon(config):
        _wait_contiguous(lambda: counter.values("s-1"), "s-1", 300)
        broker.restart()
        values = _wait_contiguous(lambda: counter.values("s-1"), "s-1", 3000, timeout=60)
    duplicates = len(values) - len(set(values))
    assert duplicates <= 100  # at most the in-flight window is sent twice
    assert _in_order(values)


def test_a_hung_broker_then_everything_is_delivered(
    tmp_path: Path, broker: Broker, counter: Counter
) -> None:
    config = write_config(tmp_path, broker, [_sim("s-1", interval=0.005, count=1500)])
    with running_daemon(config):
        _wait_contiguous(lambda: counter.values("s-1"), "s-1", 100)
        pid = _freeze(broker)
        try:
            time.sleep(5)
        finally:
            os.kill(pid, signal.SIGCONT)
        values = _wait_contiguous(lambda: counter.values("s-1"), "s-1", 1500, timeout=60)
    assert _in_order(values)


def test_a_long_outage_over_the_cap_drops_exactly_what_it_counts(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator, counter: Counter
) -> None:
    produced = 600
    blob = "x" * 4000  # 600 readings of ~4 KB: more than the 1 MiB cap
    device = _sim("s-1", interval=0.001, count=produced, script=[{"blob": blob}])
    config = write_config(
        tmp_path,
        broker,
        [device],
        extra={"storage": {"path": str(tmp_path / "outbox.sqlite"), "max_bytes": "1MiB"}},
    )
    broker.stop()
    emulator.stop()
    with running_daemon(config) as daemon:
        daemon.wait_for_output(r"the outbox is full \(cap 1048576 bytes on disk")
        time.sleep(1.0)  # the device has read everything by now (600 at 1 ms)
        broker.start()
        emulator.start()
        emulator.wait_for_events(device="s-1", timeout=20)
        deadline = time.monotonic() + 30
        for poll in itertools.count():
            emulator.clear()
            req_id = f"count-{poll}"  # a repeated reqId is answered without carrying it out
            emulator.send_command(GW, "status", {"reqId": req_id})
            [result] = emulator.wait_for_events(
                device=GW.device_id,
                event="cmdResult",
                predicate=functools.partial(_answers, req_id),
            )
            outbox = result.data["d"]["outbox"]
            if outbox["depth"] <= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    dropped = outbox["droppedBy"].get("sim/s-1", 0)
    assert dropped > 0
    # The counting subscriber reconnects on its own schedule after the broker's restart: give
    # it time to receive what its persistent session holds.
    deadline = time.monotonic() + 20
    while len(set(counter.values("s-1"))) + dropped < produced and time.monotonic() < deadline:
        time.sleep(0.1)
    delivered = set(counter.values("s-1"))
    assert len(delivered) + dropped == produced  # produced = delivered + dropped, exactly
    assert max(delivered) == produced - 1  # the newest are kept, the oldest dropped


def _answers(req_id: str, event: ReceivedEvent) -> bool:
    return isinstance(event.data, dict) and event.data.get("reqId") == req_id


def test_an_outbox_path_that_cannot_be_used_stops_the_daemon_with_a_clear_error(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(
        tmp_path,
        broker,
        [_sim("s-1")],
        extra={"storage": {"path": str(tmp_path / "missing-dir" / "outbox.sqlite")}},
    )
    daemon = Daemon(config)
    code = daemon.process.wait(20)
    daemon.stop()
    assert code == 78, daemon.output
    assert re.search(r"cannot open the outbox: .*missing-dir", daemon.output), daemon.output


def test_a_garbage_outbox_file_is_moved_aside_and_the_daemon_runs(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    (tmp_path / "outbox.sqlite").write_bytes(b"this is not a database\n" * 100)
    config = write_config(tmp_path, broker, [_sim("s-1", interval=0.05)])
    with running_daemon(config) as daemon:
        daemon.wait_for_output(r"ERROR .*outbox database .* was unusable .* moved aside to")
        emulator.wait_for_events(5, device="s-1", timeout=20)
    assert list(tmp_path.glob("outbox.sqlite.corrupt-*"))


async def test_a_network_cut_is_noticed_by_keepalive_and_nothing_is_lost(
    tmp_path: Path, broker: Broker, counter: Counter
) -> None:
    loop = asyncio.get_running_loop()
    proxy = await FaultProxy(broker.port).start()
    # The proxy runs on this loop; the blocking waits on the daemon go to one thread of our own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:

        async def blocking(call: Callable[[], Any]) -> Any:
            return await loop.run_in_executor(pool, call)

        try:
            config = write_config(
                tmp_path,
                broker,
                [_sim("s-1", interval=0.005, count=2000)],
                platform={"port": proxy.port, "keepalive": 5},
            )
            daemon = Daemon(config)
            try:
                await blocking(lambda: _wait_contiguous(lambda: counter.values("s-1"), "s-1", 100))
                cut = proxy.current
                cut.down = Down.DROP  # the broker still runs; nothing comes back from it
                cut.stop_reading_client()  # nor gets through to it
                await blocking(
                    lambda: daemon.wait_for_output(r"no answer to keepalive pings", timeout=15)
                )
                values = await blocking(
                    lambda: _wait_contiguous(lambda: counter.values("s-1"), "s-1", 2000, 60)
                )
            finally:
                await blocking(daemon.stop)
        finally:
            await proxy.close()
    assert len(proxy.links) >= 2  # it reconnected through the proxy
    assert _in_order(values)
