"""Helpers for the uplink's integration tests: settings, a platform-side client, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edged.uplink import IncomingMessage, Uplink, UplinkSettings
from tests.support.broker import APP_USER, Broker
from tests.support.uplink_settings import settings_for_port

COMMANDS = "iot-2/type/test-gw/id/gw-0001/cmd/+/fmt/+"
EVENTS = "iot-2/type/test-gw/id/gw-0001/evt/+/fmt/+"


def event_topic(event: str = "reading") -> str:
    return f"iot-2/type/test-gw/id/gw-0001/evt/{event}/fmt/json"


def command_topic(command: str = "reboot") -> str:
    return f"iot-2/type/test-gw/id/gw-0001/cmd/{command}/fmt/json"


def settings_for(broker: Broker, **overrides: Any) -> UplinkSettings:
    """Plain TCP to ``broker`` with short timings suited to tests."""
    base = settings_for_port(broker.port, token=broker.gateway_token)
    return replace(base, **overrides)


async def eventually(
    predicate: Callable[[], bool], within: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


class Inbox:
    """Collects the uplink's incoming messages."""

    def __init__(self) -> None:
        self.messages: list[IncomingMessage] = []

    def __call__(self, message: IncomingMessage) -> None:
        self.messages.append(message)

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]


@contextlib.asynccontextmanager
async def running(uplink: Uplink, close_timeout: float = 5.0) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``uplink`` for the block; close it (and make sure run() ended) afterwards."""
    task = asyncio.create_task(uplink.run(), name="uplink")
    try:
        yield task
    finally:
        if not task.done():
            await uplink.close(close_timeout)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class AppClient:
    """The platform application side: a paho client on its own thread (loop_start).

    Its blocking waits are short (local broker) and only used between uplink steps.
    """

    def __init__(
        self,
        broker: Broker,
        client_id: str = "a:testorg:tester",
        *,
        username: str = APP_USER,
        password: str | None = None,
        clean: bool = True,
        v5: bool = False,
    ) -> None:
        self.broker = broker
        self.received: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.disconnects = 0
        kwargs: dict[str, Any] = {"client_id": client_id}
        if v5:
            kwargs["protocol"] = MQTTProtocolVersion.MQTTv5
        else:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        self.client.username_pw_set(username, broker.app_password if password is None else password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda *args: self._connected.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 1)

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(message)

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnects += 1
        self._connected.clear()

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.received]

    def connect(self, timeout: float = 5.0) -> AppClient:
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise AssertionError("app client: no CONNACK")
        return self

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic_filter, qos)
        if not done.wait(5):
            raise AssertionError("app client: no SUBACK")

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(5)
        assert info.is_published(), "app client: publish not acknowledged"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        # loop_start() made a socketpair that paho closes only when the client is collected,
        # and the callbacks here form a reference cycle: close it now for the leak check.
        self.client._reset_sockets()
