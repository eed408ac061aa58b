"""``edged demo``: a local broker, the platform emulator and the daemon, with a live view.

Everything runs on this machine: Mosquitto on free loopback ports (TLS with a throwaway CA, token
auth), the emulator as the platform's application, and ``edged run`` as a child process on
``config/demo.yaml``. The terminal shows the events arriving, the gateway's manage, a command
round trip every few seconds, a location update and a custom action sent by the platform a few
seconds in, and a summary when Ctrl-C (or ``--seconds``) ends it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from edged.devbroker import APP_USER, Broker, LocalCA
from edged.emulator import PlatformEmulator
from edged.emulator.records import Record
from edged.emulator.render import Renderer, format_summary, use_color
from edged.model import DeviceIdentity

_DEMO_CONFIG_PLACES = (
    Path(__file__).resolve().parent.parent / "config" / "demo.yaml",
    Path("/usr/share/doc/edged/examples/demo.yaml"),
)
COMMAND_EVERY = 6.0
DM_AFTER = 4.0
"""Seconds after the start when the platform updates the location and runs the custom action."""
MOVED_TO = {"latitude": 52.5200, "longitude": 13.4050, "elevation": 40.0}


def _demo_config() -> Path:
    for place in _DEMO_CONFIG_PLACES:
        if place.is_file():
            return place
    raise FileNotFoundError("config/demo.yaml not found (run the demo from the source tree)")


def _write_config(workdir: Path, broker: Broker) -> tuple[Path, dict[str, Any]]:
    config = yaml.safe_load(_demo_config().read_text())
    token = workdir / "token"
    token.write_text(broker.gateway_token + "\n")
    token.chmod(0o600)
    config["platform"].update(
        host="localhost",
        port=broker.tls_port,
        tls=True,
        ca_file=str(broker.ca.ca_file),
        token_file=str(token),
    )
    config.setdefault("storage", {})["path"] = str(workdir / "outbox.sqlite")
    path = workdir / "edged.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


def _gateway(config: dict[str, Any]) -> DeviceIdentity:
    return DeviceIdentity(
        config["platform"]["gateway"]["type"], config["platform"]["gateway"]["id"]
    )


def _commands(
    config: dict[str, Any],
) -> itertools.cycle[tuple[DeviceIdentity, str, dict[str, Any]]]:
    devices = [DeviceIdentity(d["type"], d["id"]) for d in config["devices"]]
    gateway = _gateway(config)
    script: list[tuple[DeviceIdentity, str, dict[str, Any]]] = [
        (devices[0], "set", {"setpoint": 68.0}),
        (gateway, "ping", {}),
        (devices[1 % len(devices)], "set", {"alarm": True}),
        (devices[0], "open-valve", {}),  # unknown: an "unsupported" result
        (devices[-1], "set", {"calibrated": "2026-11-23"}),
    ]
    return itertools.cycle(script)


def _relay_daemon_log(process: subprocess.Popen[bytes], out: Any, dim: bool) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode(errors="replace").rstrip()
        if " DEBUG " in line:
            continue
        prefix = "\x1b[2m  daemon | " if dim else "  daemon | "
        out.write(f"{prefix}{line}{chr(27) + '[0m' if dim else ''}\n")
        out.flush()


def _custom_actions(config: dict[str, Any]) -> list[str]:
    """``bundle/action`` for each custom action the demo config gives the gateway."""
    bundles = config.get("managed", {}).get("custom", {})
    return [f"{bundle}/{action}" for bundle, actions in bundles.items() for action in actions]


def _device_management(emulator: PlatformEmulator, config: dict[str, Any]) -> None:
    """The platform's side of device management: move the gateway, run its custom action.

    The emulator's listener prints each exchange as it completes; a short line with the
    gateway's answer follows (the exchange's line may be cut at the terminal's width).
    """
    gateway = _gateway(config)
    print("edged demo: the platform moves the gateway and runs its custom action", flush=True)
    location = {"fields": [{"field": "location", "value": MOVED_TO}]}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("location update", "device/update", location)
    ]
    greeting = {"fields": [{"field": "greeting", "value": "hello"}]}
    requests += [
        (f"custom action {name}", f"mgmt/custom/{name}", greeting)
        for name in _custom_actions(config)[:1]
    ]
    for what, suffix, d in requests:
        try:
            answer = emulator.dm_request(gateway, suffix, d, timeout=10)
        except TimeoutError:
            print(f"edged demo: {what}: no answer", flush=True)
            continue
        message = f" ({answer['message']})" if answer.get("message") else ""
        print(f"edged demo: {what}: the gateway answered {answer.get('rc')}{message}", flush=True)


def _drive(
    emulator: PlatformEmulator,
    daemon: subprocess.Popen[bytes],
    config: dict[str, Any],
    stop: threading.Event,
    seconds: float | None,
) -> bool:
    """Send a command every few seconds and the DM requests once, until stopped; False if
    the daemon died."""
    commands = _commands(config)
    gateway = _gateway(config)
    started = time.monotonic()
    next_command = started + 3.0
    dm_done = "managed" in config and config["managed"].get("enabled") is False
    while not stop.is_set():
        if seconds is not None and time.monotonic() - started >= seconds:
            break
        if daemon.poll() is not None:
            print(f"edged demo: the daemon exited with {daemon.returncode}", file=sys.stderr)
            return False
        if time.monotonic() >= next_command:
            device, name, data = next(commands)
            data = {**data, "reqId": f"demo-{int(time.time() * 1000) % 100000}"}
            emulator.send_command(device, name, data)
            next_command = time.monotonic() + COMMAND_EVERY
        if not dm_done and time.monotonic() - started >= DM_AFTER and emulator.is_managed(gateway):
            dm_done = True
            _device_management(emulator, config)
        stop.wait(0.1)
    return True


def run_demo(seconds: float | None = None) -> int:
    """Run the demo until Ctrl-C (or for ``seconds``); returns an exit code."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        print(
            "the demo needs mosquitto: run scripts/dev demo, or apt-get install mosquitto",
            file=sys.stderr,
        )
        return 69
    out = sys.stdout
    color = use_color(out)
    renderer = Renderer(color=color, max_width=shutil.get_terminal_size((140, 20)).columns)
    lock = threading.Lock()

    def show(record: Record) -> None:
        with lock:
            out.write(renderer.render(record) + "\n")
            out.flush()

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="edged-demo-") as tmp:
        workdir = Path(tmp)
        print("edged demo: starting a local broker (TLS, token auth) ...", flush=True)
        broker = Broker(workdir / "broker", LocalCA.create(workdir / "ca"))
        broker.start()
        emulator = PlatformEmulator(
            "localhost",
            broker.tls_port,
            "demo01",
            username=APP_USER,
            password=broker.app_password,
            tls_ca_file=broker.ca.ca_file,
        )
        daemon: subprocess.Popen[bytes] | None = None
        try:
            emulator.start()
            emulator.add_listener(show)
            config_path, config = _write_config(workdir, broker)
            count = len(config["devices"])
            print(
                f"edged demo: emulator up; starting edged ({count} simulated devices)", flush=True
            )
            print("edged demo: Ctrl-C stops everything\n", flush=True)
            daemon = subprocess.Popen(
                [sys.executable, "-m", "edged", "run", "--config", str(config_path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            relay = threading.Thread(
                target=_relay_daemon_log, args=(daemon, out, color), daemon=True
            )
            relay.start()
            if not _drive(emulator, daemon, config, stop, seconds):
                return 1
            print("\nedged demo: stopping ...", flush=True)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
            relay.join(5)
            summary = format_summary(
                emulator.violations,
                events=len(emulator.events),
                devices=len(emulator.devices),
                commands=len(emulator.commands_sent),
                dm_exchanges=len(emulator.dm_exchanges),
            )
            print("\n".join(summary))
            return 0 if not emulator.violations and daemon.returncode == 0 else 1
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.kill()
                daemon.wait(5)
            if daemon is not None and daemon.stdout is not None:
                daemon.stdout.close()
            emulator.stop()
            broker.stop()
