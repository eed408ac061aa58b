"""The figures of issue 15, taken the same way on every architecture (run inside each chroot).

- start to READY: exec of ``edged run`` with 100 simulated devices until ``READY=1`` arrives on
  ``$NOTIFY_SOCKET`` (a datagram socket of this script, as systemd's); median of ``--rounds``;
- RSS: the daemon's resident memory a few seconds after READY, and the same less an idle
  ``python3`` measured the same way (under qemu both include the emulator's own memory: the
  difference is the closer figure for what edged itself takes);
- events/s: simulated devices emitting flat out, QoS 1 through the durable outbox (on disk)
  and TLS to Mosquitto; events the broker acknowledged (PUBACK) per second over ``--seconds``,
  from the daemon's own counter, after a warm-up; the median of ``--windows`` windows (the
  machine may be shared: the median shrugs off one disturbed window).

Two calibrations put the ratios in proportion: a pure-Python loop (what emulation costs plain
interpreter work) and clock reads (a system call under qemu 7.2, which gives its guests no vDSO;
asyncio reads the clock at every turn of its loop). An event-path ratio well above the loop's is
the emulator's cost more than the CPU's.

Prints each figure and writes them as JSON (``--json``) for ``report.py``.

    cd <dir holding arm/> && python3 -m arm.figures [--json figures.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edged.control import NotRunning, request
from edged.devbroker import Broker, LocalCA

from .common import (
    CheckFailed,
    Daemon,
    NotifyListener,
    edged_command,
    rss_mb,
    say,
    simulated,
    write_config,
)

SETTLE = 3.0
"""Seconds after READY (or after an idle python3 started) before RSS is read."""


def startup(broker: Broker, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """READY time and RSS with ``--devices`` simulated devices, ``--rounds`` times."""
    devices = [
        simulated(f"d-{n:03d}", 5, t={"kind": "random", "min": 0, "max": 100})
        for n in range(args.devices)
    ]
    config = write_config(work / "startup", broker, devices)
    ready: list[float] = []
    rss: list[float] = []
    for _ in range(args.rounds):
        listener = NotifyListener(work / "notify.sock")
        try:
            daemon = Daemon(
                edged_command(args.edged),
                config,
                log_level="warning",
                env={"NOTIFY_SOCKET": str(listener.path)},
            )
            try:
                listener.wait_ready(args.timeout)
                ready.append(time.monotonic() - daemon.started)
                time.sleep(SETTLE)
                rss.append(rss_mb(daemon.pid))
            finally:
                code = daemon.stop()
            if code != 0:
                raise CheckFailed(f"the daemon exited {code}:\n{daemon.tail()}")
        finally:
            listener.close()
    return {
        "ready_s": statistics.median(ready),
        "ready_all_s": ready,
        "rss_mb": statistics.median(rss),
    }


def idle_python_rss() -> float:
    """RSS of a python3 doing nothing, measured like the daemon's."""
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(SETTLE)
        return rss_mb(idle.pid)
    finally:
        idle.kill()
        idle.wait()


def calibration() -> dict[str, float]:
    """Seconds for a pure-Python loop and for 200,000 clock reads (best of 3 each)."""
    loop: list[float] = []
    clock: list[float] = []
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for n in range(1_000_000):
            total += n * n
        loop.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(200_000):
            time.monotonic()
        clock.append(time.perf_counter() - started)
    return {"python_loop_s": min(loop), "clock_reads_s": min(clock)}


def throughput(broker: Broker, work: Path, args: argparse.Namespace) -> float:
    """Events per second the broker acknowledged, devices emitting flat out."""
    devices = [
        simulated(f"fast-{n}", 0, t={"kind": "sine", "min": 0, "max": 50}, n={"kind": "counter"})
        for n in range(args.fast_devices)
    ]
    config = write_config(work / "rate", broker, devices)
    socket = str(work / "rate" / "control.sock")
    daemon = Daemon(edged_command(args.edged), config, log_level="warning")
    try:

        def acked() -> int:
            return int(request(socket, "status", timeout=args.timeout)["report"]["uplink"]["acked"])

        deadline = time.monotonic() + args.timeout
        while True:  # until it is connected and publishing
            try:
                if acked() > 0:
                    break
            except (NotRunning, OSError, RuntimeError):
                pass  # the control socket is not up yet
            if daemon.process.poll() is not None or time.monotonic() > deadline:
                raise CheckFailed(f"the daemon never published:\n{daemon.tail()}")
            time.sleep(0.2)
        time.sleep(args.warmup)
        rates: list[float] = []
        count, at = acked(), time.monotonic()
        for _ in range(args.windows):
            time.sleep(args.seconds / args.windows)
            now_count, now = acked(), time.monotonic()
            rates.append((now_count - count) / (now - at))
            count, at = now_count, now
    finally:
        code = daemon.stop()
    if code != 0:
        raise CheckFailed(f"the daemon exited {code}:\n{daemon.tail()}")
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edged", default="edged", help="command running edged (default: edged)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--devices", type=int, default=100, help="devices for READY and RSS")
    parser.add_argument("--rounds", type=int, default=3, help="starts measured (median)")
    parser.add_argument("--fast-devices", type=int, default=10, help="devices emitting flat out")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before counting")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds counted")
    parser.add_argument("--windows", type=int, default=5, help="windows of those seconds")
    parser.add_argument("--timeout", type=float, default=180.0, help="limit of each wait")
    args = parser.parse_args()
    machine = platform.machine()
    say(f"figures: {machine}, Python {platform.python_version()}")
    try:
        with tempfile.TemporaryDirectory(prefix="edged-figures-", dir="/var/tmp") as tmp:
            work = Path(tmp)
            broker = Broker(work / "broker", LocalCA.create(work / "ca"))
            broker.start()
            try:
                figures: dict[str, Any] = calibration()
                say(
                    f"  calibration: a pure-Python loop {figures['python_loop_s']:.3f} s, "
                    f"200,000 clock reads {figures['clock_reads_s']:.3f} s"
                )
                figures.update(startup(broker, work, args))
                say(
                    f"  start to READY with {args.devices} simulated devices: "
                    f"{figures['ready_s']:.2f} s (median of {args.rounds})"
                )
                figures["idle_python_rss_mb"] = idle_python_rss()
                say(
                    f"  RSS with {args.devices} devices: {figures['rss_mb']:.1f} MiB "
                    f"({figures['rss_mb'] - figures['idle_python_rss_mb']:.1f} MiB more than "
                    f"an idle python3's {figures['idle_python_rss_mb']:.1f})"
                )
                figures["events_per_s"] = throughput(broker, work, args)
                say(
                    f"  events/s, QoS 1 through the outbox, {args.fast_devices} devices flat out: "
                    f"{figures['events_per_s']:.0f}"
                )
            finally:
                broker.stop()
    except CheckFailed as exc:
        say(f"figures: FAILED: {exc}")
        return 1
    figures.update(machine=machine, python=platform.python_version(), devices=args.devices)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
