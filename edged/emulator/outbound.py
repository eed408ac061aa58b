"""What the emulator sends to the gateway: commands, notify messages and DM requests.

Each is recorded before it is published, so an answer that comes at once always finds it, and
each call blocks until the broker acknowledged the message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from edged.appclient import grammar
from edged.emulator import notify
from edged.emulator.connection import Connection
from edged.emulator.recorder import Recorder
from edged.emulator.records import DMExchange, DMMessage, SentCommand, SentNotify
from edged.model import DeviceIdentity


def _encode(data: object, fmt: str) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str) and fmt != "json":
        return data.encode("utf-8")
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


class Outbound:
    """Builds, records and publishes what the emulator sends (see :class:`PlatformEmulator`).

    Args:
        org: Organization id, for the default client id in notify messages.
        recorder: Where sent messages are recorded and DM requests are tracked.
        connection: What publishes them.
    """

    def __init__(self, org: str, recorder: Recorder, connection: Connection) -> None:
        self._org = org
        self._rec = recorder
        self._connection = connection

    def send_command(
        self, device: DeviceIdentity, command: str, data: object | bytes, fmt: str, qos: int
    ) -> None:
        """Record and publish a command to ``device``."""
        if not (grammar.is_valid_level(command) and grammar.is_valid_level(fmt)):
            raise ValueError(f"invalid command {command!r} or format {fmt!r}")
        topic = grammar.command_topic(device, command, fmt)
        payload = _encode(data, fmt)
        decoded = data if not isinstance(data, bytes | bytearray | memoryview) else None
        sent = SentCommand(device, command, fmt, topic, payload, decoded, qos, time.time())
        with self._rec.cond:
            self._rec.commands.append(sent)
            self._rec.cond.notify_all()
        self._rec.emit([sent])  # before publishing, so a fast answer is never rendered first
        self._connection.publish(topic, payload, qos)

    def publish_notify(
        self,
        gateway: DeviceIdentity,
        *,
        device: DeviceIdentity | None,
        message: str,
        request: str,
        rc: int | str,
        topic: str | None,
        client_id: str | None,
        qos: int,
    ) -> dict[str, Any]:
        """Record and publish a gateway notify message; return its body."""
        if topic is None:
            if device is None:
                raise ValueError("topic is required when device is None")
            topic = self._default_notify_topic(device, request)
        body = notify.notify_body(
            topic=topic,
            client_id=client_id or grammar.gateway_client_id(self._org, gateway),
            message=message,
            device=device,
            request=request,
            rc=rc,
            at=time.time(),
        )
        notify_topic = grammar.notify_topic(gateway)
        sent = SentNotify(gateway, notify_topic, body, time.time())
        with self._rec.cond:
            self._rec.notifies.append(sent)
            self._rec.cond.notify_all()
        self._rec.emit([sent])
        self._connection.publish(notify_topic, orjson.dumps(body), qos)
        return body

    def _default_notify_topic(self, device: DeviceIdentity, request: str) -> str:
        if request == "subscribe":
            return grammar.command_filter(device)
        record = self._rec.device(device)
        if record is not None and record.last_events:
            latest = max(record.last_events.values(), key=lambda e: e.received_at)
            return latest.topic
        return grammar.event_topic(device, "event")

    def dm_publish(
        self, device: DeviceIdentity, suffix: str, body: Mapping[str, Any] | bytes, qos: int
    ) -> DMMessage:
        """Record and publish a raw platform-to-gateway DM message."""
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        decoded = dict(body) if not isinstance(body, bytes) else None
        req_id = decoded.get("reqId") if decoded is not None else None
        req_id = req_id if isinstance(req_id, str) else None
        topic = grammar.dm_platform_topic(device, suffix)
        message = DMMessage("down", device, suffix, topic, payload, decoded, req_id, time.time())
        with self._rec.cond:
            self._rec.dm_messages.append(message)
            if req_id is not None:
                self._rec.issued[req_id] = message
            self._rec.cond.notify_all()
        self._connection.publish(topic, payload, qos)
        return message

    def dm_request(
        self, device: DeviceIdentity, suffix: str, d: Any, timeout: float, req_id: str | None
    ) -> dict[str, Any]:
        """Send a DM request with ``req_id`` (or a fresh one); return the gateway's answer body."""
        rec = self._rec
        req_id = req_id or str(uuid.uuid4())
        body: dict[str, Any] = {"reqId": req_id}
        if d is not None:
            body["d"] = d
        with rec.cond:
            rec.outstanding.add(req_id)  # before publishing: the answer may come at once
        try:
            request = self.dm_publish(device, suffix, body, 1)
        except BaseException:
            with rec.cond:
                rec.outstanding.discard(req_id)
            raise
        try:
            answer = rec.wait_for(
                lambda: rec.dm_responses.get(req_id),
                timeout,
                f"answer to {suffix} reqId {req_id} for {device}",
            )
        except TimeoutError:
            with rec.cond:
                rec.outstanding.discard(req_id)
                exchange = DMExchange("platform", request, None)
                rec.dm_exchanges.append(exchange)
            rec.emit([exchange])
            raise
        assert answer is not None  # wait_for returns only a truthy value
        return dict(answer.body or {})
