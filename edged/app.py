"""The gateway daemon: builds everything from the config, runs it on one loop, shuts down in order.

Start order: adapters are built (their libraries imported only when a device needs them), the
bridge, the uplink with its subscription set, then all tasks start under one TaskGroup and the
service manager hears READY=1 — without waiting for the broker, so devices keep running and
readings queue up while it is unreachable. Shutdown (SIGTERM/SIGINT) is two-phase: adapters
stop first, queued messages are handed to the uplink and in-flight QoS 1 messages acknowledged
within a bounded time, then the MQTT session disconnects cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from edged import codec, registry, topics
from edged.adapters.base import Adapter, AdapterContext
from edged.bridge import Bridge
from edged.config import Config
from edged.model import Command, DeviceState, JSONValue
from edged.supervisor import Supervisor
from edged.systemd import Notifier
from edged.uplink import IncomingMessage, Uplink, UplinkSettings

log = logging.getLogger(__name__)

SHUTDOWN_DRAIN_SECONDS = 5.0


class Gateway:
    """One running daemon."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.context = AdapterContext(gateway=config.gateway)
        self.started = time.monotonic()
        self.adapters: list[Adapter] = []
        self._unavailable: dict[str, str] = {}
        self.notify_counts: dict[str, int] = {}  # notify messages per "type/id"
        self._notified: set[tuple[str, str]] = set()
        self._build_adapters()
        self.bridge = Bridge(
            config.gateway,
            self.adapters,
            qos=config.platform.qos,
            queue_size=config.queue.max_messages,
            command_timeout=config.commands.timeout,
            result_event=config.commands.result_event,
        )
        for device in config.devices:
            if device.adapter in self._unavailable:
                self.bridge.set_state(
                    device.identity, DeviceState.DOWN, self._unavailable[device.adapter]
                )
        self.bridge.gateway_commands.update(self._gateway_commands())
        self.supervisor = Supervisor(self.adapters, self.bridge)
        client_id = topics.gateway_client_id(config.platform.org, config.gateway)
        self.uplink = Uplink(
            UplinkSettings.from_config(config.platform, config.token, client_id), self._on_message
        )
        self.uplink.set_subscriptions(self._subscriptions())
        self._stop = asyncio.Event()

    def _build_adapters(self) -> None:
        settings = self.config.adapter_settings
        for name in self.config.adapters_in_use:
            specs = [device.spec() for device in self.config.devices if device.adapter == name]
            try:
                factory = registry.adapter_factory(name)
                self.adapters.extend(factory(specs, settings.get(name), self.context))
            except Exception as exc:  # noqa: BLE001 - one broken adapter must not stop the others
                reason = f"adapter {name} unavailable: {exc}"
                log.error("%s; its %d device(s) are marked down", reason, len(specs))
                self._unavailable[name] = reason

    def _subscriptions(self) -> list[tuple[str, int]]:
        gateway = self.config.gateway
        filters = [(topics.command_filter(gateway), 1), (topics.notify_topic(gateway), 1)]
        filters.extend(
            (topics.command_filter(device.identity), 1) for device in self.config.devices
        )
        return filters

    def _gateway_commands(self) -> dict[str, Callable[[Command], Mapping[str, JSONValue] | None]]:
        return {
            "ping": lambda command: {"pong": True},
            "status": lambda command: self.status(),
        }

    # -- incoming messages ---------------------------------------------------------------------

    def _on_message(self, message: IncomingMessage) -> None:
        parsed = topics.parse(message.topic)
        if isinstance(parsed, topics.CommandTopic):
            self.bridge.handle_command_message(parsed, message.payload)
        elif isinstance(parsed, topics.NotifyTopic):
            self._on_notify(message.payload)
        else:
            log.debug("ignored a message on %s", message.topic)

    def _on_notify(self, payload: bytes) -> None:
        self.bridge.counters["notify"] += 1
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("platform notify message is not JSON (%d bytes)", len(payload))
            return
        if not isinstance(body, dict):
            log.warning("platform notify message is not a JSON object")
            return
        where = f"{body.get('Type', '?')}/{body.get('Id', '?')}"
        problem = (where, str(body.get("Message")))
        self.notify_counts[where] = self.notify_counts.get(where, 0) + 1
        # The platform may send one notify per dropped message: log each problem once.
        level = logging.DEBUG if problem in self._notified else logging.WARNING
        self._notified.add(problem)
        log.log(
            level,
            "platform refused a %s for %s: %s (RC %s, topic %s); repeats are counted in status",
            body.get("Request", "request"),
            where,
            body.get("Message", "no message"),
            body.get("RC", "?"),
            body.get("Topic", "?"),
        )

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The gateway's health, as published in its status event."""
        stats = self.uplink.stats
        return {
            "uptime": round(time.monotonic() - self.started, 1),
            "devices": self.bridge.device_counts(),
            "deviceStates": {
                str(device): status.state.value for device, status in self.bridge.states.items()
            },
            "queue": self.bridge.queue.qsize(),
            "uplink": {
                "connected": stats.connected,
                "reconnects": stats.reconnects,
                "inflight": stats.inflight,
                "published": stats.published,
                "acked": stats.acked,
                "oversizeRefused": stats.refused_oversize
                + self.bridge.counters["oversize_refused"],
            },
            "counters": dict(self.bridge.counters),
            "notify": dict(self.notify_counts),
            "adapters": {
                adapter.name: {
                    "failing": self.supervisor.health[adapter.name].failing,
                    "restarts": self.supervisor.health[adapter.name].restarts,
                    "lastError": self.supervisor.health[adapter.name].last_error,
                    **({"counters": counters} if (counters := adapter.counters()) else {}),
                }
                for adapter in self.adapters
            }
            | {
                name: {"failing": True, "restarts": 0, "lastError": why}
                for name, why in self._unavailable.items()
            },
        }

    async def _publish_status(self) -> None:
        body = codec.encode_event(self.status(), time.time())
        await self.bridge.publish_now(self.config.gateway, self.config.status.event, body, 1)

    async def _status_loop(self) -> None:
        while True:
            await self._publish_status()
            counts = self.bridge.device_counts()
            self.notifier.notify(
                f"STATUS={'connected' if self.uplink.connected else 'connecting'}; "
                f"{counts['online']}/{len(self.bridge.states)} devices online; "
                f"queue {self.bridge.queue.qsize()}"
            )
            await asyncio.sleep(self.config.status.interval)

    # -- lifecycle -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin an orderly shutdown (signal handlers call this)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT), then shut down in order."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            async with asyncio.TaskGroup() as group:
                uplink_task = group.create_task(self.uplink.run(), name="uplink")
                forwarder = group.create_task(self.bridge.forward(self.uplink), name="forwarder")
                adapters = group.create_task(self.supervisor.run(), name="supervisor")
                background = [
                    group.create_task(self._status_loop(), name="status"),
                    group.create_task(self.notifier.watchdog(), name="watchdog"),
                ]
                self.notifier.notify(
                    "READY=1", f"STATUS=started with {len(self.bridge.states)} devices"
                )
                log.info(
                    "edged started: gateway %s, %d devices, broker %s:%d",
                    self.config.gateway,
                    len(self.bridge.states),
                    self.config.platform.resolved_host,
                    self.config.platform.resolved_port,
                )
                await self._stop.wait()
                self.notifier.notify("STOPPING=1", "STATUS=stopping")
                log.info(
                    "stopping: adapters first, then draining %d queued messages",
                    self.bridge.queue.qsize(),
                )
                adapters.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await adapters
                await self.bridge.cancel_commands()
                await self._drain(SHUTDOWN_DRAIN_SECONDS)
                forwarder.cancel()
                for task in background:
                    task.cancel()
                await self.uplink.close(timeout=SHUTDOWN_DRAIN_SECONDS)
                uplink_task.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.notifier.close()
        log.info("edged stopped")

    async def _drain(self, seconds: float) -> None:
        """Give the forwarder up to ``seconds`` to hand every queued message to the uplink."""
        if self.uplink.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.bridge.queue.join()
        if not self.bridge.queue.empty():
            log.warning(
                "%d queued messages were not sent before shutdown (broker %s)",
                self.bridge.queue.qsize(),
                "connected" if self.uplink.connected else "unreachable",
            )
