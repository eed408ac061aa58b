"""Micro-benchmark: publishing through :class:`edged.uplink.Uplink` versus a bare paho client.

Both publish the same N messages to the same local mosquitto in the same run, at QoS 0 and
QoS 1, with 100 messages in flight. "Done" means every QoS 1 message is acknowledged, or every
QoS 0 message is written to the socket. CPU is this process's (all threads). A mosquitto_sub
process counts what the broker delivered. A third variant adds a VERSION2 ``on_publish``
callback to the uplink, to show what learning PUBACKs that way would cost.

    .venv/bin/python tests/bench/bench_uplink.py [--messages 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edged.uplink import Uplink
from tests.support.broker import APP_USER, GATEWAY_USER, Broker, TestCA
from tests.support.uplink_settings import settings_for_port

INFLIGHT = 100
BARE = "bare paho (loop_start)"
PAYLOAD = b'{"ts":1700000000.123,"d":{"temperature":21.5,"humidity":40.25,"status":"ok"}}'


@dataclass
class Result:
    name: str
    qos: int
    seconds: float
    cpu: float
    delivered: int
    messages: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.messages * 1e6


class Counter:
    """mosquitto_sub in its own process, counting deliveries on one topic."""

    def __init__(self, broker: Broker, topic: str, expected: int) -> None:
        command = [shutil.which("mosquitto_sub") or "mosquitto_sub", "-q", "1", "-W", "120"]
        command += ["-h", broker.host, "-p", str(broker.port), "-t", topic, "-C", str(expected)]
        command += ["-u", APP_USER, "-P", broker.app_password]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(0.2)  # let it subscribe

    def count(self, settle: float = 1.5) -> int:
        try:
            out, _ = self.proc.communicate(timeout=settle)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            out, _ = self.proc.communicate()
        return out.count(b"\n")


def bare_paho(broker: Broker, topic: str, n: int, qos: int) -> tuple[float, float]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="g:bench:gw:bare")
    client.username_pw_set(GATEWAY_USER, broker.gateway_token)
    client.max_inflight_messages_set(INFLIGHT)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        while not client.is_connected():
            time.sleep(0.001)
        wall, cpu = time.perf_counter(), time.process_time()
        infos = [client.publish(topic, PAYLOAD, qos) for _ in range(n)]
        for info in infos:
            info.wait_for_publish(60)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        client.disconnect()
        client.loop_stop()


def uplink(
    broker: Broker, topic: str, n: int, qos: int, *, on_publish: bool = False
) -> tuple[float, float]:
    settings = replace(
        settings_for_port(broker.port, token=broker.gateway_token),
        client_id="g:bench:gw:uplink",
        host=broker.host,
        persistent_session=False,
        session_expiry=0,
        keepalive=60,
        connect_timeout=10,
        reconnect_initial=0.5,
        reconnect_max=2,
        refused_initial=1,
        refused_max=2,
        max_inflight=INFLIGHT,
        stable_after=10.0,
    )

    async def main() -> tuple[float, float]:
        up = Uplink(settings, lambda message: None)
        if on_publish:
            up._client.on_publish = _ignore
        task = asyncio.create_task(up.run())
        try:
            await up.wait_connected()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                await up.publish(topic, PAYLOAD, qos)
            assert await up.flush(60), "flush timed out"
            return time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await up.close(5)
            await task

    return asyncio.run(main())


def _ignore(*args: Any) -> None:
    pass


def measure(
    broker: Broker, name: str, qos: int, n: int, run: Callable[[str], tuple[float, float]], tag: str
) -> Result:
    topic = f"iot-2/type/bench/id/{tag}/evt/e/fmt/json"
    counter = Counter(broker, topic, n)
    seconds, cpu = run(topic)
    return Result(name, qos, seconds, cpu, counter.count(), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(workdir=Path(tmp) / "broker", ca=TestCA.create(Path(tmp) / "ca"))
        broker.start()
        try:
            results: list[Result] = []
            for round_no in range(args.rounds):
                for qos in (0, 1):
                    variants: list[tuple[str, Callable[[str], tuple[float, float]]]] = [
                        (BARE, functools.partial(bare_paho, broker, n=n, qos=qos)),
                        ("Uplink", functools.partial(uplink, broker, n=n, qos=qos)),
                        (
                            "Uplink + on_publish",
                            functools.partial(uplink, broker, n=n, qos=qos, on_publish=True),
                        ),
                    ]
                    if round_no % 2:
                        variants.reverse()
                    for index, (name, run) in enumerate(variants):
                        tag = f"r{round_no}q{qos}v{index}"
                        results.append(measure(broker, name, qos, n, run, tag))
        finally:
            broker.stop()
    report(results, n, args.rounds)


def report(results: list[Result], n: int, rounds: int) -> None:
    print(f"{n} messages of {len(PAYLOAD)} bytes, {INFLIGHT} in flight, median of {rounds} rounds")
    print(f"{'variant':<26}{'QoS':>4}{'msgs/s':>10}{'CPU us/msg':>12}{'delivered':>11}{'ratio':>8}")
    for qos in (0, 1):
        rows = [r for r in results if r.qos == qos]
        names = list(dict.fromkeys(r.name for r in rows))
        medians = {
            name: (
                statistics.median(r.rate for r in rows if r.name == name),
                statistics.median(r.cpu_us for r in rows if r.name == name),
                min(r.delivered for r in rows if r.name == name),
            )
            for name in names
        }
        base = medians[BARE][0]
        for name, (rate, cpu_us, delivered) in medians.items():
            print(
                f"{name:<26}{qos:>4}{rate:>10.0f}{cpu_us:>12.1f}{delivered:>11}{rate / base:>8.2f}"
            )


if __name__ == "__main__":
    main()
