"""Benchmark: 1000 new devices registered through the 128 cap, against the ideal.

A daemon (real process) with N new simulated devices starts against the platform emulator,
which registers a device ``--delay`` seconds after its first message and counts pending
registrations. The ideal is ceil(N / cap) x delay (every round of ``cap`` devices takes exactly
the delay); the daemon's rounds take its ``confirm_after`` (the delay plus ``--margin``, since
the platform never confirms) plus a round trip. Printed: wall time until the emulator saw all N
registered, its ratio to the ideal, and the highest pending count the emulator saw (must not
exceed the cap).

    .venv/bin/python tests/bench/bench_registration.py [--devices 1000] [--delay 1.0]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.config.registration import PLATFORM_MAX_PENDING  # noqa: E402
from edged.devbroker import APP_USER, Broker, LocalCA  # noqa: E402
from edged.emulator import PlatformEmulator  # noqa: E402
from edged.model import DeviceIdentity  # noqa: E402
from tests.support.daemon import GATEWAY, ORG, running_daemon, write_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--cap", type=int, default=PLATFORM_MAX_PENDING)
    args = parser.parse_args()
    gateway = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])
    ids = [DeviceIdentity("sim", f"r{n:04d}") for n in range(args.devices)]
    devices = [
        {
            "id": device.device_id,
            "type": device.type_id,
            "adapter": "simulated",
            "simulated": {"interval": 1, "values": {"t": {"kind": "counter"}}},
        }
        for device in ids
    ]
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", LocalCA.create(work / "ca"))
        broker.start()
        emulator = PlatformEmulator(
            broker.host,
            broker.port,
            ORG,
            username=APP_USER,
            password=broker.app_password,
            gateway=gateway,
            registration_delay=args.delay,
            max_pending=args.cap,
        )
        emulator.start()
        try:
            config = write_config(
                work,
                broker,
                devices,
                extra={
                    "registration": {
                        "max_pending": args.cap,
                        "confirm_after": args.delay + args.margin,
                    },
                    "logging": {"level": "warning"},
                },
            )
            started = time.monotonic()
            with running_daemon(config):
                emulator.wait_registered(ids, timeout=60 + 5 * args.devices * args.delay)
                took = time.monotonic() - started
        finally:
            emulator.stop()
            broker.stop()
    ideal = math.ceil(args.devices / args.cap) * args.delay
    print(
        f"devices {args.devices}, cap {args.cap}, platform delay {args.delay:g} s, "
        f"confirm_after {args.delay + args.margin:g} s"
    )
    print(
        f"all registered after {took:.2f} s (from process start); ideal {ideal:.2f} s; "
        f"ratio {took / ideal:.2f}"
    )
    print(
        f"highest pending count the platform saw: {emulator.max_pending_seen()} "
        f"(cap {args.cap}); messages dropped: {len(emulator.dropped())}"
    )
    history = emulator.pending_history()
    first = next((at for at, count in history if count), history[0][0])
    rounds = [
        f"{at - first:.2f}"
        for (at, count), (_, before) in zip(history[1:], history, strict=False)
        if count > before and before == 0
    ]
    print(f"pending rose from 0 at (s after the first request): {', '.join(rounds)}")
    span = history[-1][0] - first
    print(
        f"first request to last registration: {span:.2f} s; ratio to the ideal {span / ideal:.2f} "
        f"(expected about ((rounds - 1) x confirm_after + delay) / (rounds x delay))"
    )


if __name__ == "__main__":
    main()
