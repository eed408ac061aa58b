"""Firmware download and update end to end (the daemon as a process, docs/firmware.md).

A real broker, ``edged run`` as a child process, the platform emulator issuing the platform's
sequences of PROTOCOL.md 4.11 for a managed simulated device, and a loopback HTTPS server with
a test CA serving the image. The device's ``firmware.install`` is a ``run:`` script recording
the image path it was given and the image's SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.devbroker import LocalCA
from edged.emulator import PlatformEmulator
from tests.integration.dm.helpers import GW, PUMP, dm_config, manages, script, sim, wait_managed
from tests.support.broker import Broker
from tests.support.daemon import running_daemon
from tests.unit.dm.firmware.server import TRUNCATED, Served, image_server

pytestmark = pytest.mark.integration

IMAGE = b"pump firmware 2.0\n" * 20_000
SHA = hashlib.sha256(IMAGE).hexdigest()
FW = "mgmt.firmware"


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return LocalCA.create(tmp_path / "ca")


@pytest.fixture
def served() -> Served:
    return Served(
        files={"/pump-2.0.bin": IMAGE, "/cut.bin": IMAGE}, modes={"/cut.bin": {TRUNCATED}}
    )


@pytest.fixture
def base(ca: LocalCA, served: Served) -> Iterator[str]:
    with image_server(ca, served) as url:
        yield url


def notifies(emulator: PlatformEmulator) -> list[Any]:
    """The mgmt.firmware values the gateway notified for the pump, in order."""
    return [
        field["value"]
        for m in emulator.dm_messages
        if m.direction == "up" and m.device == PUMP and m.suffix == "notify"
        for field in m.d["fields"]
        if field["field"] == FW
    ]


def request(emulator: PlatformEmulator, suffix: str, d: Any = None) -> int | None:
    answer = emulator.dm_request(PUMP, suffix, d)
    rc = answer.get("rc")
    return rc if isinstance(rc, int) else None


def observe(emulator: PlatformEmulator, suffix: str = "observe") -> int | None:
    return request(emulator, suffix, {"fields": [{"field": FW}]})


def write(emulator: PlatformEmulator, **value: Any) -> int | None:
    full = {"state": 0, "updateStatus": 0, "updatedDateTime": "", **value}
    return request(emulator, "device/update", {"fields": [{"field": FW, "value": full}]})


def test_download_and_update_with_the_exact_notify_sequence(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator, ca: LocalCA, base: str
) -> None:
    record = tmp_path / "installed.txt"
    installer = script(
        tmp_path / "install.sh",
        f'digest=$(sha256sum < "$EDGED_FIRMWARE_PATH" | cut -c1-64)\n'
        f'echo "$EDGED_FIRMWARE_PATH $digest" > {record}',
    )
    pump = {
        "device_info": {"fwVersion": "1.0"},
        "firmware": {
            "install": {"run": [installer]},
            "ca_file": str(ca.ca_file),
            "connect_timeout": 5,
        },
    }
    config = dm_config(tmp_path, broker, devices=[sim(PUMP, pump)])
    with running_daemon(config):
        wait_managed(emulator, GW, PUMP)
        attached = emulator.device(PUMP)
        assert attached is not None and attached.dm.supports["firmwareActions"] is True

        # A cut on every attempt: Connection Lost, reported in one notify.
        assert write(emulator, version="2.0", uri=f"{base}/cut.bin", verifier=SHA) == 204
        assert observe(emulator) == 200
        assert request(emulator, "mgmt/initiate/firmware/download") == 202
        emulator.wait_for(lambda: len(notifies(emulator)) == 2, 20, "download failed")
        assert notifies(emulator) == [{"state": 1}, {"state": 0, "updateStatus": 3}]
        assert request(emulator, "mgmt/initiate/firmware/update") == 400  # state 0
        assert observe(emulator, "cancel") == 200

        # The platform's download sequence (PROTOCOL.md 4.11).
        uri = f"{base}/pump-2.0.bin"
        assert write(emulator, version="2.0", name="pump", uri=uri, verifier=SHA) == 204
        assert observe(emulator) == 200
        assert request(emulator, "mgmt/initiate/firmware/download") == 202
        emulator.wait_for(lambda: len(notifies(emulator)) == 4, 20, "downloaded")
        assert notifies(emulator)[2:] == [{"state": 1}, {"state": 2}]
        assert request(emulator, "mgmt/initiate/firmware/download") == 400  # state 2
        assert observe(emulator, "cancel") == 200

        # The update sequence.
        assert observe(emulator) == 200
        assert request(emulator, "mgmt/initiate/firmware/update") == 202
        emulator.wait_for(lambda: len(notifies(emulator)) == 6, 20, "installed")
        started, done = notifies(emulator)[4:]
        assert started == {"updateStatus": 1}
        assert done == {"state": 0, "updateStatus": 0, "updatedDateTime": done["updatedDateTime"]}
        assert done["updatedDateTime"].endswith("Z")
        assert observe(emulator, "cancel") == 200

    path, digest = record.read_text().split()
    assert path == str(tmp_path / "firmware" / "fw+pump+pump-1.img") and digest == SHA
    assert not (tmp_path / "firmware" / "fw+pump+pump-1.img").exists()  # deleted after install

    before = len(manages(emulator, PUMP))
    with running_daemon(config):  # the next manage carries the installed version
        emulator.wait_for(lambda: len(manages(emulator, PUMP)) > before, 15, "manage again")
    assert manages(emulator, PUMP)[-1].d["deviceInfo"]["fwVersion"] == "2.0"
    assert emulator.violations == []
