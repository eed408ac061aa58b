"""Benchmark: what the registrar adds per event for registered devices (the steady state).

The forwarder asks the registrar twice per message: ``is_held`` (through the outbox) and
``track``. This times both for registered devices, with 1000 configured, and prints the sum
per event next to the CPU a whole event costs the daemon (bench_core's figure, given with
``--event-us``), so the share is read in one line.

    .venv/bin/python tests/bench/bench_registrar_cost.py [--event-us 120]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.config.registration import RegistrationConfig  # noqa: E402
from edged.model import DeviceIdentity  # noqa: E402
from edged.registrar import Registrar  # noqa: E402
from edged.statefile import StateFile  # noqa: E402


async def measure(rounds: int) -> tuple[float, float, float]:
    devices = [DeviceIdentity("sim", f"d{n:04d}") for n in range(1000)]
    keys = [str(device) for device in devices]
    with tempfile.TemporaryDirectory() as tmp:
        state = StateFile(str(Path(tmp) / "registered.json"))
        state.save_now({"version": 1, "registered": keys})
        registrar = Registrar(
            DeviceIdentity("gw", "gw-1"), devices, RegistrationConfig(), state, wake=lambda: None
        )
        registrar.load()
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        is_held, track = registrar.is_held, registrar.track
        n = len(keys)
        start = time.perf_counter()
        for i in range(rounds):
            is_held(keys[i % n])
        held = (time.perf_counter() - start) / rounds
        start = time.perf_counter()
        for i in range(rounds):
            track(keys[i % n], delivery)
        tracked = (time.perf_counter() - start) / rounds
        start = time.perf_counter()
        for i in range(rounds):
            keys[i % n]  # the loop's own cost, subtracted
        empty = (time.perf_counter() - start) / rounds
        registrar.close()
    return held - empty, tracked - empty, empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2_000_000)
    parser.add_argument("--event-us", type=float, default=120.0)
    args = parser.parse_args()
    held, tracked, empty = asyncio.run(measure(args.rounds))
    per_event = (held + tracked) * 1e6
    print(f"is_held {held * 1e9:.0f} ns, track {tracked * 1e9:.0f} ns (loop {empty * 1e9:.0f} ns)")
    print(
        f"registrar per event: {per_event:.3f} us = {per_event / args.event_us:.2%} of "
        f"{args.event_us:g} us CPU per event"
    )


if __name__ == "__main__":
    main()
