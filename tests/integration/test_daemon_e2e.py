"""The daemon as a real process against a real broker and the platform emulator."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edged.emulator import PlatformEmulator
from edged.model import DeviceIdentity
from tests.support.broker import Broker
from tests.support.daemon import GATEWAY, running_daemon, write_config

pytestmark = pytest.mark.integration

GW = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])


def _sim(device_id: str, type_id: str = "sim", **section: Any) -> dict[str, Any]:
    section.setdefault("interval", 0.1)
    section.setdefault("values", {"n": {"kind": "counter", "min": 0, "max": 1_000_000}})
    return {"id": device_id, "type": type_id, "adapter": "simulated", "simulated": section}


def test_events_of_several_devices_arrive(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    devices = [
        _sim("boiler-1", "boiler", values={"temperature": {"kind": "constant", "min": 61.5}}),
        _sim("freezer-7", "freezer", script=[{"door": "closed"}, {"door": "open"}], values={}),
        {**_sim("door-east", "door-counter"), "event": "passage"},
    ]
    with running_daemon(write_config(tmp_path, broker, devices)) as daemon:
        boiler = emulator.wait_for_events(3, device="boiler-1", event="reading")
        freezer = emulator.wait_for_events(2, device="freezer-7", event="reading")
        door = emulator.wait_for_events(3, device="door-east", event="passage")
        status = emulator.wait_for_events(1, device=GW, event="status")
        assert daemon.process.poll() is None
    assert boiler[0].topic == "iot-2/type/boiler/id/boiler-1/evt/reading/fmt/json"
    assert boiler[0].values == {"temperature": 61.5}
    assert isinstance(boiler[0].data["ts"], str) and boiler[0].data["ts"].endswith("Z")
    assert [e.values["door"] for e in freezer] == ["closed", "open"]
    assert [e.values["n"] for e in door] == [0, 1, 2]
    assert all(not e.retain for e in boiler + freezer + door)
    assert set(status[0].values["devices"]) == {"starting", "online", "offline", "down"}
    assert status[0].values["uptime"] >= 0
    assert emulator.violations == []


def _result(emulator: PlatformEmulator, device: str, req_id: str) -> dict[str, Any]:
    [event] = emulator.wait_for_events(
        device=device, event="cmdResult", predicate=lambda e: e.data.get("reqId") == req_id
    )
    assert isinstance(event.data, dict)
    return event.data


def test_commands_reach_the_adapter_and_results_come_back(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    device = DeviceIdentity("boiler", "boiler-1")
    config = write_config(tmp_path, broker, [_sim("boiler-1", "boiler", interval=0.05)])
    with running_daemon(config):
        emulator.wait_for_events(device="boiler-1", event="reading")
        emulator.send_command(device, "set", {"setpoint": 21.5, "reqId": "r-1"})
        result = _result(emulator, "boiler-1", "r-1")
        assert result["status"] == "ok" and result["command"] == "set" and result["error"] is None
        # the adapter really took it: later readings carry the new value
        emulator.wait_for_events(
            device="boiler-1", predicate=lambda e: e.values.get("setpoint") == 21.5
        )
        emulator.send_command(GW, "ping", {"reqId": "p-1"})
        assert _result(emulator, GW.device_id, "p-1")["d"] == {"pong": True}
    assert emulator.violations == []


def test_malformed_commands_get_error_results(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    device = DeviceIdentity("boiler", "boiler-1")
    with running_daemon(write_config(tmp_path, broker, [_sim("boiler-1", "boiler")])) as daemon:
        emulator.wait_for_events(device="boiler-1")
        emulator.send_command(device, "set", b"{definitely not json", fmt="json")
        emulator.send_command(device, "set", {"reqId": "r-2", "setpoint": {"nested": 1}})
        emulator.send_command(device, "self-destruct", {"reqId": "r-3"})
        emulator.send_command(GW, "reboot-now", {"reqId": "r-4"})
        emulator.send_command(device, "set", b"\x00\xff binary", fmt="bin")
        results = emulator.wait_for_events(5, event="cmdResult", timeout=10)
        statuses = sorted((e.data["reqId"] or "-", e.data["status"]) for e in results)
        assert statuses == [
            ("-", "rejected"),
            ("-", "rejected"),
            ("r-2", "rejected"),
            ("r-3", "unsupported"),
            ("r-4", "unsupported"),
        ]
        assert all(e.data["error"] for e in results)
        assert daemon.process.poll() is None
        emulator.send_command(device, "set", {"reqId": "r-5", "ok": 1})
        assert _result(emulator, "boiler-1", "r-5")["status"] == "ok"
    assert emulator.violations == []


def test_tls_with_the_right_ca_works_and_a_wrong_ca_fails_clearly(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    devices = [_sim("s-1")]
    with running_daemon(write_config(tmp_path / "good", broker, devices, tls=True)):
        emulator.wait_for_events(2, device="s-1")
    wrong = write_config(
        tmp_path / "bad",
        broker,
        [_sim("s-2")],
        tls=True,
        platform={"ca_file": str(broker.ca.other_ca_file)},
    )
    with running_daemon(wrong) as daemon:
        daemon.wait_for_output(
            r"ERROR .*TLS: the certificate of localhost:\d+ is not trusted by the CA file "
            r".*other-ca.crt",
            timeout=10,
        )
        time.sleep(1.5)
        assert daemon.process.poll() is None, "a TLS failure must not stop the daemon"
    assert not [e for e in emulator.events if e.device.device_id == "s-2"]


def test_wrong_token_is_reported_once_and_backed_off(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    config = write_config(tmp_path, broker, [_sim("s-1")], token="not-the-token")
    with running_daemon(config) as daemon:
        daemon.wait_for_output(r"refused", timeout=10)
        time.sleep(3)
        output = daemon.output
    assert "not-the-token" not in output
    refusals = [line for line in output.splitlines() if "ERROR" in line and "refused" in line]
    assert len(refusals) == 1, output
    attempts = broker.log().count("not authorised")
    assert 1 <= attempts <= 3, f"{attempts} attempts in ~3 s with refused backoff 1-4 s"
    assert not emulator.events


def test_broker_restart_loses_no_qos1_command(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    device = DeviceIdentity("sim", "s-1")
    with running_daemon(write_config(tmp_path, broker, [_sim("s-1", interval=0.5)])) as daemon:
        emulator.wait_for_events(device="s-1")
        emulator.send_command(device, "set", {"reqId": "before", "a": 1})
        _result(emulator, "s-1", "before")
        # Freeze the daemon so the commands can only reach it through its persistent session.
        daemon.process.send_signal(signal.SIGSTOP)
        try:
            broker.restart()
            emulator.wait_connected(15)
            for n in range(5):
                emulator.send_command(device, "set", {"reqId": f"during-{n}", "n": n})
            broker.restart()  # the queued commands must survive a second restart too
            emulator.wait_connected(15)
        finally:
            daemon.process.send_signal(signal.SIGCONT)
        for n in range(5):
            assert _result(emulator, "s-1", f"during-{n}")["status"] == "ok"
        daemon.wait_for_output(r"(?i)reconnect|connected", timeout=5)
    assert emulator.violations == []


def test_a_redelivered_command_is_carried_out_once(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    device = DeviceIdentity("sim", "s-1")
    config = write_config(tmp_path, broker, [_sim("s-1", interval=0.1, command_delay=0.5)])
    with running_daemon(config) as daemon:
        emulator.wait_for_events(device="s-1")
        # The same reqId again while the first runs, and again after it ended: what a broker
        # redelivering a QoS 1 command around a restart looks like to the gateway.
        emulator.send_command(device, "set", {"reqId": "valve-1", "valve": "pulse-1"})
        emulator.send_command(device, "set", {"reqId": "valve-1", "valve": "pulse-2"})
        first = _result(emulator, "s-1", "valve-1")
        emulator.send_command(device, "set", {"reqId": "valve-1", "valve": "pulse-3"})
        emulator.wait_for_events(
            2,
            device="s-1",
            event="cmdResult",
            predicate=lambda e: e.data.get("reqId") == "valve-1",
        )
        emulator.wait_for_events(3, device="s-1", predicate=lambda e: "valve" in e.values)
        daemon.wait_for_output(r"reqId valve-1 was already carried out; not carried out again")
    assert first["d"] == {"applied": {"valve": "pulse-1"}}
    results = [e.data for e in emulator.events if e.event == "cmdResult"]
    assert all(result == first for result in results), results  # the first result, verbatim
    valves = {e.values["valve"] for e in emulator.events if "valve" in e.values}
    assert valves == {"pulse-1"}  # the repeats changed nothing
    assert daemon.output.count("not carried out again") == 2


def test_subscriptions_are_restored_when_the_broker_lost_the_session(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    device = DeviceIdentity("sim", "s-1")
    with running_daemon(write_config(tmp_path, broker, [_sim("s-1", interval=0.5)])):
        emulator.wait_for_events(device="s-1")
        broker.stop()
        shutil.rmtree(broker.workdir / "data")
        broker.start()
        emulator.wait_connected(15)
        emulator.clear()
        emulator.wait_for_events(device="s-1", timeout=15)  # the daemon is back
        deadline = time.monotonic() + 10
        while True:  # its command subscription is back too
            emulator.send_command(device, "echo", {"reqId": "after", "x": 1})
            try:
                assert _result(emulator, "s-1", "after")["status"] == "ok"
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


def test_oversize_payloads_are_refused_locally(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    devices = [
        _sim("big-1", script=[{"blob": "x" * 140_000}], values={}, interval=0.2),
        _sim("small-1"),
    ]
    with running_daemon(write_config(tmp_path, broker, devices)) as daemon:
        emulator.wait_for_events(3, device="small-1")
        daemon.wait_for_output(
            r"refused to publish \d+ bytes on iot-2/type/sim/id/big-1/evt/reading", timeout=5
        )
        emulator.send_command(GW, "status", {"reqId": "s"})
        counters = _result(emulator, GW.device_id, "s")["d"]["uplink"]
    assert counters["oversizeRefused"] >= 1
    assert not [e for e in emulator.events if e.device.device_id == "big-1"]
    assert daemon.output.count("refused to publish") == 1  # logged once, counted after that
    assert emulator.violations == []


def test_sigterm_shuts_down_cleanly_and_delivers_what_was_read(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    config = write_config(tmp_path, broker, [_sim("s-1", interval=0.002)])
    assert broker.process is not None
    with running_daemon(config) as daemon:
        emulator.wait_for_events(100, device="s-1", timeout=20)
        # Freeze the broker so that a backlog forms, stop the daemon mid-stream, then let the
        # broker go on while the daemon drains: what it read must all arrive.
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)
            daemon.process.send_signal(signal.SIGTERM)
            daemon.wait_for_output(r"stopping: adapters first")
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        started = time.monotonic()
        code = daemon.stop(signal.SIGTERM)
        took = time.monotonic() - started
    assert code == 0, daemon.output
    assert took < 5
    draining = re.search(r"then sending what the outbox holds \((\d+) messages\)", daemon.output)
    assert draining is not None and int(draining.group(1)) > 0, daemon.output
    stopped = re.search(r"edged stopped: (\d+) readings taken, .* (\d+) left in the", daemon.output)
    assert stopped is not None, daemon.output
    taken, left = int(stopped.group(1)), int(stopped.group(2))
    assert left == 0
    emulator.wait_for_events(taken, device="s-1", timeout=10)
    values = [e.values["n"] for e in emulator.events if e.device.device_id == "s-1"]
    assert list(dict.fromkeys(values)) == list(range(taken))  # all, in order (QoS 1 may repeat)


def test_unreachable_broker_at_start_then_everything_read_is_delivered(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    broker.stop()
    emulator.stop()
    config = write_config(tmp_path, broker, [_sim("s-1", interval=0.02, count=50)])
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(10)
        with running_daemon(config, env={"NOTIFY_SOCKET": str(notify_path)}) as daemon:
            assert b"READY=1" in notify.recv(4096)  # ready without a broker
            daemon.wait_for_output(
                r"refused the connection \(is the broker running on that port\?\)", timeout=10
            )
            time.sleep(1.5)  # the simulated device has read everything by now
            broker.start()
            emulator.start()
            events = emulator.wait_for_events(50, device="s-1", timeout=20)
    assert [e.values["n"] for e in events] == list(range(50))


def test_config_errors_exit_78_before_touching_anything(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path, broker, [_sim("s-1", interval="soon")])
    result = subprocess.run(
        [sys.executable, "-m", "edged", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 78
    assert "devices[0].simulated.interval" in result.stderr
    assert "New client connected" not in broker.log()


def test_mqtt5_session_carries_events_and_commands(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    device = DeviceIdentity("sim", "s-5")
    config = write_config(tmp_path, broker, [_sim("s-5")], platform={"mqtt_version": 5})
    with running_daemon(config) as daemon:
        emulator.wait_for_events(2, device="s-5")
        emulator.send_command(device, "echo", {"reqId": "v5", "hello": "world"})
        assert _result(emulator, "s-5", "v5")["d"] == {"echo": {"reqId": "v5", "hello": "world"}}
        assert daemon.process.poll() is None
    # mosquitto logs "as <client id> (p5, c0, ...)": protocol 5, no clean start
    assert re.search(r"as g:testorg:test-gw:gw-0001 \(p5, c0,", broker.log())
    assert emulator.violations == []


def test_platform_notify_is_logged_once_and_counted(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    device = DeviceIdentity("sim", "s-n")
    with running_daemon(write_config(tmp_path, broker, [_sim("s-n", interval=0.5)])) as daemon:
        emulator.wait_for_events(device="s-n")
        for _ in range(3):
            emulator.publish_notify(GW, device=device, message="Device type is not valid.")
        daemon.wait_for_output(r"ERROR .*platform refused to register sim/s-n: Device type")
        emulator.send_command(GW, "status", {"reqId": "n"})
        deadline = time.monotonic() + 5
        while (counts := _result(emulator, GW.device_id, "n")["d"]["notify"]["top"]) != {
            "sim/s-n": 3
        }:
            assert time.monotonic() < deadline, counts
            emulator.clear()
            emulator.send_command(GW, "status", {"reqId": "n"})
    warnings = [
        line
        for line in daemon.output.splitlines()
        if "ERROR" in line and "refused to register" in line
    ]
    assert len(warnings) == 1, warnings
