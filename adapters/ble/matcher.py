"""Which configured device an advert belongs to: by address, else name, else service UUID. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from edged.adapters.ble.config import DeviceConfig

T = TypeVar("T")


class Matcher(Generic[T]):
    """Dictionary lookups from advert identity to a target; unknown adverts give ``None``.

    An address that matched once by name or UUID keeps that target (a sensor's scan response
    may omit its name), so the per-advert cost is one dictionary lookup.
    """

    def __init__(self, targets: Iterable[tuple[DeviceConfig, T]]) -> None:
        self._by_address: dict[str, T] = {}
        self._by_name: dict[str, T] = {}
        self._by_uuid: dict[str, T] = {}
        for config, target in targets:
            kind, value = config.match_key
            table = {"address": self._by_address, "name": self._by_name}.get(kind, self._by_uuid)
            table.setdefault(value, target)
        self._learned: dict[str, T] = {}

    def match(self, address: str, name: str | None, service_uuids: Iterable[str]) -> T | None:
        """The target for an advert from ``address``, if it is a configured device."""
        target = self._by_address.get(address)
        if target is not None:
            return target
        target = self._learned.get(address)
        if target is not None:
            return target
        if name is not None:
            target = self._by_name.get(name)
        if target is None and self._by_uuid:
            for uuid in service_uuids:
                target = self._by_uuid.get(uuid)
                if target is not None:
                    break
        if target is not None:
            self._learned[address] = target
        return target
