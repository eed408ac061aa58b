"""One BlueZ discovery session per controller, shared by every BLE device on it (bleak).

BlueZ runs one discovery per controller; two scanners would fight over its filter. The scanner
turns bleak's callbacks into :class:`~edged.adapters.ble.advert.Advert` values for one consumer
and remembers when anything was last heard (the wedge detector's input).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from edged.adapters.ble.advert import Advert
from edged.adapters.ble.errors import describe

log = logging.getLogger(__name__)

AdvertHandler = Callable[[Advert, Any], None]
"""Called with each advert and bleak's ``BLEDevice`` (needed to connect to it)."""

STOP_TIMEOUT = 5.0


def scanner_kwargs(controller: str) -> dict[str, Any]:
    """How this bleak version wants the controller named.

    bleak 3 takes ``bluez={"adapter": ...}`` and deprecates the ``adapter=`` keyword, which older
    versions (0.22, Debian 13) need and which they read from ``**kwargs``.
    """
    try:
        from bleak.args.bluez import BlueZScannerArgs
    except ImportError:
        return {"adapter": controller}
    if "adapter" in BlueZScannerArgs.__annotations__:
        return {"bluez": {"adapter": controller}}
    return {"adapter": controller}


class Scanner:
    """Start, stop and restart discovery on ``controller``; adverts go to ``on_advert``."""

    def __init__(self, controller: str, on_advert: AdvertHandler) -> None:
        self.controller = controller
        self._on_advert = on_advert
        self._bleak: Any = None
        self.running = False
        self.last_advert = time.monotonic()
        """Monotonic time of the last advert from any device, known or not."""
        self.adverts = 0
        self.callback_errors = 0

    async def start(self) -> None:
        """Start discovery; raises bleak's error when BlueZ refuses."""
        from bleak import BleakScanner

        if self._bleak is None:
            self._bleak = BleakScanner(self._detected, **scanner_kwargs(self.controller))
        await self._bleak.start()
        self.running = True

    async def stop(self) -> None:
        """Stop discovery; never raises (the controller may already be gone or powered off)."""
        if self._bleak is None or not self.running:
            return
        self.running = False
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self._bleak.stop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - stopping a dead discovery fails in many ways
            log.debug("stopping discovery on %s: %s", self.controller, describe(exc))

    async def restart(self) -> None:
        """Stop and start again (a fresh discovery session often cures a stuck one)."""
        await self.stop()
        self._bleak = None  # a new BleakScanner: bleak keeps per-scanner state in BlueZ
        await self.start()

    def _detected(self, device: Any, data: Any) -> None:
        now = time.monotonic()
        self.last_advert = now
        self.adverts += 1
        advert = Advert(
            address=device.address.upper(),
            name=data.local_name,
            rssi=data.rssi,
            manufacturer_data=data.manufacturer_data,
            service_data=data.service_data,
            service_uuids=data.service_uuids,
            time=now,
        )
        try:
            self._on_advert(advert, device)
        except Exception:
            self.callback_errors += 1
            if self.callback_errors == 1:
                log.exception(
                    "BLE advert handler failed on %s (further failures at DEBUG)", self.controller
                )
            else:
                log.debug("BLE advert handler failed again", exc_info=True)
