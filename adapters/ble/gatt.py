"""A GATT connection to one device: connect with backoff, poll, notify, write; reconnect forever.

Connections are made with bleak-retry-connector (Debian: python3-bleak-retry-connector), which
classifies BlueZ's many transient connect errors, to the ``BLEDevice`` the shared scanner last
heard; no second scan runs. The link holds one of its controller's connection slots while
connected. bleak-retry-connector is imported only when a GATT device is configured.

Reconnects follow :class:`~edged.linkretry.LinkRetry`: the delay doubles from
``reconnect.initial`` to ``reconnect.max`` and starts again from the first only after a
connection stayed up for :data:`STABLE_AFTER` seconds, so a peripheral that drops every
connection at once is retried ever more slowly; each failure episode is logged once, its end
once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from edged.adapters.ble.config import CharacteristicConfig, GattCommandConfig, GattConfig
from edged.adapters.ble.errors import describe
from edged.adapters.ble.layout import Layout, LayoutError, encode
from edged.adapters.ble.tracked import Tracked
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported
from edged.linkretry import LinkRetry
from edged.logsetup import device_extra
from edged.model import Command, DeviceState, JSONValue

log = logging.getLogger("edged.adapters.ble")

CONNECT_ATTEMPTS = 2
"""Attempts bleak-retry-connector makes per connect; our own backoff spaces the rounds."""
DISCONNECT_TIMEOUT = 5.0
STABLE_AFTER = 30.0
"""Seconds a connection must stay up before the reconnect delay starts again from the first."""


class LinkOwner(Protocol):
    """What a link needs from its controller."""

    slots: asyncio.Semaphore

    def connect_result(self, ok: bool) -> None:
        """Count a connection attempt toward the wedge detector."""

    def publish(self, target: Tracked, values: Mapping[str, JSONValue], now: float) -> None:
        """Merge freshly read values into the device and offer them for a reading."""

    def set_state(self, target: Tracked, state: DeviceState, detail: str = "") -> None:
        """Report the device's link state."""


class _DeviceAwayError(Exception):
    """The device is not (or no longer) known to BlueZ: wait for its next advert."""


class _Characteristic:
    def __init__(self, config: CharacteristicConfig) -> None:
        self.config = config
        self.layout = Layout(config.fields)
        self.kind = f"characteristic {config.uuid}"


class GattLink:
    """The connection lifecycle of one GATT device; :meth:`run` until cancelled."""

    def __init__(self, target: Tracked, config: GattConfig, owner: LinkOwner) -> None:
        self.target = target
        self.config = config
        self.owner = owner
        self.client: Any = None
        self._chars = [_Characteristic(c) for c in config.characteristics]
        self._heard = asyncio.Event()
        self._lost = asyncio.Event()
        self.connects = 0
        self.retry = LinkRetry(
            log,
            str(target.identity),
            initial=config.reconnect.initial,
            maximum=config.reconnect.max,
            stable_after=STABLE_AFTER,
            extra=device_extra(target.identity),
        )

    @property
    def connected(self) -> bool:
        """Whether a connection is up."""
        return self.client is not None and bool(self.client.is_connected)

    def heard(self) -> None:
        """The scanner heard the device (the controller updated ``target.ble_device``)."""
        self._heard.set()

    async def run(self) -> None:
        """Connect, serve, and reconnect with backoff after every failure or disconnect."""
        try:
            while True:
                if not self._heard.is_set():
                    self.owner.set_state(self.target, DeviceState.OFFLINE, "not advertising")
                    await self._heard.wait()
                delay = await self._session()
                if delay is not None:
                    await asyncio.sleep(delay)
        finally:
            self.retry.close()

    async def _session(self) -> float | None:
        """One connection attempt and, when it succeeds, the connection's life.

        Returns the delay before the next attempt, or ``None`` to wait for the next advert.
        """
        if self.owner.slots.locked():
            self.owner.set_state(
                self.target, DeviceState.OFFLINE, "waiting for a free connection slot"
            )
        async with self.owner.slots:
            try:
                client = await self._connect()
            except _DeviceAwayError as exc:
                self._heard.clear()
                self.retry.attempt_failed(f"device not found ({exc}); waiting for its next advert")
                return None
            except Exception as exc:  # noqa: BLE001 - every connect failure is retried
                self.owner.connect_result(False)
                reason = f"connect failed: {describe(exc)}"
                self.owner.set_state(self.target, DeviceState.OFFLINE, reason)
                return self.retry.attempt_failed(reason)
            self.owner.connect_result(True)
            self.retry.connected()
            self.connects += 1
            reason = "disconnected"
            try:
                await self._serve(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure ends this connection
                if not self._lost.is_set():
                    reason = f"connection failed: {describe(exc)}"
            finally:
                await self._close(client)
        self.owner.set_state(self.target, DeviceState.OFFLINE, "disconnected; reconnecting")
        return self.retry.lost(reason)

    async def _connect(self) -> Any:
        from bleak import BleakClient
        from bleak_retry_connector import BleakNotFoundError, establish_connection

        device = self.target.ble_device
        self._lost.clear()

        def lost(_client: Any) -> None:
            self._lost.set()

        try:
            async with asyncio.timeout(self.config.connect_timeout):
                client = await establish_connection(
                    BleakClient,
                    device,
                    str(self.target.identity),
                    disconnected_callback=lost,
                    max_attempts=CONNECT_ATTEMPTS,
                    use_services_cache=False,
                )
        except BleakNotFoundError as exc:
            raise _DeviceAwayError(str(exc)) from exc
        self.client = client
        return client

    async def _close(self, client: Any) -> None:
        self.client = None
        # Also after the peripheral dropped the link: newer bleak closes a client's own D-Bus
        # connection only in disconnect() (which then sends nothing to the device), so
        # skipping it would leak one socket per dropped connection.
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT):
                await client.disconnect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the link is being dropped anyway
            log.debug("%s: disconnect failed: %s", self.target.identity, describe(exc))

    async def _serve(self, client: Any) -> None:
        """Subscribe, then poll every ``poll`` until the link drops.

        bleak drops its service table when the link goes down, so any call here may raise once
        the link is lost; the caller ends the connection then.
        """
        readable: list[tuple[_Characteristic, Any]] = []
        for char in self._chars:
            handle = client.services.get_characteristic(char.config.uuid)
            if handle is None:
                self.target.problems.fail(char.kind, "not found on the device", logging.ERROR)
                continue
            if char.config.notify:
                await self._subscribe(client, char, handle)
            if char.config.read:
                readable.append((char, handle))
        self.owner.set_state(self.target, DeviceState.ONLINE, "connected")
        while not self._lost.is_set():
            if readable:
                await self._poll(client, readable)
            try:
                async with asyncio.timeout(self.config.poll):
                    await self._lost.wait()
            except TimeoutError:
                continue

    async def _subscribe(self, client: Any, char: _Characteristic, handle: Any) -> None:
        def notified(_sender: Any, data: bytearray) -> None:
            self._accept(char, bytes(data))

        try:
            async with asyncio.timeout(self.config.io_timeout):
                await client.start_notify(handle, notified)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported; reads may still work
            self.target.problems.fail(char.kind, f"subscribing failed: {describe(exc)}")

    async def _poll(self, client: Any, readable: list[tuple[_Characteristic, Any]]) -> None:
        values: dict[str, JSONValue] = {}
        for char, handle in readable:
            try:
                async with asyncio.timeout(self.config.io_timeout):
                    data = bytes(await client.read_gatt_char(handle))
                char.layout.decode(data, values)
            except asyncio.CancelledError:
                raise
            except LayoutError as exc:
                self.target.problems.fail(char.kind, f"value does not fit the layout: {exc}")
            except Exception as exc:  # noqa: BLE001 - vanished characteristic, timeout, link loss
                if self._lost.is_set():
                    return
                self.target.problems.fail(char.kind, f"read failed: {describe(exc)}")
            else:
                self.target.problems.ok(char.kind)
        if values:
            self.owner.publish(self.target, values, time.monotonic())

    def _accept(self, char: _Characteristic, data: bytes) -> None:
        values: dict[str, JSONValue] = {}
        try:
            char.layout.decode(data, values)
        except LayoutError as exc:
            self.target.problems.fail(char.kind, f"notification does not fit the layout: {exc}")
            return
        self.target.problems.ok(char.kind)
        self.owner.publish(self.target, values, time.monotonic())

    async def write(self, command: Command) -> dict[str, JSONValue]:
        """Carry out a configured write command; see :class:`GattCommandConfig`."""
        spec = self.config.commands.get(command.name)
        if spec is None:
            known = ", ".join(sorted(self.config.commands)) or "none"
            raise CommandUnsupported(f"unknown command {command.name!r}; known: {known}")
        data = spec.payload if spec.payload is not None else _encode_value(command, spec)
        client = self.client
        if client is None or not client.is_connected:
            raise CommandFailed(f"{self.target.identity} is not connected")
        handle = client.services.get_characteristic(spec.uuid)
        if handle is None:
            raise CommandFailed(f"characteristic {spec.uuid} is not on the device")
        try:
            async with asyncio.timeout(self.config.io_timeout):
                await client.write_gatt_char(handle, data, response=spec.response)
        except TimeoutError:
            raise CommandFailed(
                f"no answer to the write within {self.config.io_timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise CommandFailed(f"the device rejected the write: {describe(exc)}") from exc
        return {"written": data.hex(), "response": spec.response}


def _encode_value(command: Command, spec: GattCommandConfig) -> bytes:
    data = command.data
    value = data.get("value") if isinstance(data, dict) else data
    if value is None:
        raise CommandRejected('this command needs a value, e.g. {"value": 21.5}')
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.min is not None and value < spec.min:
            raise CommandRejected(f"{value} is below the minimum {spec.min:g}")
        if spec.max is not None and value > spec.max:
            raise CommandRejected(f"{value} is above the maximum {spec.max:g}")
    try:
        return encode(value, spec)
    except LayoutError as exc:
        raise CommandRejected(str(exc)) from None
