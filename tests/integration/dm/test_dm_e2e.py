"""Device management end to end: manage, attributes and sessions (the daemon as a process).

A real broker, ``edged run`` as a child process and the platform emulator as the DM server
(PROTOCOL.md section 4, docs/dm.md). Actions and error answers are in
``test_dm_requests_e2e.py``, the Modbus coil reboot in ``test_dm_modbus_e2e.py``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from edged import __version__
from edged.emulator import PlatformEmulator
from tests.integration.dm.helpers import (
    FAN,
    GW,
    MANAGE,
    PUMP,
    UNMANAGE,
    answers,
    dm_config,
    manages,
    script,
    sim,
    wait_managed,
)
from tests.support.broker import APP_USER, Broker
from tests.support.daemon import ORG, running_daemon

pytestmark = pytest.mark.integration

LAB = {"latitude": 48.1, "longitude": 11.5, "elevation": 520.0}
MOVED = {"latitude": 52.52, "longitude": 13.4, "accuracy": 8.0}


def test_the_gateway_and_a_managed_device_are_managed_at_start_the_unmanaged_one_not(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    managed = {
        "metadata": {"site": "lab-3", "rack": 7},
        "device_info": {"serialNumber": "GW-SN-1", "model": "edge-box"},
        "custom": {"tools": {"noop": {"run": ["/bin/true"]}}},
    }
    pump = {
        "metadata": {"line": "A"},
        "device_info": {"manufacturer": "Acme", "model": "P-100"},
        "actions": {"reboot": {"command": "set", "data": {"rebooted": True}}},
    }
    config = dm_config(tmp_path, broker, managed, [sim(PUMP, pump), sim(FAN)])
    with running_daemon(config) as daemon:
        wait_managed(emulator, GW, PUMP)
        emulator.wait_for_events(device=FAN)  # the unmanaged device is up and publishing
        assert daemon.process.poll() is None
    gateway = emulator.device(GW)
    attached = emulator.device(PUMP)
    assert gateway is not None and attached is not None
    assert gateway.dm.lifetime == 3600 and attached.dm.lifetime == 3600
    # firmwareActions: see test_dm_requests_e2e.py (issue 11 has none; the firmware issue adds them)
    assert gateway.dm.supports.keys() == {"deviceActions", "firmwareActions", "tools"}
    assert gateway.dm.supports["deviceActions"] is False and gateway.dm.supports["tools"] is True
    assert gateway.dm.device_info["fwVersion"] == __version__
    assert gateway.dm.device_info["serialNumber"] == "GW-SN-1"
    assert gateway.dm.device_info["model"] == "edge-box"
    assert gateway.dm.metadata == {"site": "lab-3", "rack": 7}
    assert attached.dm.supports.keys() == {"deviceActions", "firmwareActions"}
    assert attached.dm.supports["deviceActions"] is True
    assert attached.dm.device_info == {"manufacturer": "Acme", "model": "P-100"}
    assert attached.dm.metadata == {"line": "A"}
    assert manages(emulator, FAN) == []
    assert not emulator.is_managed(FAN)
    assert emulator.violations == []


def _update(emulator: PlatformEmulator, device: Any, fields: list[dict[str, Any]]) -> Any:
    return emulator.dm_request(device, "device/update", {"fields": fields})


def test_device_update_is_answered_and_persists_across_a_restart(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    config = dm_config(
        tmp_path, broker, {"metadata": {"site": "lab"}}, [sim(PUMP, {"metadata": {"line": "A"}})]
    )
    written = {
        GW: {"metadata": {"site": "hall 2"}, "deviceInfo": {"serialNumber": "SET-BY-PLATFORM"}},
        PUMP: {"metadata": {"line": "B", "owner": "ops"}, "deviceInfo": {"model": "P-200"}},
    }
    with running_daemon(config):
        wait_managed(emulator, GW, PUMP)
        for device, values in written.items():
            fields = [{"field": name, "value": value} for name, value in values.items()]
            fields.append({"field": "location", "value": MOVED})
            assert _update(emulator, device, fields) == {"rc": 204, "reqId": ANY}
        refused = _update(
            emulator,
            PUMP,
            [
                {"field": "metadata", "value": {"line": "C"}},
                {"field": "colour", "value": "red"},
                {"field": "lifetime", "value": {"s": 1}},
            ],
        )
        assert refused["rc"] == 404 and refused["d"] == {"fields": ["colour", "lifetime"]}
        observed = emulator.dm_request(PUMP, "observe", {"fields": ["metadata", "location"]})
        assert observed["rc"] == 200  # the refused update changed nothing
        assert observed["d"]["fields"] == [
            {"field": "metadata", "value": written[PUMP]["metadata"]},
            {"field": "location", "value": MOVED},
        ]
    emulator.clear(registry=True)
    with running_daemon(config):
        wait_managed(emulator, GW, PUMP)
        for device in (GW, PUMP):  # a location held is reported after each manage
            emulator.wait_for_dm("device/update/location", device, predicate=_at(MOVED))
    for device, values in written.items():
        [manage] = manages(emulator, device)
        assert manage.d["metadata"] == values["metadata"]
        assert manage.d["deviceInfo"] == values["deviceInfo"]
        record = emulator.device(device)
        assert record is not None and record.dm.metadata == values["metadata"]
        assert record.dm.location is not None and record.dm.location["latitude"] == 52.52
    assert emulator.violations == []


def _at(location: dict[str, Any]) -> Any:
    return lambda message: all(message.d.get(k) == v for k, v in location.items())


def test_observe_and_cancel_in_both_forms_and_a_notify_when_an_observed_field_changes(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    def config(version: str) -> Path:
        info = {"model": f"model-{version}"}
        return dm_config(
            tmp_path,
            broker,
            {"metadata": {"v": version}, "device_info": info},
            [sim(PUMP, {"metadata": {"v": version}, "device_info": info})],
        )

    with running_daemon(config("1")):
        wait_managed(emulator, GW, PUMP)
        both = [{"field": "metadata"}, {"field": "deviceInfo"}]
        observed = emulator.dm_request(GW, "observe", {"fields": ["metadata", "deviceInfo"]})
        assert observed["rc"] == 200
        assert observed["d"]["fields"][0] == {"field": "metadata", "value": {"v": "1"}}
        assert emulator.dm_request(PUMP, "observe", {"fields": both})["rc"] == 200
        cancelled = emulator.dm_request(GW, "cancel", {"fields": [{"field": "deviceInfo"}]})
        assert cancelled["rc"] == 200
        assert emulator.dm_request(PUMP, "cancel", {"data": ["deviceInfo"]})["rc"] == 200
        assert emulator.dm_request(PUMP, "cancel", {"data": [{"field": "metadata"}]})["rc"] == 200
        assert emulator.dm_request(PUMP, "observe", {"fields": ["metadata"]})["rc"] == 200
    emulator.clear(registry=True)
    # The operator edits metadata and deviceInfo of both: the next run notifies what is
    # still observed (metadata), once the device is managed again.
    with running_daemon(config("2")):
        wait_managed(emulator, GW, PUMP)
        [gateway] = emulator.wait_for_dm("notify", GW)
        [pump] = emulator.wait_for_dm("notify", PUMP)
        emulator.wait_for(
            lambda: len([x for x in emulator.dm_exchanges if x.request.suffix == "notify"]) == 2,
            5,
            "both notifies answered",
        )
        # A location change the platform made itself is not echoed back.
        assert emulator.dm_request(GW, "observe", {"fields": ["metadata"]})["rc"] == 200
        location = [{"field": "location", "value": MOVED}]
        assert emulator.dm_request(GW, "device/update", {"fields": location})["rc"] == 204
    for message in (gateway, pump):
        assert message.d == {"fields": [{"field": "metadata", "value": {"v": "2"}}]}
        assert message.req_id is not None
    assert len([m for m in emulator.dm_messages if m.suffix == "notify"]) == 2
    assert emulator.violations == []


@pytest.fixture
def short_lived(broker: Broker) -> Iterator[PlatformEmulator]:
    """An emulator that accepts a 1 s manage lifetime without counting it a violation."""
    with PlatformEmulator(
        broker.host,
        broker.port,
        ORG,
        app_id="shortlived",
        username=APP_USER,
        password=broker.app_password,
        min_lifetime=1,
    ) as instance:
        yield instance


def test_a_short_lifetime_is_renewed_before_it_runs_out(
    tmp_path: Path, broker: Broker, short_lived: PlatformEmulator
) -> None:
    emulator = short_lived
    config = dm_config(tmp_path, broker, {"lifetime": 2}, [sim(PUMP, {"lifetime": 3})])
    with running_daemon(config) as daemon:
        wait_managed(emulator, GW, PUMP)
        started = time.monotonic()
        emulator.wait_for(
            lambda: len(manages(emulator, GW)) >= 4 and len(manages(emulator, PUMP)) >= 3,
            8,
            "renewals",
        )
        elapsed = time.monotonic() - started
        assert emulator.is_managed(GW) and emulator.is_managed(PUMP)  # never went dormant
        daemon.wait_for_output(r"below the platform's minimum")
    assert elapsed < 6
    stamps = [m.at for m in manages(emulator, GW)]
    assert all(0.5 < later - earlier < 2 for earlier, later in itertools.pairwise(stamps))
    assert emulator.violations == []


def test_a_rejected_manage_is_logged_and_retried_until_accepted(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    emulator.set_dm_answer(MANAGE, device=GW, rc=500, message="try later")
    config = dm_config(tmp_path, broker, devices=[sim(PUMP, {})])
    with running_daemon(config) as daemon:
        wait_managed(emulator, PUMP)
        emulator.wait_for(lambda: len(manages(emulator, GW)) >= 2, 10, "a retried manage")
        daemon.wait_for_output(r"WARNING .*mgmt/manage refused with rc 500 .* for test-gw/gw-0001")
        assert not emulator.is_managed(GW)
        emulator.set_dm_answer(MANAGE, device=GW, rc=200)
        wait_managed(emulator, GW, timeout=15)
        assert daemon.process.poll() is None
    refusals = [x for x in emulator.dm_exchanges if x.request.suffix == MANAGE and x.rc == 500]
    assert {x.request.device for x in refusals} == {GW}
    assert len(refusals) >= 2
    assert len(manages(emulator, PUMP)) == 1  # the other device was not held up


def test_a_request_sent_while_the_daemon_is_stopped_is_answered_after_it_starts(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    done = tmp_path / "done"
    action = {"run": [script(tmp_path / "mark.sh", f"echo ran >> {done}")]}
    config = dm_config(tmp_path, broker, {"custom": {"tools": {"mark": action}}})
    with running_daemon(config):
        wait_managed(emulator, GW)  # the persistent session exists with its subscription
    # Returns once the broker acknowledged it: queued in the daemon's session.
    emulator.dm_publish(GW, "mgmt/custom/tools/mark", {"reqId": "while-down"})
    with running_daemon(config) as daemon:
        [answer] = emulator.wait_for_dm(
            "response", GW, predicate=lambda m: m.req_id == "while-down", timeout=15
        )
        daemon.wait_for_output("session resumed")
    assert answer.rc == 200
    assert done.read_text() == "ran\n"
    assert emulator.violations == []


def test_a_duplicate_reqid_gets_the_same_answer_and_acts_once(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    lines = tmp_path / "lines"
    action = {"run": [script(tmp_path / "append.sh", f"echo line >> {lines}")]}
    config = dm_config(
        tmp_path, broker, devices=[sim(PUMP, {"custom": {"pumpctl": {"append": action}}})]
    )
    with running_daemon(config) as daemon:
        wait_managed(emulator, GW, PUMP)
        first = emulator.dm_request(PUMP, "mgmt/custom/pumpctl/append", req_id="dup-1")
        emulator.dm_publish(PUMP, "mgmt/custom/pumpctl/append", {"reqId": "dup-1"})
        emulator.wait_for(lambda: len(answers(emulator, PUMP, "dup-1")) == 2, 10, "two answers")
        daemon.wait_for_output("dup-1 seen before")
        # One more, different request afterwards: had the repeat acted, its line came first.
        assert emulator.dm_request(PUMP, "mgmt/custom/pumpctl/append")["rc"] == 200
    assert first == {"rc": 200, "reqId": "dup-1"}
    one, two = answers(emulator, PUMP, "dup-1")
    assert one.body == two.body == first
    assert lines.read_text() == "line\nline\n"


def test_a_device_removed_from_the_config_is_unmanaged_at_the_next_start(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    with running_daemon(dm_config(tmp_path, broker, devices=[sim(PUMP, {}), sim(FAN, {})])):
        wait_managed(emulator, GW, PUMP, FAN)
    emulator.clear(registry=True)
    with running_daemon(dm_config(tmp_path, broker, devices=[sim(PUMP, {})])):
        [unmanage] = emulator.wait_for_dm(UNMANAGE, FAN)
        wait_managed(emulator, GW, PUMP)
        emulator.wait_for(lambda: not emulator.is_managed(FAN), 5, "fan unmanaged")
        emulator.wait_for(lambda: _saved_managed(tmp_path) == ["pump/pump-1", "test-gw/gw-0001"])
    assert unmanage.req_id is not None
    assert [m.device for m in emulator.dm_messages if m.suffix == UNMANAGE] == [FAN]
    emulator.clear(registry=True)
    with running_daemon(dm_config(tmp_path, broker, devices=[sim(PUMP, {})])):
        wait_managed(emulator, GW, PUMP)
    assert [m for m in emulator.dm_messages if m.suffix == UNMANAGE] == []  # once is enough
    assert emulator.violations == []


def _saved_managed(directory: Path) -> Any:
    """The devices the state file lists as managed (``None`` before it is written)."""
    try:
        return json.loads((directory / "dm.json").read_text()).get("managed")
    except (OSError, ValueError):
        return None
