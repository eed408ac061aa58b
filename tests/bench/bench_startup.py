"""Benchmark: time from exec to READY=1 and resident memory, with 100 configured devices.

The daemon runs as a real process with ``NOTIFY_SOCKET`` pointing at a datagram socket of this
script (as systemd would); RSS is read from /proc after it has run for a few seconds. Targets:
READY <= 1 s, RSS <= 40 MB (simulated devices, so no adapter library is loaded).

    .venv/bin/python tests/bench/bench_startup.py [--devices 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.devbroker import Broker, LocalCA  # noqa: E402
from tests.support.daemon import write_config  # noqa: E402


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    devices = [
        {
            "id": f"d-{n:03d}",
            "type": "sim",
            "adapter": "simulated",
            "simulated": {"interval": 5, "values": {"t": {"kind": "random"}}},
        }
        for n in range(args.devices)
    ]
    ready, rss = [], []
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", LocalCA.create(work / "ca"))
        broker.start()
        try:
            config = write_config(work, broker, devices)
            for _ in range(args.rounds):
                path = work / "notify.sock"
                path.unlink(missing_ok=True)
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.bind(str(path))
                    sock.settimeout(10)
                    started = time.perf_counter()
                    proc = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "edged",
                            "run",
                            "--config",
                            str(config),
                            "--log-level",
                            "warning",
                        ],
                        env={**os.environ, "NOTIFY_SOCKET": str(path)},
                    )
                    try:
                        while b"READY=1" not in sock.recv(4096):
                            pass
                        ready.append(time.perf_counter() - started)
                        time.sleep(3)
                        rss.append(_rss_mb(proc.pid))
                    finally:
                        proc.terminate()
                        proc.wait(20)
        finally:
            broker.stop()
    print(
        f"{args.devices} devices: READY=1 after {statistics.median(ready) * 1000:.0f} ms (median of "
        f"{args.rounds}; max {max(ready) * 1000:.0f} ms); RSS {statistics.median(rss):.1f} MB"
    )


if __name__ == "__main__":
    main()
