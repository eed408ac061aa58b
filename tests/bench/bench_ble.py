"""BLE benchmark: adverts/s and CPU per advert with 200 advertising devices; memory with BLE on/off.

Three parts, baselines measured in the same run:

1. **Through BlueZ** (the D-Bus mock of the tests on a private bus): 200 devices re-advertise
   every ``--interval-ms``. First a bare bleak scanner with a callback that only counts, then the
   adapter (one shared scanner, matching, decoding, report gate) with ``report: every`` and no
   ``min_interval`` so every advert is decoded. Adverts/s and this process's CPU per advert;
   the ratio to bare bleak is what the adapter adds. The mock runs in its own process (its CPU
   is shown, to tell when it is the bottleneck).
2. **Decoding alone** (no D-Bus): the adapter's advert path fed prepared adverts with changing
   values, per source type, against a matcher-only baseline.
3. **Memory**: RSS of a process that loads a config and builds its adapters, with only
   simulated devices, with advert-only BLE devices (scanner running), and with BTHome and GATT
   devices; and whether bleak got imported.

Run: ``.venv/bin/python tests/bench/bench_ble.py [--devices 200] [--seconds 5] [--interval-ms 100]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.ble_fleet import FLEET_ADAPTER, fleet_configs, fleet_payloads  # noqa: E402
from tests.integration.ble import bluez as bluez_mock  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


# -- 1. through BlueZ -----------------------------------------------------------------------


@dataclass
class Measured:
    """One scanning run: adverts heard and CPU used in the measured span."""

    adverts: int
    cpu: float
    readings: int | None = None
    errors: int | None = None


async def _bare_bleak(seconds: float) -> Measured:
    from bleak import BleakScanner

    from edged.adapters.ble.scanner import scanner_kwargs

    count = 0

    def heard(_device: Any, _data: Any) -> None:
        nonlocal count
        count += 1

    scanner = BleakScanner(heard, **scanner_kwargs(FLEET_ADAPTER))
    await scanner.start()
    await asyncio.sleep(1.0)  # warm up: every device known to bleak
    start_count, start_cpu = count, time.process_time()
    await asyncio.sleep(seconds)
    measured = Measured(count - start_count, time.process_time() - start_cpu)
    await scanner.stop()
    return measured


class _CountingSink:
    def __init__(self) -> None:
        self.readings = 0

    async def emit(self, reading: Any) -> None:
        self.readings += 1

    def set_state(self, device: Any, state: Any, detail: str = "") -> None:
        pass


async def _adapter(devices: int, seconds: float, *, every: bool) -> Measured:
    from edged.adapters.base import AdapterContext
    from edged.adapters.ble.adapter import BleController, create_adapters
    from edged.model import DeviceIdentity

    specs, settings = fleet_configs(devices, every=every)
    [runner] = create_adapters(specs, settings, AdapterContext(DeviceIdentity("gw", "bench")))
    assert isinstance(runner, BleController)
    sink = _CountingSink()
    task = asyncio.create_task(runner.run(sink))
    await asyncio.sleep(1.0)
    scanner = runner.scanner
    start_adverts, start_readings, start_cpu = scanner.adverts, sink.readings, time.process_time()
    await asyncio.sleep(seconds)
    measured = Measured(
        adverts=scanner.adverts - start_adverts,
        cpu=time.process_time() - start_cpu,
        readings=sink.readings - start_readings,
        errors=sum(sum(t.problems.counts.values()) for t in runner.targets),
    )
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return measured


def through_bluez(devices: int, seconds: float, interval_ms: int) -> None:
    print(
        f"\n1. Through BlueZ (D-Bus mock): {devices} devices re-advertising every {interval_ms} ms"
    )
    with bluez_mock.running(parameters={"advert_interval_ms": interval_ms}) as bluez:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bluez.address
        bluez.add_adapter(FLEET_ADAPTER)
        for address, name, manufacturer, service in fleet_payloads(devices):
            path = bluez.add_device(address, name, FLEET_ADAPTER)
            bluez.advertise(path, manufacturer=manufacturer, service=service, rssi=-60)
        assert bluez.mock is not None
        rows: list[tuple[str, Measured, float]] = []
        runs: list[tuple[str, Callable[[], Coroutine[Any, Any, Measured]]]] = [
            ("bare bleak, counting callback", lambda: _bare_bleak(seconds)),
            ("edged BLE adapter, every advert", lambda: _adapter(devices, seconds, every=True)),
            (
                "edged BLE adapter, on change (default)",
                lambda: _adapter(devices, seconds, every=False),
            ),
        ]
        for label, run in runs:
            mock_cpu = _process_cpu(bluez.mock.pid)
            result = asyncio.run(run())
            mock_share = (_process_cpu(bluez.mock.pid) - mock_cpu) / (seconds + 1.5)
            rows.append((label, result, mock_share))
    print(f"   {'':38} {'adverts/s':>10} {'CPU/advert':>11} {'readings/s':>11} {'mock CPU':>9}")
    for label, result, mock_share in rows:
        readings = "" if result.readings is None else f"{result.readings / seconds:.0f}"
        print(
            f"   {label:38} {result.adverts / seconds:10.0f}"
            f" {result.cpu / max(result.adverts, 1) * 1e6:9.1f} us {readings:>11} {mock_share:8.0%}"
        )
    base = rows[0][1].cpu / max(rows[0][1].adverts, 1)
    for label, result, _share in rows[1:]:
        ratio = (result.cpu / max(result.adverts, 1)) / base
        print(
            f"   CPU per advert, {label} / bare bleak: {ratio:.2f}x; decode errors: {result.errors}"
        )
    if max(share for *_rest, share in rows) > 0.9:
        print("   (the mock is near 100 % CPU: the rates are its limit, not the adapter's)")


# -- 2. decoding alone ----------------------------------------------------------------------


def decoding_alone(devices: int, rounds: int) -> None:
    from edged.adapters.base import AdapterContext
    from edged.adapters.ble.adapter import BleController, create_adapters
    from edged.adapters.ble.advert import Advert
    from edged.model import DeviceIdentity

    print(f"\n2. Decoding alone (no D-Bus): {devices} devices, {rounds} adverts each kind")
    specs, settings = fleet_configs(devices)
    [runner] = create_adapters(specs, settings, AdapterContext(DeviceIdentity("gw", "bench")))
    assert isinstance(runner, BleController)
    runner._sink = _CountingSink()
    payloads = fleet_payloads(devices)

    def adverts(kind: str) -> list[Advert]:
        chosen = [p for p in payloads if (kind == "bthome") == bool(p[3])]
        made = []
        for i in range(rounds):
            address, name, manufacturer, service = chosen[i % len(chosen)]
            step = i // len(chosen)
            if service:  # new packet id and temperature each round, as a live sensor sends
                uuid, data = next(iter(service.items()))
                new = bytes([step % 256])  # packet id and temperature's low byte
                service = {uuid: data[:2] + new + data[3:6] + new + data[7:]}
            else:
                company, data = next(iter(manufacturer.items()))
                manufacturer = {company: data[:1] + step.to_bytes(2, "big") + data[3:]}
            made.append(Advert(address, name, -60, manufacturer, service, list(service), i * 0.001))
        return made

    match = runner._matcher.match
    on_advert: Callable[[Advert, Any], None] = runner._on_advert
    results = {}
    for kind in ("layout", "bthome"):
        batch = adverts(kind)
        start = time.process_time()
        for advert in batch:
            match(advert.address, advert.name, advert.service_uuids)
        baseline = time.process_time() - start
        start = time.process_time()
        for advert in batch:
            on_advert(advert, None)
        results[kind] = (time.process_time() - start, baseline)
    print(f"   {'':34} {'adverts/s':>10} {'CPU/advert':>11} {'match only':>11}")
    for kind, (cpu, baseline) in results.items():
        label = "BTHome (bthome-ble)" if kind == "bthome" else "manufacturer-data layout"
        print(
            f"   {label:34} {rounds / cpu:10.0f} {cpu / rounds * 1e6:9.1f} us"
            f" {baseline / rounds * 1e6:9.2f} us"
        )
    layout_cpu, bthome_cpu = results["layout"][0], results["bthome"][0]
    print(f"   BTHome / layout CPU per advert: {bthome_cpu / layout_cpu:.1f}x")


# -- 3. memory ------------------------------------------------------------------------------

_MEMORY_PROBE = textwrap.dedent(
    """
    import asyncio, os, sys, time
    sys.path.insert(0, {repo!r})
    from edged.config import load_config_text
    from edged import registry
    from edged.adapters.base import AdapterContext
    from edged.model import DeviceIdentity

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    config = load_config_text(sys.stdin.read(), "bench.yaml")
    context = AdapterContext(DeviceIdentity("gw", "bench"))
    runners = []
    for name in config.adapters_in_use:
        specs = [d.spec() for d in config.devices if d.adapter == name]
        runners += registry.adapter_factory(name)(specs, config.adapter_settings[name], context)

    class Sink:
        async def emit(self, reading): pass
        def set_state(self, *args): pass

    async def run_briefly():
        tasks = [asyncio.create_task(r.run(Sink())) for r in runners]
        await asyncio.sleep(1.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run_briefly())
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"bleak", "bthome_ble", "bleak_retry_connector", "dbus_fast"}})
    print(f"{{rss_mb():.1f}} {{','.join(loaded) or '-'}}")
    """
)


def memory(address: str) -> None:
    from tests.bench.ble_fleet import memory_configs

    print("\n3. Memory: RSS after loading the config, building the adapters and running them 1.5 s")
    probe = _MEMORY_PROBE.format(repo=str(REPO))
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address, "EDGED_TOKEN": "bench"}
    results = []
    for label, text in memory_configs():
        done = subprocess.run(
            [sys.executable, "-c", probe],
            input=text,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        rss_text, loaded = done.stdout.split()
        results.append((label, float(rss_text), loaded))
    base = results[0][1]
    print(f"   {'':46} {'RSS':>8} {'vs none':>8}  libraries loaded")
    for label, rss, loaded in results:
        print(f"   {label:46} {rss:6.1f} MB {rss - base:+6.1f} MB  {loaded}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--decode-rounds", type=int, default=50_000)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, bleak {_version('bleak')}, dbus-fast {_version('dbus-fast')},"
        f" bthome-ble {_version('bthome-ble')}, bleak-retry-connector {_version('bleak-retry-connector')},"
        f" {os.cpu_count()} CPUs"
    )
    through_bluez(args.devices, args.seconds, args.interval_ms)
    decoding_alone(args.devices, args.decode_rounds)
    with bluez_mock.running() as bluez:
        bluez.add_adapter(FLEET_ADAPTER)
        for address, name, manufacturer, service in fleet_payloads(10):
            path = bluez.add_device(address, name, FLEET_ADAPTER)
            bluez.advertise(path, manufacturer=manufacturer, service=service)
        memory(bluez.address)


if __name__ == "__main__":
    main()
