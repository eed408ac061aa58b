"""The end-to-end smoke suite, run inside a chroot against the installed .deb.

Mosquitto from Debian (through :mod:`edged.devbroker`: TLS on loopback, token auth, ACL), the
platform emulator from the package, pymodbus's own server (:mod:`arm.modbus_server`) and
``edged run`` as a process with simulated devices and a Modbus meter. Each check prints one
line; the first that fails prints what was seen, the daemon's last output, and exits 1.

    cd <dir holding arm/> && python3 -m arm.smoke [--edged "edged"] [--timeout 120]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from edged.control import request
from edged.devbroker import APP_USER, Broker, LocalCA
from edged.emulator import PlatformEmulator
from edged.emulator.records import ReceivedEvent
from edged.model import DeviceIdentity
from edged.netutil import free_port

from .common import GATEWAY, ORG, CheckFailed, Daemon, edged_command, say, simulated, write_config

GW = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])
SENSOR = DeviceIdentity("sim-sensor", "sensor-1")
OUTAGE = DeviceIdentity("sim-sensor", "outage-1")
METER = DeviceIdentity("energy-meter", "meter-1")
OUTAGE_INTERVAL = 0.25
"""Seconds between outage-1's readings: half of all the readings made during the outage."""
OUTAGE_QUEUED = 20
"""Messages the outbox must hold, the broker down, before the daemon is killed."""
OUTAGE_READINGS = 5
"""outage-1 readings of those that must reach the platform after the restart (about 10 are
among the 20; the last commit interval before the kill may be lost, by design)."""


def devices(modbus_port: int, run: int) -> list[dict[str, Any]]:
    """The daemon's devices; ``run`` tells one process's outage-1 readings from the next's."""
    return [
        simulated("sensor-1", 0.5, temperature={"kind": "sine", "min": 18, "max": 24}),
        # seq counts from 0 in each process: run and seq name every reading.
        simulated(
            "outage-1",
            OUTAGE_INTERVAL,
            seq={"kind": "counter", "min": 0, "max": 1_000_000_000},
            script=[{"run": run}],
        ),
        {
            "id": METER.device_id,
            "type": METER.type_id,
            "adapter": "modbus",
            "modbus": {
                "url": f"tcp://127.0.0.1:{modbus_port}",
                "unit": 1,
                "interval": 0.5,
                "timeout": "2s",
                "points": {
                    "voltage": {"address": 0, "type": "uint16", "scale": 0.1, "unit": "V"},
                    "setpoint": {"address": 10, "type": "int16", "scale": 0.1},
                },
                "commands": {
                    "setpoint": {"address": 10, "type": "int16", "scale": 0.1, "min": 5, "max": 80}
                },
            },
        },
    ]


MANAGED = {
    "managed": {
        "location": {"latitude": 52.52, "longitude": 13.405, "elevation": 34},
        "custom": {
            "smoke": {"hello": {"run": ["/bin/echo", "hello"], "parameters": [{"name": "who"}]}}
        },
    }
}


@contextmanager
def modbus_server(port: int) -> Iterator[subprocess.Popen[str]]:
    """pymodbus's server in a process of its own (the daemon must not share its CPU time)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "arm.modbus_server", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("ready"):
            raise CheckFailed(f"the pymodbus server did not start (it printed {line!r})")
        yield process
    finally:
        process.terminate()
        process.wait(30)


def check(what: str, action: Callable[[], str | None]) -> None:
    """Run one check: ``ok: what (detail)``, or :class:`CheckFailed` naming it."""
    started = time.monotonic()
    try:
        detail = action()
    except (TimeoutError, AssertionError) as exc:
        raise CheckFailed(f"{what}: {exc}") from None
    except CheckFailed as exc:
        raise CheckFailed(f"{what}: {exc}") from None
    took = time.monotonic() - started
    say(f"  ok: {what}{f' ({detail})' if detail else ''} [{took:.1f} s]")


def command_result(
    emulator: PlatformEmulator, device: DeviceIdentity, req_id: str, timeout: float
) -> Any:
    """The data of ``device``'s cmdResult for ``req_id``; raises unless its status is ok."""
    [result] = emulator.wait_for_events(
        device=device,
        event="cmdResult",
        predicate=lambda e: isinstance(e.data, dict) and e.data.get("reqId") == req_id,
        timeout=timeout,
    )
    if result.data.get("status") != "ok":
        raise CheckFailed(f"cmdResult {result.data}")
    return result.data


def seqs(emulator: PlatformEmulator, run: int) -> set[int]:
    """outage-1's ``seq`` values of process ``run`` the platform has received."""
    found: set[int] = set()
    for event in emulator.events:
        values = event.values
        if event.device == OUTAGE and isinstance(values, dict) and values.get("run") == run:
            found.add(int(values["seq"]))
    return found


class Smoke:
    """The suite's state: the broker, the emulator, the daemon of the moment."""

    def __init__(self, work: Path, edged: list[str], timeout: float, modbus_port: int) -> None:
        self.work = work
        self.edged = edged
        self.timeout = timeout
        self.modbus_port = modbus_port
        self.broker = Broker(work / "broker", LocalCA.create(work / "ca"))
        self.emulator: PlatformEmulator | None = None
        self.daemon: Daemon | None = None
        self.config = work / "edged" / "edged.yaml"

    @property
    def emu(self) -> PlatformEmulator:
        assert self.emulator is not None
        return self.emulator

    @property
    def running(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon

    def start_daemon(self, run: int) -> None:
        self.config = write_config(
            self.work / "edged", self.broker, devices(self.modbus_port, run), MANAGED
        )
        self.daemon = Daemon(self.edged, self.config)

    def status(self) -> Any:
        """The running daemon's status report (``edged status --json``'s ``report``)."""
        socket = str(self.work / "edged" / "control.sock")
        return request(socket, "status", timeout=self.timeout)["report"]

    # -- the checks, in order ---------------------------------------------------------------------

    def events_arrive(self) -> str:
        [sensor] = self.emu.wait_for_events(device=SENSOR, timeout=self.timeout)
        [meter] = self.emu.wait_for_events(
            device=METER, predicate=lambda e: "voltage" in e.values, timeout=self.timeout
        )
        if meter.values["voltage"] != 230.0:
            raise CheckFailed(f"the meter read {meter.values}, expected voltage 230.0")
        return f"sensor-1 {sensor.values}, meter-1 {meter.values}"

    def simulated_command(self) -> str:
        self.emu.send_command(SENSOR, "set", {"mode": "eco", "reqId": "smoke-set"})
        data = command_result(self.emu, SENSOR, "smoke-set", self.timeout)
        self.emu.wait_for_events(
            device=SENSOR, predicate=lambda e: e.values.get("mode") == "eco", timeout=self.timeout
        )
        return f"set -> {data['d']}, then a reading with mode eco"

    def modbus_command(self) -> str:
        self.emu.send_command(METER, "setpoint", {"value": 21.5, "reqId": "smoke-setpoint"})
        data = command_result(self.emu, METER, "smoke-setpoint", self.timeout)

        def read_back(event: ReceivedEvent) -> bool:
            return bool(event.values.get("setpoint") == 21.5)

        self.emu.wait_for_events(device=METER, predicate=read_back, timeout=self.timeout)
        return f"setpoint 21.5 -> {data['d']}, read back from the pymodbus server"

    def device_management(self) -> str:
        self.emu.wait_for(lambda: self.emu.is_managed(GW), self.timeout, "the gateway managed")
        observed = self.emu.dm_request(
            GW, "observe", {"fields": [{"field": "location"}]}, timeout=self.timeout
        )
        if observed.get("rc") != 200:
            raise CheckFailed(f"observe location answered {observed}")
        custom = self.emu.dm_request(
            GW,
            "mgmt/custom/smoke/hello",
            {"fields": [{"field": "who", "value": "arm"}]},
            timeout=self.timeout,
        )
        if custom.get("rc") != 200:
            raise CheckFailed(f"custom action smoke/hello answered {custom}")
        return f"managed; observe location rc 200 {observed.get('d')}; custom action rc 200"

    def outbox_survives_kill_9(self) -> str:
        self.emu.wait_for(lambda: len(seqs(self.emu, 1)) >= 3, self.timeout, "outage-1 readings")
        self.broker.stop()
        before = max(seqs(self.emu, 1))

        def queued() -> bool:
            state = self.status()
            return not state["uplink"]["connected"] and state["outbox"]["depth"] >= OUTAGE_QUEUED

        deadline = time.monotonic() + self.timeout
        while not queued():
            if time.monotonic() > deadline:
                raise CheckFailed(f"the outbox never held {OUTAGE_QUEUED}: {self.status()}")
            time.sleep(0.2)
        depth = self.status()["outbox"]["depth"]
        self.running.stop(signal.SIGKILL)
        self.broker.start()
        self.emu.wait_connected(self.timeout)
        self.start_daemon(run=2)
        try:
            self.emu.wait_for(
                lambda: max(seqs(self.emu, 1)) >= before + OUTAGE_READINGS,
                self.timeout,
                "the readings made while the broker was down",
            )
        except TimeoutError:
            got = sorted(seqs(self.emu, 1))
            raise CheckFailed(
                f"after the restart the platform has outage-1 seq {got[:3]}..{got[-3:]} of the "
                f"killed process, not beyond {before + OUTAGE_READINGS - 1}"
            ) from None
        self.emu.wait_for_events(
            device=OUTAGE, predicate=lambda e: e.values.get("run") == 2, timeout=self.timeout
        )
        delivered = seqs(self.emu, 1)
        missing = sorted(set(range(max(delivered) + 1)) - delivered)
        if missing:
            raise CheckFailed(f"readings of the killed process lost: seq {missing[:20]}")
        return (
            f"{depth} messages in the outbox at the kill; outage-1 seq {before + 1}.."
            f"{max(delivered)}, made while the broker was down, delivered after the restart"
        )

    def sigterm(self) -> str:
        code = self.running.stop(signal.SIGTERM)
        if code != 0:
            raise CheckFailed(f"exit code {code}; output:\n{self.running.tail()}")
        if "Traceback" in self.running.output:
            raise CheckFailed(f"a traceback in its output:\n{self.running.tail(80)}")
        return "exit 0"

    def no_violations(self) -> str:
        if self.emu.violations:
            raise CheckFailed(f"{self.emu.violations[:5]}")
        return f"{len(self.emu.events)} events, {len(self.emu.dm_exchanges)} DM exchanges"


def run(args: argparse.Namespace) -> int:
    say(f"smoke: {platform.machine()}, Python {platform.python_version()}, edged {args.edged!r}")
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        raise CheckFailed("mosquitto is not installed")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edged-smoke-")))
        modbus_port = free_port()
        stack.enter_context(modbus_server(modbus_port))
        say(f"  ok: pymodbus server on 127.0.0.1:{modbus_port}")
        smoke = Smoke(work, edged_command(args.edged), args.timeout, modbus_port)
        smoke.broker.start()
        stack.callback(smoke.broker.stop)
        say(f"  ok: mosquitto on 127.0.0.1:{smoke.broker.tls_port} (TLS, token auth)")
        smoke.emulator = PlatformEmulator(
            "localhost",
            smoke.broker.tls_port,
            ORG,
            app_id="smoke",
            username=APP_USER,
            password=smoke.broker.app_password,
            tls_ca_file=smoke.broker.ca.ca_file,
            connect_timeout=args.timeout,
        )
        smoke.emulator.start()
        stack.callback(smoke.emu.stop)
        smoke.start_daemon(run=1)

        @stack.callback
        def _stop_daemon() -> None:
            if smoke.daemon is not None and smoke.daemon.process.poll() is None:
                smoke.daemon.stop(signal.SIGKILL)

        try:
            check("events arrive (simulated and Modbus)", smoke.events_arrive)
            check("a command round-trips (simulated set)", smoke.simulated_command)
            check("a command round-trips (Modbus register write)", smoke.modbus_command)
            check("device management is answered", smoke.device_management)
            check("the outbox survives kill -9 with the broker down", smoke.outbox_survives_kill_9)
            check("SIGTERM stops the daemon cleanly", smoke.sigterm)
            check("the platform saw no rule violations", smoke.no_violations)
        except CheckFailed:
            if smoke.daemon is not None:
                say(f"the daemon's last output:\n{smoke.daemon.tail()}")
            raise
    say("smoke: all checks passed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edged", default="edged", help="command running edged (default: edged)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds each wait may take (emulated CPUs)"
    )
    args = parser.parse_args()
    try:
        return run(args)
    except CheckFailed as exc:
        say(f"smoke: FAILED: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
