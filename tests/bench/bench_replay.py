"""Benchmark: the daemon with a 100,000-event backlog in its outbox, and its disk at 100 events/s.

Every phase runs the daemon as a real process against a local mosquitto; its outbox lives in a
temporary directory under ``$BENCH_DIR`` (default ``/var/tmp``, a real disk rather than tmpfs):

1. **RSS, empty outbox**: the broker down, the simulated device silent (``count: 0``).
2. **Backlog**: the broker down, the device emits N readings flat out. Once the daemon's
   systemd STATUS line (read from a ``$NOTIFY_SOCKET`` the bench owns) shows all N in the
   outbox, its RSS is read (``VmRSS`` in ``/proc/PID/status``); then it is stopped, and the rows
   are counted in the database.
3. **RSS after a restart with the backlog** on disk, the broker still down.
4. **Replay**: the broker started, then the daemon with the device silent; a ``mosquitto_sub``
   counts and timestamps the N replayed events (zero loss checked, as in ``bench_core``).
5. **Live** (the baseline): the same daemon config, empty outbox, the device emitting N readings
   flat out, measured the same way.
6. **Disk at a steady rate**: ten devices emitting every 100 ms (about 100 events/s); over a
   window of ``--seconds``, bytes written to storage from ``/proc/PID/io`` (``write_bytes``)
   and fsync/fdatasync calls of all the daemon's threads counted by ``strace -f -c -p PID``;
   events counted at the subscriber.

    .venv/bin/python -m tests.bench.bench_replay [--events 100000] [--seconds 20]

Targets (issue 9): replay >= 0.5x live; RSS growth with the backlog <= ~10 MB; <= ~10 fsyncs/s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.devbroker import Broker, LocalCA
from tests.bench.bench_core import (
    Result,
    daemon_command,
    daemon_config,
    measure,
    remove_outbox,
)
from tests.bench.bench_outbox_disk import _fsyncs as fsync_calls

TOPIC = "iot-2/type/sim/id/edged-dev/evt/reading/fmt/json"
DEPTH = re.compile(r"outbox (\d+) \(")
SETTLE = 4
"""STATUS lines (one a second) showing the awaited outbox depth before memory is read."""


@dataclass
class Held:
    """The daemon's memory once it settled in one state."""

    rss_kb: int
    anon_kb: int
    hwm_kb: int
    depth: int


class StatusSocket:
    """A ``$NOTIFY_SOCKET`` for the daemon: collects its sd_notify datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def wait(self, condition: Callable[[str], bool], what: str, within: float) -> str:
        """Return the first datagram that satisfies ``condition`` within ``within`` seconds."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            if condition(message):
                return message
        raise RuntimeError(f"the daemon did not report {what} within {within:.0f} s")

    def drain(self) -> None:
        """Forget what earlier daemons sent."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Close and remove the socket."""
        self.sock.close()
        self.path.unlink(missing_ok=True)


def _depth(message: str) -> int:
    """The outbox depth in a STATUS line; -1 for any other notification."""
    match = DEPTH.search(message)
    return int(match.group(1)) if match else -1


def _memory(pid: int) -> dict[str, int]:
    """The process's memory figures from /proc/PID/status, in kB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = (line.split(":", 1) for line in lines)
    return {key: int(value.split()[0]) for key, value in fields if value.endswith(" kB")}


def _io(pid: int) -> dict[str, int]:
    fields = (line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {key: int(value) for key, value in fields}


def _start(config: dict[str, Any], work: Path, status: StatusSocket) -> subprocess.Popen[bytes]:
    status.drain()
    env = dict(os.environ, NOTIFY_SOCKET=str(status.path))
    with (work / "daemon.log").open("ab") as log:
        return subprocess.Popen(daemon_command(config, work), env=env, stdout=log, stderr=log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # with the broker down it tries to send for up to 5 s, then closes
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError("the daemon did not stop within 30 s of SIGTERM") from None


def _hold(
    config: dict[str, Any], work: Path, status: StatusSocket, depth: int, within: float
) -> Held:
    """Run the daemon until its STATUS line has shown at least ``depth`` messages in the outbox
    ``SETTLE`` times (status interval 1 s: the last appends are committed by then), read its
    memory, stop it."""
    proc = _start(config, work, status)
    try:
        status.wait(lambda m: "READY=1" in m, "READY=1", 30)
        for _ in range(SETTLE):
            line = status.wait(
                lambda m: _depth(m) >= depth,
                f"an outbox of {depth} messages",
                within,
            )
        memory = _memory(proc.pid)
        return Held(memory["VmRSS"], memory["RssAnon"], memory["VmHWM"], _depth(line))
    finally:
        _stop(proc)


def _rows(database: Path) -> int:
    with sqlite3.connect(database) as db:
        (count,) = db.execute("SELECT count(*) FROM messages").fetchone()
    db.close()
    return int(count)


def _steady(
    broker: Broker, work: Path, status: StatusSocket, seconds: float
) -> tuple[float, float, float, float]:
    """Events/s, fsyncs/s, bytes written per event and per second at about 100 events/s."""
    remove_outbox(work)
    config = daemon_config(broker, work, int(10 * (seconds + 30)), 1)
    # Ten devices every 100 ms: one device every 10 ms falls short of 100/s (sleeps add up).
    (device,) = config["devices"]
    device["simulated"]["interval"] = 0.1
    config["devices"] = [dict(device, id=f"steady-{i}") for i in range(10)]
    stamps = work / "steady.txt"
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            *("-h", "127.0.0.1", "-p", str(broker.port)),
            *("-u", "a-testorg-app", "-P", broker.app_password),
            *("-q", "0", "-t", "iot-2/type/sim/id/+/evt/reading/fmt/json", "-F", "%U"),
        ],
        stdout=stamps.open("wb"),
    )
    proc = _start(config, work, status)
    trace = work / "strace.txt"
    try:
        status.wait(lambda m: "READY=1" in m, "READY=1", 30)
        time.sleep(3)  # past start-up: connected, the first commits and checkpoints done
        tracer = subprocess.Popen(
            [
                "strace",
                "-f",
                "-c",
                "-e",
                "trace=fsync,fdatasync",
                "-o",
                str(trace),
                "-p",
                str(proc.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        traced = time.monotonic()
        time.sleep(1)  # attached to every thread
        io0, t0 = _io(proc.pid), time.time()
        time.sleep(seconds)
        io1, t1 = _io(proc.pid), time.time()
        tracer.send_signal(signal.SIGINT)
        tracer.wait(20)
        traced = time.monotonic() - traced
        if proc.poll() is not None:
            raise RuntimeError("the daemon ended during the steady run")
    finally:
        _stop(proc)
        sub.terminate()
        sub.wait(10)
    delivered = [float(line) for line in stamps.read_text().split()]
    events = sum(1 for stamp in delivered if t0 <= stamp < t1)
    written = io1["write_bytes"] - io0["write_bytes"]
    return (
        events / (t1 - t0),
        fsync_calls(trace.read_text()) / traced,
        written / events,
        written / (t1 - t0),
    )


def main() -> None:
    """Run the phases of the module docstring and print their figures and ratios."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="steady 100 events/s window")
    parser.add_argument("--backlog-rounds", type=int, default=3)
    parser.add_argument("--memory-bytes", help="storage.memory_bytes (default: edged's)")
    args = parser.parse_args()
    n = args.events
    if not shutil.which("strace"):
        raise SystemExit("strace is needed for the fsync count (apt-get install -y strace)")
    with tempfile.TemporaryDirectory(
        prefix="edged-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp")
    ) as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", LocalCA.create(work / "ca"))  # not started yet
        status = StatusSocket(work / "notify.sock")
        try:
            held = {"interval": 1.0}
            storage = {"max_bytes": "1GiB"}
            if args.memory_bytes:
                storage["memory_bytes"] = args.memory_bytes
            print(f"{n} events; outbox in {work}", flush=True)

            empty_cfg = daemon_config(broker, work, 0, 1, **storage)
            empty_cfg["status"] = held
            empty = _hold(empty_cfg, work, status, 0, 30)
            remove_outbox(work)

            backlog_cfg = daemon_config(broker, work, n, 1, **storage)
            backlog_cfg["status"] = held
            backlogs = []
            for _ in range(args.backlog_rounds):  # its memory varies much from run to run
                remove_outbox(work)
                started = time.monotonic()
                backlogs.append(_hold(backlog_cfg, work, status, n, 120))
                filled = time.monotonic() - started
            rows = _rows(work / "outbox.sqlite")
            restarted = _hold(empty_cfg, work, status, n, 60)
            print(f"backlog made in {filled:.0f} s (last round); {rows} rows on disk", flush=True)

            broker.start()
            replay_cfg = daemon_config(broker, work, 0, 1, **storage)
            replay = measure(daemon_command(replay_cfg, work), TOPIC, broker, n, work)
            left = _rows(work / "outbox.sqlite")
            remove_outbox(work)
            live_cfg = daemon_config(broker, work, n, 1, **storage)
            live = measure(daemon_command(live_cfg, work), TOPIC, broker, n, work)
            rate, fsyncs, per_event, per_second = _steady(broker, work, status, args.seconds)
        finally:
            status.close()
            broker.stop()
    _report(n, empty, backlogs, restarted, rows, left, replay, live)
    print(
        f"\nsteady run over {args.seconds:.0f} s: {rate:.1f} events/s delivered; "
        f"{fsyncs:.2f} fsyncs/s (target <= 10); {per_event:.0f} bytes written per event "
        f"({per_second / 1024:.1f} KiB/s)"
    )


def _report(
    n: int,
    empty: Held,
    backlogs: list[Held],
    restarted: Held,
    rows: int,
    left: int,
    replay: Result,
    live: Result,
) -> None:
    print(f"\nQoS 1, {n} events, zero loss in both runs")
    print(f"  {'run':<34} {'events/s':>9} {'vs live':>8} {'CPU us/event':>13}")
    for name, result in (
        ("live (flat out, empty outbox)", live),
        ("replay of the backlog", replay),
    ):
        print(
            f"  {name:<34} {result.rate:>9.0f} {result.rate / live.rate:>8.2f}"
            f" {result.cpu_us:>13.1f}"
        )
    print(f"  rows on disk before the replay: {rows}; after it: {left}")
    print(
        f"\n  {'daemon, broker down':<34} {'outbox':>8} {'VmRSS MB':>9} {'vs empty':>9}"
        f" {'RssAnon MB':>11} {'VmHWM MB':>9}"
    )
    table = [("empty outbox, device silent", empty)]
    table += [(f"{n} emitted, round {i + 1}", held) for i, held in enumerate(backlogs)]
    table.append(("restarted with the last backlog", restarted))
    for name, held in table:
        print(
            f"  {name:<34} {held.depth:>8} {held.rss_kb / 1024:>9.1f}"
            f" {(held.rss_kb - empty.rss_kb) / 1024:>+9.1f} {held.anon_kb / 1024:>11.1f}"
            f" {held.hwm_kb / 1024:>9.1f}"
        )
    growth = statistics.median(held.rss_kb - empty.rss_kb for held in backlogs) / 1024
    print(
        f"  RSS growth with the backlog (target <= ~10 MB): median {growth:+.1f} MB after emitting"
        f" it, {(restarted.rss_kb - empty.rss_kb) / 1024:+.1f} MB after a restart"
    )


if __name__ == "__main__":
    main()
