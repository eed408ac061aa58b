"""Benchmark: command round trip on loopback, platform emulator -> daemon -> adapter -> result.

The emulator publishes a command (QoS 1) to a simulated device of a daemon running as a real
process and waits for its ``cmdResult`` event; the time between is an upper bound of "command
published -> adapter done" (it includes the result's way back). Target: p99 <= 20 ms.

    .venv/bin/python tests/bench/bench_command_latency.py [--commands 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.devbroker import APP_USER, Broker, LocalCA  # noqa: E402
from edged.emulator import PlatformEmulator, ReceivedEvent  # noqa: E402
from edged.model import DeviceIdentity  # noqa: E402
from tests.support.daemon import ORG, running_daemon, write_config  # noqa: E402


def _answers(req: str) -> Callable[[ReceivedEvent], bool]:
    return lambda event: isinstance(event.data, dict) and event.data.get("reqId") == req


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=500)
    args = parser.parse_args()
    device = DeviceIdentity("sim", "lat-1")
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", LocalCA.create(work / "ca"))
        broker.start()
        emulator = PlatformEmulator(
            broker.host, broker.port, ORG, username=APP_USER, password=broker.app_password
        )
        emulator.start()
        try:
            section = {"interval": 1, "values": {"t": {"kind": "constant"}}}
            config = write_config(
                work,
                broker,
                [{"id": "lat-1", "type": "sim", "adapter": "simulated", "simulated": section}],
            )
            with running_daemon(config):
                emulator.wait_for_events(device="lat-1", timeout=20)
                samples = []
                for n in range(args.commands + 20):
                    req = f"lat-{n}"
                    started = time.perf_counter()
                    emulator.send_command(device, "set", {"reqId": req, "v": n})
                    emulator.wait_for_events(
                        device="lat-1", event="cmdResult", predicate=_answers(req)
                    )
                    if n >= 20:  # warm-up excluded
                        samples.append((time.perf_counter() - started) * 1000)
        finally:
            emulator.stop()
            broker.stop()
    samples.sort()

    def p(quantile: float) -> float:
        return samples[min(len(samples) - 1, int(quantile * len(samples)))]

    print(
        f"{len(samples)} commands: p50 {p(0.5):.2f} ms, p90 {p(0.9):.2f} ms, p99 {p(0.99):.2f} ms, "
        f"max {samples[-1]:.2f} ms, mean {statistics.mean(samples):.2f} ms"
    )


if __name__ == "__main__":
    main()
