"""``edged ble scan``: list advertising devices with RSSI and decoded data, without a config file.

Uses the adapter's own scanner (one discovery on the chosen controller) and decodes BTHome
adverts with the same parser as the daemon; other data is shown as hex per company id or
service UUID, ready to be described in a ``manufacturer_data``/``service_data`` layout.
bleak is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from edged.config.types import parse_duration

EX_UNAVAILABLE = 69
_SIG_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def _seconds(value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be greater than zero")
    return seconds


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ble scan`` to the ``edged`` command line."""
    ble = subparsers.add_parser("ble", help="Bluetooth LE field tools")
    commands = ble.add_subparsers(dest="ble_command", metavar="COMMAND", required=True)
    scan = commands.add_parser(
        "scan",
        help="list advertising BLE devices with RSSI and decoded data (no config needed)",
        description="Scan for SECONDS on one Bluetooth controller and list every device heard: "
        "address, name, strongest RSSI, number of adverts and the advertised data (BTHome "
        "decoded, anything else as hex). Needs bluetoothd and access to it on the system bus.",
    )
    scan.add_argument("--seconds", type=_seconds, default=10.0, help="how long to scan (10)")
    scan.add_argument("--adapter", default="hci0", help="Bluetooth controller (hci0)")
    scan.add_argument("--json", action="store_true", help="print one JSON object per device")
    scan.set_defaults(func=_run_scan)


def _run_scan(args: argparse.Namespace) -> int:
    return asyncio.run(scan(args.adapter, args.seconds, as_json=args.json))


def short_uuid(uuid: str) -> str:
    """``0000fcd2-0000-1000-8000-00805f9b34fb`` -> ``fcd2``; other UUIDs unchanged."""
    if uuid.endswith(_SIG_SUFFIX) and uuid.startswith("0000"):
        return uuid[4:8]
    return uuid


@dataclass
class Sighting:
    """What was heard from one address during the scan."""

    address: str
    name: str | None = None
    rssi: int | None = None
    adverts: int = 0
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    service_uuids: list[str] = field(default_factory=list)
    bthome: dict[str, Any] = field(default_factory=dict)
    bthome_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The sighting as JSON-ready data."""
        return {
            "address": self.address,
            "name": self.name,
            "rssi": self.rssi,
            "adverts": self.adverts,
            "manufacturer_data": {f"0x{k:04x}": v.hex() for k, v in self.manufacturer_data.items()},
            "service_data": {short_uuid(k): v.hex() for k, v in self.service_data.items()},
            "service_uuids": [short_uuid(u) for u in self.service_uuids],
            "bthome": self.bthome or None,
            "bthome_error": self.bthome_error,
        }

    def data_text(self) -> str:
        """The advertised data in one line."""
        parts = []
        if self.bthome:
            parts.append("bthome " + " ".join(f"{k}={v}" for k, v in self.bthome.items()))
        elif self.bthome_error:
            parts.append(f"bthome ({self.bthome_error})")
        parts += [f"mfr 0x{k:04x}={v.hex()}" for k, v in self.manufacturer_data.items()]
        parts += [
            f"svc {short_uuid(k)}={v.hex()}"
            for k, v in self.service_data.items()
            if not (self.bthome and short_uuid(k) in ("fcd2", "181c", "181e"))
        ]
        if not self.manufacturer_data and not self.service_data and self.service_uuids:
            parts.append("uuids " + ",".join(short_uuid(u) for u in self.service_uuids))
        return "; ".join(parts)


class _Collector:
    """Keeps the latest data of every address; decodes BTHome when the library is there."""

    def __init__(self) -> None:
        self.seen: dict[str, Sighting] = {}
        self._decoders: dict[str, Any] = {}
        try:
            from edged.adapters.ble.bthome import BTHomeDecoder
        except ImportError:  # bthome-ble is optional for the field tool
            self._bthome: Any = None
        else:
            self._bthome = BTHomeDecoder

    def heard(self, advert: Any, _device: Any) -> None:
        sighting = self.seen.setdefault(advert.address, Sighting(advert.address))
        sighting.adverts += 1
        sighting.name = advert.name or sighting.name
        if advert.rssi is not None and (sighting.rssi is None or advert.rssi > sighting.rssi):
            sighting.rssi = advert.rssi
        sighting.manufacturer_data.update(advert.manufacturer_data)
        sighting.service_data.update(advert.service_data)
        sighting.service_uuids = sorted(set(sighting.service_uuids) | set(advert.service_uuids))
        if self._bthome is not None and self._bthome.carries_bthome(advert.service_data):
            self._decode_bthome(sighting, advert)

    def _decode_bthome(self, sighting: Sighting, advert: Any) -> None:
        from edged.adapters.ble.bthome import BTHomeError

        decoder = self._decoders.get(advert.address)
        if decoder is None:
            decoder = self._decoders[advert.address] = self._bthome()
        values: dict[str, Any] = {}
        try:
            decoder.decode(advert, values)
        except BTHomeError as exc:
            sighting.bthome_error = str(exc)
        else:
            sighting.bthome.update(values)
            sighting.bthome_error = None


async def scan(
    controller: str, seconds: float, *, as_json: bool = False, out: TextIO | None = None
) -> int:
    """Scan ``controller`` for ``seconds`` and print what was heard; returns the exit code."""
    from edged.adapters.ble.errors import BleUnavailableError, classify
    from edged.adapters.ble.scanner import Scanner

    out = out or sys.stdout
    collector = _Collector()
    scanner = Scanner(controller, collector.heard)
    try:
        await scanner.start()
    except Exception as exc:  # noqa: BLE001 - classified for the operator
        error = classify(exc, controller)
        print(f"edged ble scan: {error}", file=sys.stderr)
        return EX_UNAVAILABLE if isinstance(error, BleUnavailableError) else 1
    try:
        await asyncio.sleep(seconds)
    finally:
        await scanner.stop()
    sightings = sorted(collector.seen.values(), key=lambda s: (-(s.rssi or -999), s.address))
    if as_json:
        for sighting in sightings:
            out.write(orjson.dumps(sighting.as_dict()).decode() + "\n")
        return 0
    out.write(f"{'ADDRESS':<17}  {'RSSI':>4}  {'NAME':<20}  {'ADVERTS':>7}  DATA\n")
    for s in sightings:
        rssi = "" if s.rssi is None else str(s.rssi)
        name = (s.name or "")[:20]
        out.write(f"{s.address:<17}  {rssi:>4}  {name:<20}  {s.adverts:>7}  {s.data_text()}\n")
    out.write(f"{len(sightings)} device(s) heard in {seconds:g} s on {controller}\n")
    return 0
