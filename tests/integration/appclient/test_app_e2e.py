"""``edged app`` and the application client against a real broker, with the daemon running.

Mosquitto is not the platform: it produces no ``mon`` messages, so device status is tested by
publishing one as the platform would. It also cannot share one client id between connections:
a second connection with an equal id takes the first one over (as the platform does for ``a:``
ids, PROTOCOL.md §1.7), so the platform's load balancing of ``A:`` members is not reproducible
here; what is tested is that every form is built as specified and connects with the session
flags the platform requires.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish
import pytest

from edged.appclient import (
    ApiKey,
    AppClient,
    AppConfig,
    AppIdentity,
    AppMessage,
    AuthRefused,
    ConnectionSettings,
)
from edged.emulator import PlatformEmulator
from edged.model import DeviceIdentity
from tests.integration.appclient.helpers import app_env, read_until, run_app, start_app
from tests.integration.dm.helpers import GW, dm_config, wait_managed
from tests.support.broker import APP_USER, Broker
from tests.support.daemon import running_daemon, write_config

pytestmark = pytest.mark.integration

BOILER = DeviceIdentity("boiler", "boiler-1")


def _sim(device: DeviceIdentity) -> dict[str, Any]:
    return {
        "id": device.device_id,
        "type": device.type_id,
        "adapter": "simulated",
        "simulated": {"interval": 0.1, "values": {"n": {"kind": "counter", "max": 10**9}}},
    }


def _config(broker: Broker, identity: AppIdentity, password: str | None = None) -> AppConfig:
    return AppConfig(
        identity,
        ApiKey(APP_USER, password or broker.app_password),
        ConnectionSettings(broker.host, broker.port, tls=False, keepalive=30, connect_timeout=5),
    )


def _connections(broker: Broker, client_id: str) -> list[str]:
    """Mosquitto's log lines of connections made with ``client_id``: they show the flags."""
    return re.findall(
        rf"New client connected from \S+ as {re.escape(client_id)} \(([^)]*)\)", broker.log()
    )


def test_watch_sees_the_daemons_events_and_its_devices_status(
    tmp_path: Path, broker: Broker
) -> None:
    with running_daemon(write_config(tmp_path, broker, [_sim(BOILER)])):
        env = app_env(broker, "watcher", tmp_path)
        watch = start_app(
            "watch", "--type", "boiler", "--status", "--json", "--count", "20", env=env
        )
        errors: list[str] = []
        try:
            read_until(watch.stderr, "edged app: watching", errors)
            # What the platform publishes when a device connects (retained, QoS 0).
            mon = {"Action": "Connect", "ClientID": "d:testorg:boiler:boiler-1", "Time": "now"}
            publish.single(
                "iot-2/type/boiler/id/boiler-1/mon",
                json.dumps(mon),
                retain=True,
                hostname=broker.host,
                port=broker.port,
                client_id="platform-mon",
                auth={"username": APP_USER, "password": broker.app_password},
            )
            out, err = watch.communicate(timeout=30)
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.communicate()
    assert watch.returncode == 0, "".join(errors) + err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 20
    events = [r for r in records if r["kind"] == "event"]
    assert events and all((r["type"], r["id"]) == ("boiler", "boiler-1") for r in events)
    assert {r["name"] for r in events} == {"reading"}
    assert all(isinstance(r["payload"]["d"]["n"], int) for r in events)
    [status] = [r for r in records if r["kind"] == "device-status"]
    assert (status["id"], status["payload"]) == ("boiler-1", mon)


def test_watch_lines_and_a_malformed_payload(tmp_path: Path, broker: Broker) -> None:
    env = app_env(broker, "watcher", tmp_path)
    watch = start_app("watch", "--count", "2", env=env)
    errors: list[str] = []
    try:
        read_until(watch.stderr, "edged app: watching", errors)
        publisher = app_env(broker, "publisher", tmp_path)
        result = run_app("publish", "t", "d-1", "hello", "--data", '{"a": 1}', env=publisher)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "sent iot-2/type/t/id/d-1/evt/hello/fmt/json\n"
        publish.single(
            "iot-2/type/t/id/d-1/evt/bad/fmt/json",
            b"\x00\xffnot json",
            hostname=broker.host,
            port=broker.port,
            auth={"username": APP_USER, "password": broker.app_password},
        )
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 0, err
    first, second = out.splitlines()
    assert first.endswith(' t:d-1 evt hello {"a":1}')
    assert second.endswith(" t:d-1 evt bad malformed (not JSON): b'\\x00\\xffnot json'")


def test_command_waits_for_the_result_and_exits_by_its_status(
    tmp_path: Path, broker: Broker
) -> None:
    with running_daemon(write_config(tmp_path, broker, [_sim(BOILER)])):
        _wait_for_an_event(broker, BOILER)
        env = app_env(broker, "operator", tmp_path)
        ok = run_app(
            "command", "boiler", "boiler-1", "set", "--data", '{"setpoint": 21.5}',
            "--wait-result", "15", env=env,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stdout + ok.stderr
        sent, result = ok.stdout.splitlines()
        assert sent.startswith("sent iot-2/type/boiler/id/boiler-1/cmd/set/fmt/json reqId ")
        assert " boiler:boiler-1 evt cmdResult " in result and '"status":"ok"' in result
        unknown = run_app(
            "command", "boiler", "boiler-1", "self-destruct", "--wait-result", "15", env=env
        )
        assert unknown.returncode == 4, unknown.stdout + unknown.stderr
        assert '"status":"unsupported"' in unknown.stdout
        fire_and_forget = run_app("command", "boiler", "boiler-1", "set", env=env)
        assert fire_and_forget.returncode == 0
        assert fire_and_forget.stdout == "sent iot-2/type/boiler/id/boiler-1/cmd/set/fmt/json\n"


def test_no_result_in_time_has_its_own_exit_code(tmp_path: Path, broker: Broker) -> None:
    env = app_env(broker, "operator", tmp_path)  # no daemon: nobody answers
    result = run_app("command", "boiler", "boiler-1", "set", "--wait-result", "0.5", env=env)
    assert result.returncode == 124
    assert "no cmdResult event within 0.5 s" in result.stderr


def _wait_for_an_event(broker: Broker, device: DeviceIdentity) -> None:
    seen = threading.Event()

    def listener(message: AppMessage) -> None:
        if message.kind == "event" and message.device == device:
            seen.set()

    with AppClient(_config(broker, AppIdentity("testorg", "probe"))) as client:
        client.add_listener(listener)
        client.subscribe_events(device.type_id, device.device_id)
        assert seen.wait(15), f"no event of {device}"


def test_dm_request_answered_by_the_daemons_dm_agent(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    location = {"latitude": 52.5, "longitude": 13.4, "elevation": 34}
    config = dm_config(tmp_path, broker, {"location": location})
    with running_daemon(config):
        wait_managed(emulator, GW)  # the emulator plays the platform's DM server
        env = app_env(broker, "operator", tmp_path)
        result = run_app(
            "dm", GW.type_id, GW.device_id, "observe",
            "--data", '{"fields": [{"field": "location"}]}', "--timeout", "15", env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        answer = json.loads(result.stdout)
        assert answer["rc"] == 200
        [field] = answer["d"]["fields"]
        assert field["field"] == "location"
        assert {k: field["value"][k] for k in location} == location
        unknown = run_app("dm", "nope", "nobody", "observe", "--timeout", "15", env=env)
        assert unknown.returncode == 1 and json.loads(unknown.stdout)["rc"] == 404


def test_every_client_id_form_connects_with_the_required_session_flags(broker: Broker) -> None:
    forms = [
        (AppIdentity("testorg", "solo"), "a:testorg:solo", "c1"),
        (AppIdentity("testorg", "keep", durable=True), "a:testorg:keep", "c0"),
        (AppIdentity("testorg", "fleet", shared=True), "A:testorg:fleet", "c1"),
        (AppIdentity("testorg", "mix", shared=True, instance_id="i-1"), "A:testorg:mix:i-1", "c1"),
        (
            AppIdentity("testorg", "mix", shared=True, instance_id="i-2", durable=True),
            "A:testorg:mix:i-2",
            "c0",
        ),
    ]
    for identity, client_id, clean in forms:
        with AppClient(_config(broker, identity)) as client:
            assert client.client_id == client_id
            client.subscribe_events()
        [flags] = _connections(broker, client_id)
        # p2: MQTT 3.1.1; c1: clean session (non-durable), c0: the session is kept.
        assert flags.startswith(f"p2, {clean}, k30, u'{APP_USER}'"), flags


def test_a_second_equal_scalable_id_takes_the_first_over_on_mosquitto(broker: Broker) -> None:
    # On the platform both would share the subscription; Mosquitto disconnects the first.
    states: list[str] = []
    identity = AppIdentity("testorg", "fleet", shared=True)
    first = AppClient(_config(broker, identity), on_state=lambda s, _: states.append(s))
    with first:
        with AppClient(_config(broker, identity)):
            deadline = time.monotonic() + 10
            while "lost" not in states and time.monotonic() < deadline:
                time.sleep(0.05)
        assert "lost" in states


def test_a_wrong_token_is_one_clear_error_and_no_retry(tmp_path: Path, broker: Broker) -> None:
    env = app_env(broker, "badkey", tmp_path, EDGED_APP_TOKEN="wrong-token")
    result = run_app("watch", env=env)
    assert result.returncode == 77
    [line] = result.stderr.splitlines()
    assert line.startswith("edged app: cannot connect to mqtt://127.0.0.1:")
    assert line.endswith("(check the API key and token)")
    assert "wrong-token" not in result.stderr + result.stdout
    with pytest.raises(AuthRefused, match="refused"):
        AppClient(_config(broker, AppIdentity("testorg", "lib"), "wrong-token")).start()


def test_credentials_refused_on_reconnect_give_up_instead_of_retrying(broker: Broker) -> None:
    states: list[str] = []
    client = AppClient(
        _config(broker, AppIdentity("testorg", "revoked")), on_state=lambda s, _: states.append(s)
    )
    with client:
        broker.app_password = "rotated"  # the token was revoked while connected
        broker.restart()
        assert client.wait_until(lambda: client.fatal_error is not None, 15)
        assert "Not authorized" in (client.fatal_error or "") or "Bad user" in (
            client.fatal_error or ""
        )
        attempts = broker.log().count("as a:testorg:revoked")
        time.sleep(3)  # paho's first retry would come after 1 s, the next 2 s later
        assert broker.log().count("as a:testorg:revoked") == attempts
        assert states[-1] == "refused" and states.count("refused") == 1


def test_invalid_ids_and_quickstart_misuse_are_refused_before_connecting(tmp_path: Path) -> None:
    base = {"HOME": str(tmp_path), "EDGED_APP_HOST": "127.0.0.1", "EDGED_APP_PORT": "9"}
    quickstart = {**base, "EDGED_APP_ORG": "quickstart"}
    command = run_app("command", "t", "d", "reboot", env={**_environ(), **quickstart})
    assert command.returncode == 64
    assert command.stderr == (
        "edged app: Quickstart applications cannot publish or subscribe to commands\n"
    )
    watch = run_app("watch", env={**_environ(), **quickstart})
    assert watch.returncode == 64 and "'+' wildcard" in watch.stderr
    tls = run_app("watch", env={**_environ(), **quickstart, "EDGED_APP_TLS": "1"})
    assert tls.returncode == 64 and "does not offer TLS" in tls.stderr
    keyed = {**base, "EDGED_APP_KEY": "a-testorg-k", "EDGED_APP_TOKEN": "t"}
    bad_id = run_app("watch", env={**_environ(), **keyed, "EDGED_APP_ID": "x" * 37})
    assert bad_id.returncode == 64 and "at most 36 characters (it has 37)" in bad_id.stderr
    bad_device = run_app("publish", "t", "d d", "e", env={**_environ(), **keyed})
    # Reached only after connecting: nothing listens on port 9.
    assert bad_device.returncode == 69
    no_credentials = run_app("watch", env={**_environ(), **base})
    assert no_credentials.returncode == 78 and "no credentials" in no_credentials.stderr


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("EDGED_APP_")}
