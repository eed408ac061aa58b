"""An in-memory harness for DMAgent: a real event loop, a recording platform, real state files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from edged import topics
from edged.adapters.base import LocationBoard
from edged.config.management import DeviceManageConfig, ManagedConfig
from edged.dm.agent import DMAgent
from edged.errors import CommandFailed
from edged.model import Command, DeviceIdentity, JSONValue
from edged.statefile import StateFile

GW = DeviceIdentity("gw", "GW1")
S1 = DeviceIdentity("sensor", "S1")
S2 = DeviceIdentity("sensor", "S2")
STRANGER = DeviceIdentity("sensor", "NOT-MANAGED")
VERSION = "9.8.7"

ATTACHED = {
    "metadata": {"room": "boiler"},
    "device_info": {"model": "PX-1", "serialNumber": "S1-0001"},
    "actions": {"reboot": {"command": "coil_reboot", "data": {"coil": 7}}},
    "custom": {
        "tools": {
            "echo": {"command": "echo", "parameters": [{"name": "text", "required": True}]},
            "fail": {"command": "fail"},
            "slow": {"command": "slow", "timeout": 30},
        }
    },
}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Sent:
    device: DeviceIdentity
    suffix: str
    body: dict[str, Any]


class Rig:
    """One DMAgent wired to a recording ``send`` and a scripted ``execute``."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        settings: Mapping[str, Any] | None = None,
        devices: Mapping[DeviceIdentity, Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        location: LocationBoard | None = None,
        auto: Mapping[str, int] | None = None,
    ) -> None:
        self.sent: list[Sent] = []
        self.commands: list[Command] = []
        self.release = asyncio.Event()
        self.auto = dict(auto or {})
        """suffix -> rc the platform answers our requests with at once (none: no answer)."""
        self.state_path = tmp_path / "dm.json"
        self.settings = ManagedConfig.model_validate(
            {"lifetime": 3600, "response_timeout": 5, **(settings or {})}
        )
        device_map = {S1: ATTACHED} if devices is None else devices
        self.agent = DMAgent(
            GW,
            self.settings,
            {d: DeviceManageConfig.model_validate(c) for d, c in device_map.items()},
            self.send,
            self.execute,
            StateFile(str(self.state_path)),
            version=VERSION,
            location=location,
            clock=clock,
        )
        self.agent.load()

    # -- the platform's side -------------------------------------------------------------------

    def send(self, device: DeviceIdentity, topic: str, payload: bytes) -> None:
        parsed = topics.parse(topic)
        assert isinstance(parsed, topics.DMTopic) and not parsed.to_device
        assert parsed.device == device
        body = orjson.loads(payload)
        self.sent.append(Sent(device, parsed.suffix, body))
        rc = self.auto.get(parsed.suffix)
        if rc is not None:
            asyncio.get_running_loop().call_soon(self.respond, device, body["reqId"], rc)

    def respond(self, device: DeviceIdentity, req_id: str, rc: int = 200) -> None:
        self.deliver(device, "response", {"rc": rc, "reqId": req_id})

    def deliver(self, device: DeviceIdentity, suffix: str, body: object) -> None:
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        self.agent.handle(topics.DMTopic(device, suffix, to_device=True), payload)

    def of(self, suffix: str, device: DeviceIdentity | None = None) -> list[Sent]:
        return [s for s in self.sent if s.suffix == suffix and device in (None, s.device)]

    def answers(self, req_id: str) -> list[dict[str, Any]]:
        return [s.body for s in self.of("response") if s.body.get("reqId") == req_id]

    def answer(self, req_id: str) -> dict[str, Any]:
        found = self.answers(req_id)
        assert len(found) == 1, found
        return found[0]

    def manage_all(self, rc: int = 200) -> None:
        self.agent.connected()
        for sent in self.of("mgmt/manage"):
            self.respond(sent.device, sent.body["reqId"], rc)

    # -- the adapters' side --------------------------------------------------------------------

    async def execute(self, command: Command) -> Mapping[str, JSONValue] | None:
        self.commands.append(command)
        if command.name == "fail":
            raise CommandFailed("the coil did not answer")
        if command.name == "slow":
            await self.release.wait()
        return None


async def settle(rounds: int = 20) -> None:
    """Let tasks started by the agent run as far as they can."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` (the agent offers no event for every outcome a test looks at)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polling on purpose, see above
            await asyncio.sleep(0.005)
