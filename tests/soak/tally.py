"""An independent count of what reached the broker: mosquitto_sub with a persistent session,
and the per-device check of what it received against what each device produced."""

from __future__ import annotations

import json
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from edged.devbroker import APP_USER, Broker


class CountingSubscriber:
    """``mosquitto_sub -c -q 1`` on every event topic, writing ``topic payload`` lines to a file.

    Clean session off and QoS 1: what is published while it is away (a broker restart) is kept
    for it by the broker, so it sees every event at least once.
    """

    def __init__(self, broker: Broker, directory: Path, client_id: str = "a:testorg:soak") -> None:
        self.client_id = client_id
        self.path = directory / "received.txt"
        self._out = self.path.open("wb")
        self.process = subprocess.Popen(
            [
                "mosquitto_sub",
                *("-h", broker.host, "-p", str(broker.port)),
                *("-q", "1", "-c", "-i", client_id),
                *("-u", APP_USER, "-P", broker.app_password),
                *("-t", "iot-2/type/+/id/+/evt/+/fmt/+", "-F", "%t %p"),
            ],
            stdout=self._out,
            stderr=subprocess.DEVNULL,
        )

    def wait_connected(self, broker: Broker, timeout: float = 10) -> None:
        """Wait until the broker logged this client's connection."""
        deadline = time.monotonic() + timeout
        while self.client_id not in broker.log():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the counting subscriber did not connect")
            time.sleep(0.05)

    def received(self, device_type: str) -> dict[str, list[int]]:
        """Per device id of ``device_type``: the values of ``n`` received, in arrival order."""
        values: dict[str, list[int]] = defaultdict(list)
        for line in self.path.read_text(errors="replace").splitlines():
            topic, _, payload = line.partition(" ")
            levels = topic.split("/")
            # A line cut short by a write still in progress is taken at the next read.
            if len(levels) == 9 and levels[2] == device_type and payload.endswith("}"):
                values[levels[4]].append(int(json.loads(payload)["d"]["n"]))
        return values

    def stop(self) -> None:
        """End mosquitto_sub and close its output file."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)
        self._out.close()


@dataclass(frozen=True)
class Delivery:
    """What one device's events looked like at the subscriber."""

    device: str
    produced: int
    distinct: int
    duplicates: int
    missing: int
    """Values in ``0..produced-1`` never received."""
    unexpected: int
    """Values received outside ``0..produced-1`` (the daemon invented or renumbered one)."""
    in_order: bool
    """Each value's first arrival came after the first arrival of every smaller value."""

    @property
    def ok(self) -> bool:
        """Everything produced arrived (repeats allowed), nothing else did, in order."""
        return self.missing == 0 and self.unexpected == 0 and self.in_order


def check(device: str, produced: int, values: list[int]) -> Delivery:
    """Compare ``values`` (as received, in order) with a device that produced 0..produced-1."""
    distinct = set(values)
    expected = set(range(produced))
    firsts = list(dict.fromkeys(values))
    return Delivery(
        device=device,
        produced=produced,
        distinct=len(distinct & expected),
        duplicates=len(values) - len(distinct),
        missing=len(expected - distinct),
        unexpected=len(distinct - expected),
        in_order=firsts == sorted(firsts),
    )
