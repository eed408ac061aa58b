"""Benchmark: events/s and CPU per event through the whole daemon, against bare paho and wiotp-sdk.

Four publishers (five runs) send the same N events to the same local mosquitto in the same run:

* **edged**: the daemon as a real process, one simulated device emitting flat out
  (adapter -> bridge -> outbox (SQLite, in the run's temporary directory) -> forwarder ->
  uplink), with its default 100 messages in flight, and again as **edged 1000** with
  ``platform.max_inflight: 1000``;
* **paho default**: a paho client in its default shape (``loop_start`` thread, 100 in flight)
  publishing pre-encoded payloads;
* **paho fastest**: the same client with its loop driven by hand (``select`` around
  ``loop_read``/``loop_write``/``loop_misc``, no thread), 1,000 in flight (kept by the script;
  paho's own limit off) and no ``on_publish`` callback: the fastest a client that keeps nothing
  publishes here;
* **wiotp-sdk**: IBM's Python SDK (``GatewayClient.publishDeviceEvent``) in its own virtualenv
  (it pins paho-mqtt < 2), on the broker's 127.0.0.1:1883 listener (the SDK only knows 1883/8883).

A ``mosquitto_sub`` process (C, QoS 0) timestamps every delivered message; the rate is taken
between the first and the last delivery, and the publisher's CPU (user + system, from /proc)
over the same span. Every run checks that all N sequence numbers arrived (zero loss).

    .venv/bin/python -m tests.bench.bench_core [--events 20000] [--rounds 3] [--wiotp PYTHON]

Each table row gives the publisher's rate against each baseline (paho default, paho fastest,
wiotp-sdk); ``BENCH_INFLIGHT`` changes the in-flight window of edged and paho default.

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
from typing import Any

import orjson
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.devbroker import Broker, LocalCA  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
INFLIGHT = int(os.environ.get("BENCH_INFLIGHT", "100"))
FAST_INFLIGHT = 1000

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

# The loop driven by hand: publish while fewer than WINDOW are unacknowledged, then one select()
# on the socket and paho's read/write/housekeeping steps: no thread, no lock hand-over, and no
# on_publish callback (paho builds reason code and properties objects for each call of it);
# acknowledgements are read from the message infos, oldest first. The window is kept here, not
# by paho's max_inflight: below that limit paho walks all its unacknowledged messages on every
# PUBACK, looking for queued ones to send (at 1,000 in flight: ~190 us per PUBACK).
FAST_PAHO = textwrap.dedent(
    """
    import select, sys, time
    import orjson
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    host, port, token, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[6]
    n, qos = int(sys.argv[4]), int(sys.argv[5])
    ts = "2026-11-23T12:00:00.000Z"
    payloads = [orjson.dumps({"ts": ts, "d": {"n": i, "v": 21.5}}) for i in range(n)]
    connected = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="g:benchorg:gwt:fast", clean_session=True)
    client.username_pw_set("use-token-auth", token)
    client.max_inflight_messages_set(0)  # no limit in paho: see above
    client.on_connect = lambda *args: connected.append(True)
    client.connect(host, port)
    sock = client.socket()
    def pump(timeout):
        writing = [sock] if client.want_write() else []
        readable, writable, _ = select.select([sock], writing, [], timeout)
        if readable:
            client.loop_read(WINDOW)
        if writable:
            client.loop_write()
        client.loop_misc()
    deadline = time.monotonic() + 10
    while not connected:
        if time.monotonic() > deadline:
            sys.exit("no CONNACK")
        pump(0.1)
    infos = []
    acked = 0
    while acked < n:
        while len(infos) < n and len(infos) - acked < WINDOW:
            infos.append(client.publish(topic, payloads[len(infos)], qos))
        while acked < len(infos) and infos[acked].is_published():
            acked += 1
        if acked < n:
            pump(0 if len(infos) - acked < WINDOW and len(infos) < n else 1.0)
    client.disconnect()
    """
).replace("WINDOW", str(FAST_INFLIGHT))

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


def measure(publisher: list[str], topic: str, broker: Broker, n: int, workdir: Path) -> Result:
    """Start a QoS 0 ``mosquitto_sub`` on ``topic``, then ``publisher``; once ``n`` messages
    arrived, stop both and return the rate between the first and last delivery (zero loss
    checked: every ``d.n`` in ``range(n)`` arrived)."""
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


def daemon_config(
    broker: Broker, workdir: Path, count: int, qos: int, **storage: object
) -> dict[str, Any]:
    """The daemon's config: one simulated device emitting ``count`` readings flat out (0: none),
    its outbox at ``workdir/outbox.sqlite`` (``storage`` adds or overrides keys)."""
    token = workdir / "token"
    token.write_text(broker.gateway_token)
    return {
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
        # The device's first message registers it (docs/registration.md); without a notify the
        # registrar waits confirm_after (10 s by default) before the rest may go. A bench run
        # measures a registered device: confirmed at once.
        "registration": {"confirm_after": 0.01},
        "storage": {"path": str(workdir / "outbox.sqlite"), **storage},
        "devices": [
            {
                "id": "edged-dev",
                "type": "sim",
                "adapter": "simulated",
                "simulated": {
                    "interval": 0,
                    "count": count,
                    "values": {
                        "n": {"kind": "counter", "min": 0, "max": max(count, 1)},
                        "v": {"kind": "constant", "min": 21.5, "decimals": 1},
                    },
                },
            }
        ],
    }


def remove_outbox(workdir: Path) -> None:
    """Delete the outbox database and its WAL, so that a run starts with nothing to replay."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        (workdir / f"outbox.sqlite{suffix}").unlink(missing_ok=True)


def daemon_command(config: dict[str, Any], workdir: Path) -> list[str]:
    """Write ``config`` and return the command line that runs the daemon on it."""
    path = workdir / "edged.yaml"
    path.write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "edged", "run", "--config", str(path)]


def _daemon(broker: Broker, workdir: Path, n: int, qos: int, inflight: int = INFLIGHT) -> list[str]:
    remove_outbox(workdir)
    config = daemon_config(broker, workdir, n, qos)
    config["platform"]["max_inflight"] = inflight
    return daemon_command(config, workdir)


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


def _paho(script: str, broker: Broker, n: int, qos: int, device: str) -> tuple[list[str], str]:
    topic = f"iot-2/type/sim/id/{device}/evt/reading/fmt/json"
    command = [
        sys.executable,
        "-c",
        script,
        "127.0.0.1",
        str(broker.port),
        broker.gateway_token,
        str(n),
        str(qos),
        topic,
    ]
    return command, topic


BASELINES = ("paho default", "paho fastest", "wiotp-sdk")


def _report(qos: int, n: int, rounds: int, results: dict[str, list[Result]]) -> None:
    rates = {
        name: statistics.median(r.rate for r in runs) for name, runs in results.items() if runs
    }
    base_cpu = statistics.median(r.cpu_us for r in results["paho default"])
    bases = [name for name in BASELINES if name in rates]
    print(f"\nQoS {qos}: {n} events x {rounds} rounds (medians), zero loss in every run")
    print(
        f"  {'publisher':<13} {'events/s':>9}"
        + "".join(f" {'vs ' + name:>17}" for name in bases)
        + f" {'CPU us/event':>13} {'vs paho default':>16}"
    )
    for name, runs in results.items():
        if not runs:
            continue
        cpu = statistics.median(r.cpu_us for r in runs)
        print(
            f"  {name:<13} {rates[name]:>9.0f}"
            + "".join(f" {rates[name] / rates[base]:>17.2f}" for base in bases)
            + f" {cpu:>13.1f} {cpu / base_cpu:>16.2f}"
        )
    print(
        "  edged rates per round: "
        + ", ".join(f"{r.rate:.0f}" for r in results["edged"])
        + "; paho fastest: "
        + ", ".join(f"{r.rate:.0f}" for r in results["paho fastest"])
    )


def main() -> None:
    """Run every publisher ``--rounds`` times per QoS and print the medians and ratios."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qos", type=int, choices=(0, 1), action="append")
    parser.add_argument("--wiotp", type=Path, default=REPO / ".bench" / "wiotp" / "bin" / "python")
    args = parser.parse_args()
    wiotp = _ensure_wiotp(args.wiotp)
    n = args.events
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", LocalCA.create(work / "ca"), extra_listeners=(1883,))
        broker.start()
        try:
            for qos in args.qos or (0, 1):
                results: dict[str, list[Result]] = {
                    "paho default": [],
                    "paho fastest": [],
                    "edged": [],
                    f"edged {FAST_INFLIGHT}": [],
                    "wiotp-sdk": [],
                }
                for _ in range(args.rounds):
                    for name, script, device in (
                        ("paho default", BARE_PAHO, "bare-dev"),
                        ("paho fastest", FAST_PAHO, "fast-dev"),
                    ):
                        command, topic = _paho(script, broker, n, qos, device)
                        results[name].append(measure(command, topic, broker, n, work))
                    for name, inflight in (
                        ("edged", INFLIGHT),
                        (f"edged {FAST_INFLIGHT}", FAST_INFLIGHT),
                    ):
                        results[name].append(
                            measure(
                                _daemon(broker, work, n, qos, inflight),
                                "iot-2/type/sim/id/edged-dev/evt/reading/fmt/json",
                                broker,
                                n,
                                work,
                            )
                        )
                    if wiotp is not None:
                        results["wiotp-sdk"].append(
                            measure(
                                [str(wiotp), "-c", WIOTP, broker.gateway_token, str(n), str(qos)],
                                "iot-2/type/sim/id/sdk-dev/evt/reading/fmt/json",
                                broker,
                                n,
                                work,
                            )
                        )
                _report(qos, n, args.rounds, results)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
