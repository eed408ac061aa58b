"""Power-cycling a Bluetooth controller through BlueZ's D-Bus API (``Adapter1.Powered``).

Uses dbus-fast, which bleak already depends on, on its own short-lived system-bus connection so
bleak's shared connection is left alone. Needs the right to set adapter properties: on Debian the
service user must be in the ``bluetooth`` group.
"""

from __future__ import annotations

import asyncio

from edged.dbusutil import close_bus

ADAPTER_IFACE = "org.bluez.Adapter1"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"


class PowerCycleError(RuntimeError):
    """BlueZ refused or failed to power the controller off or on."""


async def power_cycle(controller: str, *, off_time: float = 0.5, within: float = 10.0) -> None:
    """Power ``controller`` off, wait ``off_time``, power it on, and confirm it is powered."""
    from dbus_fast import BusType, Message, MessageType, Variant
    from dbus_fast.aio import MessageBus

    path = f"/org/bluez/{controller}"

    async def call(member: str, signature: str, body: list[object]) -> list[object]:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=path,
                interface=PROPERTIES_IFACE,
                member=member,
                signature=signature,
                body=body,
            )
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            detail = reply.error_name if reply is not None else "no reply"
            raise PowerCycleError(
                f"{member} Powered on {controller} failed: {detail} {reply and reply.body}"
            )
        return list(reply.body)

    async with asyncio.timeout(within):
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            await call("Set", "ssv", [ADAPTER_IFACE, "Powered", Variant("b", False)])
            await asyncio.sleep(off_time)
            await call("Set", "ssv", [ADAPTER_IFACE, "Powered", Variant("b", True)])
            powered = await call("Get", "ss", [ADAPTER_IFACE, "Powered"])
            if not powered or not getattr(powered[0], "value", False):
                raise PowerCycleError(f"{controller} did not power on again")
        finally:
            await close_bus(bus)
