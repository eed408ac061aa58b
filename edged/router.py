"""What the gateway subscribes to, and where each incoming message goes.

Subscriptions name no attached device (so subscribing never registers a device with the
platform behind the registrar's back, and their number does not grow with the device count):

* the gateway's own commands, ``iot-2/type/<gwType>/id/<gwId>/cmd/+/fmt/+``;
* one ``iot-2/type/<T>/id/+/cmd/+/fmt/+`` per device type in the config;
* the gateway's ``notify`` topic;
* with device management on, the agent's filters (``iotdm-1/type/+/id/+/#``).

Routing: commands for the gateway or a configured device go to the bridge; commands for any
other device (the per-type filter can match devices this gateway does not serve) are counted
and dropped without a result, since publishing for a device would register it; notify
messages go to the registrar, ``iotdm-1`` messages to the device-management agent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from edged import topics
from edged.model import DeviceIdentity
from edged.problems import ProblemLog
from edged.text import safe
from edged.uplink import IncomingMessage

log = logging.getLogger(__name__)

CommandHandler = Callable[[topics.CommandTopic | topics.MalformedCommandTopic, bytes], None]
DMHandler = Callable[[topics.DMTopic, bytes], None]


class Router:
    """Builds the subscription set and routes each incoming message to its owner."""

    def __init__(
        self,
        gateway: DeviceIdentity,
        devices: Iterable[DeviceIdentity],
        *,
        commands: CommandHandler,
        refuse_unnamed: Callable[[str], None],
        notify: Callable[[bytes], None],
        dm: DMHandler | None = None,
        dm_filters: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.gateway = gateway
        self.devices = frozenset(devices)
        self._commands = commands
        self._refuse_unnamed = refuse_unnamed
        self._notify = notify
        self._dm = dm
        self._dm_filters = list(dm_filters)
        self.counters: Counter[str] = Counter()
        self._problems = ProblemLog(log, "router", quiet=300.0)

    def set_devices(self, devices: Iterable[DeviceIdentity]) -> None:
        """Replace the configured devices (a reload); apply :meth:`subscriptions` afterwards."""
        self.devices = frozenset(devices)

    def subscriptions(self) -> list[tuple[str, int]]:
        """The full subscription set, as ``(filter, qos)`` pairs."""
        types = sorted({device.type_id for device in self.devices})
        filters = [(topics.command_filter_for_type(type_id), 1) for type_id in types]
        if self.gateway.type_id not in types:
            filters.insert(0, (topics.command_filter(self.gateway), 1))
        filters.append((topics.notify_topic(self.gateway), 1))
        filters.extend(self._dm_filters)
        return filters

    def route(self, message: IncomingMessage) -> None:
        """Hand ``message`` to its owner (called on the loop for every message received)."""
        parsed = topics.parse(message.topic)
        if isinstance(parsed, topics.CommandTopic | topics.MalformedCommandTopic):
            if parsed.device == self.gateway or parsed.device in self.devices:
                self._commands(parsed, message.payload)
            else:
                self.counters["commands_for_other_devices"] += 1
                self._problems.fail(
                    "foreign",
                    f"ignored a command for {parsed.device}, which is not attached to this "
                    "gateway (further ones counted as commands_for_other_devices)",
                    logging.WARNING,
                )
        elif isinstance(parsed, topics.NotifyTopic):
            self._notify(message.payload)
        elif isinstance(parsed, topics.DMTopic) and parsed.to_device and self._dm is not None:
            self._dm(parsed, message.payload)
        elif parsed is None and "/cmd/" in message.topic:
            self._refuse_unnamed(message.topic)
        else:
            self.counters["ignored"] += 1
            log.debug("ignored a message on %s", safe(message.topic))
