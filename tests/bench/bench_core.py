"""Benchmark: events/s and CPU per event through the whole daemon, against bare paho and wiotp-sdk.

Three publishers send the same N events to the same local mosquitto in the same run:

* **edged**: the daemon as a real process, one simulated device emitting flat out
  (adapter -> bridge -> queue -> uplink);
* **bare paho**: a paho client (loop_start, 100 in flight) publishing pre-encoded payloads;
* **wiotp-sdk**: IBM's Python SDK (``GatewayClient.publishDeviceEvent``) in its own virtualenv
  (it pins paho-mqtt < 2), on the broker's 127.0.0.1:1883 listener (the SDK only knows 1883/8883).

A ``mosquitto_sub`` process (C, QoS 1) timestamps every delivered message; the rate is taken
between the first and the last delivery, and the publisher's CPU (user + system, from /proc)
over the same span. Every run checks that all N sequence numbers arrived (zero loss).

    .venv/bin/python tests/bench/bench_core.py [--events 20000] [--rounds 3] [--wiotp PYTHON]

``--wiotp`` is a Python with wiotp-sdk installed; by default ``.bench/wiotp/bin/python``,
created on first use (``python3 -m venv .bench/wiotp && .bench/wiotp/bin/pip install wiotp-sdk``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.devbroker import Broker, LocalCA  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
INFLIGHT = int(os.environ.get("BENCH_INFLIGHT", "100"))

BARE_PAHO = textwrap.dedent(
    """
    import sys, threading, time
    import orjson
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    host, port, token, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[6]
    n, qos = int(sys.argv[4]), int(sys.argv[5])
    ts = "2026-11-23T12:00:00.000Z"
    payloads = [orjson.dumps({"ts": ts, "d": {"n": i, "v": 21.5}}) for i in range(n)]
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="g:benchorg:gwt:bare", clean_session=True)
    client.username_pw_set("use-token-auth", token)
    client.max_inflight_messages_set(INFLIGHT)
    client.on_connect = lambda *a: connected.set()
    client.connect(host, port)
    client.loop_start()
    connected.wait(10)
    infos = [client.publish(topic, p, qos) for p in payloads]
    for info in infos:
        info.wait_for_publish(60)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    """
).replace("INFLIGHT", str(INFLIGHT))

WIOTP = textwrap.dedent(
    """
    import logging, sys, threading, time
    import wiotp.sdk.gateway
    token, n, qos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    done = threading.Semaphore(0)
    config = {
        "identity": {"orgId": "benchorg", "typeId": "gwt", "deviceId": "sdkgw"},
        "auth": {"token": token},
        "options": {"mqtt": {"port": 1883}, "logLevel": "ERROR"},
    }
    client = wiotp.sdk.gateway.GatewayClient(config=config)
    client.logger.setLevel(logging.ERROR)
    client.address = "127.0.0.1"
    client.connect()
    ts = "2026-11-23T12:00:00.000Z"
    for i in range(n):
        while not client.publishDeviceEvent(
            "sim", "sdk-dev", "reading", "json", {"ts": ts, "d": {"n": i, "v": 21.5}}, qos=qos,
            onPublish=done.release,
        ):
            time.sleep(0.001)
    for _ in range(n):
        done.acquire(timeout=60)
    time.sleep(0.5)
    client.disconnect()
    """
)


@dataclass
class Result:
    """One publisher's run."""

    rate: float  # events/s between first and last delivery
    cpu_us: float  # publisher CPU per event
    received: int


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _measure(publisher: list[str], topic: str, broker: Broker, n: int, workdir: Path) -> Result:
    out = workdir / "deliveries.txt"
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-u",
            "a-testorg-app",
            "-P",
            broker.app_password,
            "-q",
            "0",
            "-t",
            topic,
            "-C",
            str(n),
            "-F",
            "%U %p",
        ],
        stdout=out.open("wb"),
    )
    time.sleep(0.3)
    proc = subprocess.Popen(publisher, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while out.stat().st_size == 0:
            if time.monotonic() > deadline or proc.poll() not in (None, 0):
                raise RuntimeError(f"no delivery from {publisher[:3]}")
            time.sleep(0.0005)
        cpu0 = _cpu(proc.pid)
        sub.wait(120)
        cpu1 = _cpu(proc.pid)
    finally:
        proc.terminate()
        proc.wait(20)
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    lines = out.read_bytes().splitlines()
    stamps = [float(line.split(b" ", 1)[0]) for line in lines]
    seen = {orjson.loads(line.split(b" ", 1)[1])["d"]["n"] for line in lines}
    if seen != set(range(n)):
        raise RuntimeError(f"{publisher[:3]}: lost {n - len(seen)} of {n} events")
    span = stamps[-1] - stamps[0]
    return Result(rate=(n - 1) / span, cpu_us=(cpu1 - cpu0) / n * 1e6, received=len(lines))


def _daemon(broker: Broker, workdir: Path, n: int, qos: int) -> list[str]:
    token = workdir / "token"
    token.write_text(broker.gateway_token)
    config = {
        "platform": {
            "org": "benchorg",
            "gateway": {"type": "gwt", "id": "edgedgw"},
            "host": "127.0.0.1",
            "port": broker.port,
            "tls": False,
            "token_file": str(token),
            "qos": qos,
            "max_inflight": INFLIGHT,
        },
        "status": {"interval": "1h"},
        "logging": {"level": "warning"},
        "devices": [
            {
                "id": "edged-dev",
                "type": "sim",
                "adapter": "simulated",
                "simulated": {
                    "interval": 0,
                    "count": n,
                    "values": {
                        "n": {"kind": "counter", "min": 0, "max": n},
                        "v": {"kind": "constant", "min": 21.5, "decimals": 1},
                    },
                },
            }
        ],
    }
    path = workdir / "edged.yaml"
    path.write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "edged", "run", "--config", str(path)]


def _ensure_wiotp(python: Path) -> Path | None:
    if python.exists():
        return python
    venv = python.parent.parent
    print(f"creating {venv} with wiotp-sdk ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "wiotp-sdk"], check=True)
    except subprocess.CalledProcessError as exc:
        print(f"wiotp-sdk unavailable: {exc}")
        return None
    return python


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wiotp", type=Path, default=REPO / ".bench" / "wiotp" / "bin" / "python")
    args = parser.parse_args()
    wiotp = _ensure_wiotp(args.wiotp)
    n = args.events
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", LocalCA.create(work / "ca"), extra_listeners=(1883,))
        broker.start()
        try:
            for qos in (0, 1):
                results: dict[str, list[Result]] = {"bare paho": [], "edged": [], "wiotp-sdk": []}
                for _ in range(args.rounds):
                    results["bare paho"].append(
                        _measure(
                            [
                                sys.executable,
                                "-c",
                                BARE_PAHO,
                                "127.0.0.1",
                                str(broker.port),
                                broker.gateway_token,
                                str(n),
                                str(qos),
                                "iot-2/type/sim/id/bare-dev/evt/reading/fmt/json",
                            ],
                            "iot-2/type/sim/id/bare-dev/evt/reading/fmt/json",
                            broker,
                            n,
                            work,
                        )
                    )
                    results["edged"].append(
                        _measure(
                            _daemon(broker, work, n, qos),
                            "iot-2/type/sim/id/edged-dev/evt/reading/fmt/json",
                            broker,
                            n,
                            work,
                        )
                    )
                    if wiotp is not None:
                        results["wiotp-sdk"].append(
                            _measure(
                                [str(wiotp), "-c", WIOTP, broker.gateway_token, str(n), str(qos)],
                                "iot-2/type/sim/id/sdk-dev/evt/reading/fmt/json",
                                broker,
                                n,
                                work,
                            )
                        )
                base = statistics.median(r.rate for r in results["bare paho"])
                base_cpu = statistics.median(r.cpu_us for r in results["bare paho"])
                print(
                    f"\nQoS {qos}: {n} events x {args.rounds} rounds (medians), zero loss in every run"
                )
                print(
                    f"  {'publisher':<11} {'events/s':>10} {'vs paho':>8} {'CPU us/event':>13} {'vs paho':>8}"
                )
                for name, runs in results.items():
                    if not runs:
                        continue
                    rate = statistics.median(r.rate for r in runs)
                    cpu = statistics.median(r.cpu_us for r in runs)
                    print(
                        f"  {name:<11} {rate:>10.0f} {rate / base:>8.2f} {cpu:>13.1f} {cpu / base_cpu:>8.2f}"
                    )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
