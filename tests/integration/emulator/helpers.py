"""A plain paho client playing the gateway (or a second application) in the emulator's tests."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edged.model import DeviceIdentity
from tests.support.broker import APP_USER, GATEWAY_USER, Broker

ORG = "testorg"
GATEWAY = DeviceIdentity("test-gw", "gw-0001")
BOILER = DeviceIdentity("modbus-meter", "boiler-1")
PUMP = DeviceIdentity("pump", "pump-7")

# Topics are written out here, not built by edged.topics or the emulator's grammar: these tests
# check the emulator, and neither may vouch for it.
PATH = {
    GATEWAY: "type/test-gw/id/gw-0001",
    BOILER: "type/modbus-meter/id/boiler-1",
    PUMP: "type/pump/id/pump-7",
}
"""The ``type/T/id/D`` part of each device's topics."""
BOILER_READING = "iot-2/type/modbus-meter/id/boiler-1/evt/reading/fmt/json"


class RawClient:
    """A paho MQTT v5 client on its own thread; received messages are queued."""

    def __init__(self, broker: Broker, *, client_id: str, username: str, password: str) -> None:
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda *args: self._connected.set()
        self.client.on_message = lambda client, userdata, message: self.received.put(message)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(5):
            self.close()
            raise AssertionError(f"{client_id}: no CONNACK")
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stalls in answers

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK."""
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic_filter, qos)
        assert done.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: bytes | Any, qos: int = 1, retain: bool = False) -> None:
        """Publish (JSON-encoding anything but bytes) and wait until it was sent / acknowledged."""
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        info = self.client.publish(topic, body, qos=qos, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published(), f"publish to {topic} not acknowledged"

    def next_message(self, timeout: float = 5) -> mqtt.MQTTMessage:
        """The next message received (fails after ``timeout`` seconds)."""
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout} s") from None

    def nothing_within(self, timeout: float) -> bool:
        """True when no message arrives within ``timeout`` seconds."""
        try:
            self.received.get(timeout=timeout)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        """Disconnect, stop the thread, close every socket."""
        self.client.disconnect()
        self.client.loop_stop()
        # paho closes its wake-up socket pair only when collected; the lambdas above keep it
        # alive through a reference cycle, so close it now for the leak check.
        self.client._reset_sockets()


def gateway_client(broker: Broker) -> RawClient:
    """A client logged in as the gateway (its ACL allows only gateway topics)."""
    return RawClient(
        broker,
        client_id="g:testorg:test-gw:gw-0001",
        username=GATEWAY_USER,
        password=broker.gateway_token,
    )


def app_client(broker: Broker, app_id: str = "raw") -> RawClient:
    """A second application client (allowed to publish anywhere)."""
    return RawClient(
        broker,
        client_id=f"a:testorg:{app_id}",
        username=APP_USER,
        password=broker.app_password,
    )


def event_body(**values: Any) -> bytes:
    """An edged-style event body."""
    return orjson.dumps({"ts": "2026-01-01T00:00:00.000Z", "d": values})
