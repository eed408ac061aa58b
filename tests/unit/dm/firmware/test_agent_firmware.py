"""DMAgent's firmware flow: the in-memory rig, a real install program, a loopback HTTPS server."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from edged.config.management import ActionConfig
from edged.devbroker import LocalCA
from edged.dm.actions import ActionFailed
from edged.model import DeviceIdentity
from tests.unit.dm.firmware.server import Served, image_server
from tests.unit.dm.rig import GW, S1, S2, VERSION, Rig, settle, wait_for

IMAGE = b"firmware image 2.0 " * 4000
SHA = hashlib.sha256(IMAGE).hexdigest()
FW = "mgmt.firmware"


@pytest.fixture(autouse=True)
async def _state_writer_threads() -> AsyncIterator[None]:
    yield
    await asyncio.get_running_loop().shutdown_default_executor()  # StateFile's writes


@pytest.fixture
def served() -> Served:
    return Served(files={"/fw.bin": IMAGE})


@pytest.fixture
def base(ca: LocalCA, served: Served) -> Iterator[str]:
    with image_server(ca, served) as url:
        yield url


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "installed.txt"


def installer(tmp_path: Path, record: Path, exit_code: int = 0) -> str:
    script = tmp_path / f"install-{exit_code}.sh"
    script.write_text(
        "#!/bin/sh\n"
        'digest=$(sha256sum < "$EDGED_FIRMWARE_PATH" | cut -c1-64)\n'
        f'echo "$EDGED_FIRMWARE_PATH $digest" > {record}\n'
        f"exit {exit_code}\n"
    )
    script.chmod(0o755)
    return str(script)


def firmware_rig(tmp_path: Path, ca: LocalCA, program: str, **extra: Any) -> Rig:
    s1 = {
        "device_info": {"fwVersion": "1.0"},
        "firmware": {
            "install": {"run": [program]},
            "ca_file": str(ca.ca_file),
            "connect_timeout": 5,
            **extra,
        },
    }
    rig = Rig(tmp_path, devices={S1: s1, S2: {}}, auto={"notify": 200})
    rig.manage_all()
    return rig


def write(rig: Rig, req_id: str, device: DeviceIdentity = S1, **value: Any) -> dict[str, Any]:
    body = {"fields": [{"field": FW, "value": {"state": 0, "updateStatus": 0, **value}}]}
    rig.deliver(device, "device/update", {"reqId": req_id, "d": body})
    return rig.answer(req_id)


def ask(rig: Rig, suffix: str, req_id: str, device: DeviceIdentity = S1) -> dict[str, Any]:
    if suffix in ("observe", "cancel"):
        rig.deliver(device, suffix, {"reqId": req_id, "d": {"fields": [{"field": FW}]}})
    else:
        rig.deliver(device, f"mgmt/initiate/firmware/{suffix}", {"reqId": req_id})
    return rig.answer(req_id)


def notified(rig: Rig, device: DeviceIdentity = S1) -> list[Any]:
    return [f["value"] for s in rig.of("notify", device) for f in s.body["d"]["fields"]]


def firmware(rig: Rig, device: DeviceIdentity = S1) -> dict[str, Any]:
    value = rig.agent.state.attributes(device).value(FW)
    assert isinstance(value, dict)
    return value


def files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "firmware"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_download_then_update_notifies_each_step_and_sets_fw_version(
    tmp_path: Path, ca: LocalCA, base: str, record: Path
) -> None:
    rig = firmware_rig(tmp_path, ca, installer(tmp_path, record))
    manage = rig.of("mgmt/manage", S1)[-1].body["d"]
    assert manage["supports"]["firmwareActions"] is True
    assert rig.of("mgmt/manage", S2)[-1].body["d"]["supports"]["firmwareActions"] is False
    uri = f"{base}/fw.bin"
    assert write(rig, "w", version="2.0", name="fw", uri=uri, verifier=SHA, updatedDateTime="")
    assert rig.answer("w") == {"rc": 204, "reqId": "w"}
    observed = ask(rig, "observe", "o1")
    assert observed["rc"] == 200
    assert observed["d"]["fields"][0]["value"]["state"] == 0
    assert ask(rig, "download", "d") == {"rc": 202, "reqId": "d"}
    await wait_for(lambda: firmware(rig)["state"] == 2)
    assert notified(rig) == [{"state": 1}, {"state": 2}]
    assert files(tmp_path) == ["fw+sensor+S1.img"]
    assert ask(rig, "cancel", "c1")["rc"] == 200

    assert ask(rig, "observe", "o2")["rc"] == 200
    assert ask(rig, "update", "u") == {"rc": 202, "reqId": "u"}
    await wait_for(lambda: firmware(rig)["updateStatus"] == 0 and firmware(rig)["state"] == 0)
    last = notified(rig)[2:]
    assert last[0] == {"updateStatus": 1}
    assert last[1]["state"] == 0 and last[1]["updateStatus"] == 0
    assert set(last[1]) == {"state", "updateStatus", "updatedDateTime"}  # all it changed
    assert len(last) == 2
    image, digest = record.read_text().split()  # noqa: ASYNC240 - a test's small read
    assert image == str(tmp_path / "firmware" / "fw+sensor+S1.img") and digest == SHA
    assert files(tmp_path) == []  # the image is deleted after the install
    assert ask(rig, "cancel", "c2")["rc"] == 200
    rig.agent.connected()  # the next manage carries the new version
    assert rig.of("mgmt/manage", S1)[-1].body["d"]["deviceInfo"]["fwVersion"] == "2.0"
    await rig.agent.close()


async def test_wrong_state_bad_parameters_and_not_supported(
    tmp_path: Path, ca: LocalCA, base: str, record: Path
) -> None:
    rig = firmware_rig(tmp_path, ca, installer(tmp_path, record))
    assert ask(rig, "update", "u0")["rc"] == 400  # state 0: nothing downloaded
    assert "not 2" in rig.answer("u0")["message"]
    assert ask(rig, "download", "d0")["rc"] == 400  # no uri
    write(rig, "w1", uri="https://h/x", verifier="abc")
    assert ask(rig, "download", "d1")["rc"] == 400
    assert "verifier" in rig.answer("d1")["message"]
    write(rig, "w2", uri="not a uri")
    assert ask(rig, "download", "d2")["rc"] == 400
    assert ask(rig, "download", "d3", S2)["rc"] == 501
    assert ask(rig, "update", "u3", S2)["rc"] == 501
    bad = {"fields": [{"field": FW, "value": {"state": 2}}]}
    rig.deliver(S1, "device/update", {"reqId": "w4", "d": bad})
    assert rig.answer("w4")["rc"] == 400
    write(rig, "w5", uri=f"{base}/fw.bin", verifier=SHA)
    assert ask(rig, "download", "d5")["rc"] == 202
    await wait_for(lambda: firmware(rig)["state"] == 2)
    assert ask(rig, "download", "d6")["rc"] == 400  # downloaded already: state 2
    assert "not 0" in rig.answer("d6")["message"]
    assert notified(rig) == []  # nothing observed: no notify
    await rig.agent.close()


async def test_requests_while_one_is_outstanding_are_refused(
    tmp_path: Path, ca: LocalCA, base: str, served: Served, record: Path
) -> None:
    rig = firmware_rig(tmp_path, ca, installer(tmp_path, record))
    served.announce["/slow.bin"] = 1000
    served.hold.clear()
    write(rig, "w", uri=f"{base}/slow.bin")
    assert ask(rig, "download", "d1")["rc"] == 202
    assert firmware(rig)["state"] == 1
    assert ask(rig, "download", "d2")["rc"] == 400
    assert "in progress" in rig.answer("d2")["message"]
    assert ask(rig, "update", "u")["rc"] == 400
    assert write(rig, "w2", uri=f"{base}/fw.bin")["rc"] == 409
    assert rig.agent.firmware.running == 1
    served.hold.set()
    await rig.agent.close()


async def test_failures_are_reported_with_their_update_status(
    tmp_path: Path, ca: LocalCA, base: str, record: Path
) -> None:
    rig = firmware_rig(tmp_path, ca, installer(tmp_path, record, exit_code=3))
    ask(rig, "observe", "o")
    cases = [
        ("ftp://localhost/fw.bin", "", 6),
        (f"{base}/fw.bin".replace("https", "http"), "", 6),
        (f"{base}/missing.bin", "", 6),
        (f"{base}/fw.bin", "0" * 64, 4),
    ]
    for number, (uri, verifier, status) in enumerate(cases):
        write(rig, f"w{number}", uri=uri, verifier=verifier)
        before = len(notified(rig))
        assert ask(rig, "download", f"d{number}")["rc"] == 202
        await wait_for(lambda: firmware(rig)["state"] == 0 and firmware(rig)["updateStatus"])
        assert notified(rig)[before:] == [{"state": 1}, {"state": 0, "updateStatus": status}]
        assert files(tmp_path) == []
    # The install program fails: updateStatus 2, the image deleted.
    write(rig, "w", uri=f"{base}/fw.bin", verifier=SHA)
    ask(rig, "download", "d")
    await wait_for(lambda: firmware(rig)["state"] == 2)
    before = len(notified(rig))
    assert ask(rig, "update", "u")["rc"] == 202
    await wait_for(lambda: firmware(rig)["state"] == 0)
    assert notified(rig)[before:] == [{"updateStatus": 1}, {"state": 0, "updateStatus": 2}]
    assert files(tmp_path) == []
    assert rig.of("mgmt/manage", S1)[-1].body["d"]["deviceInfo"]["fwVersion"] == "1.0"
    await rig.agent.close()


async def test_restart_mid_download_reports_connection_lost_and_resumes(
    tmp_path: Path, ca: LocalCA, base: str, served: Served, record: Path
) -> None:
    program = installer(tmp_path, record)
    rig = firmware_rig(tmp_path, ca, program)
    served.files["/cut.bin"] = IMAGE
    served.modes["/cut.bin"] = {"truncated"}  # every attempt stops half-way
    write(rig, "w", uri=f"{base}/cut.bin", verifier=SHA)
    ask(rig, "observe", "o")
    ask(rig, "download", "d")
    await wait_for(lambda: firmware(rig)["state"] == 0)
    assert notified(rig) == [{"state": 1}, {"state": 0, "updateStatus": 3}]
    assert files(tmp_path) == ["fw+sensor+S1.img.part", "fw+sensor+S1.img.part.json"]

    # A download under way when the daemon stops ...
    served.files["/held.bin"] = IMAGE
    served.announce["/held.bin"] = len(IMAGE)  # half of it, then the connection hangs
    served.hold.clear()
    write(rig, "w2", uri=f"{base}/held.bin", verifier=SHA)
    ask(rig, "download", "d2")
    await wait_for((tmp_path / "firmware" / "fw+sensor+S1.img.part").exists)
    await asyncio.sleep(0.2)
    closing = asyncio.ensure_future(rig.agent.close())
    await asyncio.sleep(0.05)  # the download is cancelled, its thread told to stop
    served.hold.set()
    await closing
    saved = orjson.loads((tmp_path / "dm.json").read_bytes())
    assert saved["devices"]["sensor/S1"]["values"][FW]["state"] == 1
    partial = (tmp_path / "firmware" / "fw+sensor+S1.img.part").stat().st_size
    assert partial == len(IMAGE) // 2

    # ... is reported after the next start's manage as state 0, updateStatus 3 ...
    again = firmware_rig(tmp_path, ca, program)
    assert firmware(again)["state"] == 0 and firmware(again)["updateStatus"] == 3
    assert notified(again) == [{"state": 0, "updateStatus": 3}]
    # ... and the next download of the same URI resumes with a range.
    del served.announce["/held.bin"]
    ask(again, "download", "d3")
    await wait_for(lambda: firmware(again)["state"] == 2)
    assert served.requests[-1] == ("/held.bin", f"bytes={partial}-")
    assert (tmp_path / "firmware" / "fw+sensor+S1.img").read_bytes() == IMAGE
    await again.agent.close()


class FakeRunner:
    """Stands in for the root helper's package install (not available in unit tests)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[DeviceIdentity, str | None]] = []
        self.error = error

    async def run(
        self,
        device: DeviceIdentity,
        action: ActionConfig | None,
        params: Mapping[str, str] | None = None,
        *,
        image: str | None = None,
    ) -> None:
        self.calls.append((device, image))
        if self.error is not None:
            raise self.error


def saved_gateway(tmp_path: Path, value: dict[str, Any], job: dict[str, Any]) -> None:
    document = {
        "format": 1,
        "devices": {"gw/GW1": {"values": {FW: value}, "observed": [FW], "job": job}},
        "managed": ["gw/GW1"],
    }
    (tmp_path / "dm.json").write_bytes(orjson.dumps(document))
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "fw+gw+GW1.deb").write_bytes(b"deb")


@pytest.mark.parametrize(
    ("version", "running_before", "status"),
    [(VERSION, "0.1", 0), ("99.0", "0.1", 5), ("", "0.1", 0), ("", VERSION, 5)],
)
async def test_gateway_package_install_is_settled_after_the_restart(
    tmp_path: Path, version: str, running_before: str, status: int
) -> None:
    value = {"version": version, "uri": "https://h/edged.deb", "state": 2, "updateStatus": 1}
    saved_gateway(tmp_path, value, {"from": running_before})
    rig = Rig(tmp_path, devices={}, auto={"notify": 200})
    rig.manage_all()
    got = firmware(rig, GW)
    assert (got["state"], got["updateStatus"]) == (0, status)
    sent = notified(rig, GW)
    assert len(sent) == 1 and sent[0]["updateStatus"] == status and sent[0]["state"] == 0
    assert files(tmp_path) == []
    await rig.agent.close()


async def test_gateway_package_install_waits_for_the_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path, devices={}, auto={"notify": 200})
    rig.manage_all()
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "fw+gw+GW1.deb").write_bytes(b"deb")
    value = {"state": 2, "updateStatus": 0, "version": "10.0"}
    rig.agent.state.attributes(GW).values[FW] = value
    fake = FakeRunner()
    rig.agent.firmware.runner = fake  # type: ignore[assignment]
    restarts: list[bool] = []
    rig.agent.firmware._restart = lambda: restarts.append(True)
    ask(rig, "observe", "o", GW)
    assert ask(rig, "update", "u", GW)["rc"] == 202
    await wait_for(lambda: bool(fake.calls))
    await settle()
    assert fake.calls == [(GW, str(tmp_path / "firmware" / "fw+gw+GW1.deb"))]
    assert restarts == [True]  # the daemon restarts to run the new package
    assert firmware(rig, GW)["updateStatus"] == 1  # complete only once 10.0 is running
    assert notified(rig, GW) == [{"updateStatus": 1}]
    assert rig.agent.state.attributes(GW).job == {"from": VERSION}
    version_file = tmp_path / "firmware" / "fw+gw+GW1.deb.version"  # checked by the root helper
    assert version_file.read_text() == "10.0\n"
    fake.error = ActionFailed("not edged's package")
    await rig.agent.close()


async def test_refused_package_is_unsupported_image(tmp_path: Path) -> None:
    rig = Rig(tmp_path, devices={}, auto={"notify": 200})
    rig.manage_all()
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "fw+gw+GW1.deb").write_bytes(b"deb")
    rig.agent.state.attributes(GW).values[FW] = {"state": 2, "updateStatus": 0}
    from edged.dm.actions import ActionBadRequest

    rig.agent.firmware.runner = FakeRunner(ActionBadRequest("not edged"))  # type: ignore[assignment]
    assert ask(rig, "update", "u", GW)["rc"] == 202
    await wait_for(lambda: firmware(rig, GW)["state"] == 0)
    assert firmware(rig, GW)["updateStatus"] == 5
    assert files(tmp_path) == []
    await rig.agent.close()


async def test_interrupted_program_install_is_update_status_2_after_restart(
    tmp_path: Path, ca: LocalCA, record: Path
) -> None:
    document = {
        "format": 1,
        "devices": {
            "sensor/S1": {
                "values": {FW: {"version": "2.0", "state": 2, "updateStatus": 1}},
                "observed": ["mgmt.firmware.state", "mgmt.firmware.updateStatus"],
                "job": {"from": VERSION},
            }
        },
        "managed": ["sensor/S1"],
    }
    (tmp_path / "dm.json").write_bytes(orjson.dumps(document))
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "fw+sensor+S1.img").write_bytes(IMAGE)
    rig = firmware_rig(tmp_path, ca, installer(tmp_path, record))
    assert firmware(rig)["state"] == 0 and firmware(rig)["updateStatus"] == 2
    # Observers of sub-fields get their own field, in the same notify.
    (sent,) = rig.of("notify", S1)
    assert sent.body["d"]["fields"] == [
        {"field": "mgmt.firmware.state", "value": 0},
        {"field": "mgmt.firmware.updateStatus", "value": 2},
    ]
    assert files(tmp_path) == []
    assert rig.agent.state.attributes(S1).job == {}
    assert rig.of("mgmt/manage", S1)[-1].body["d"]["deviceInfo"]["fwVersion"] == "1.0"
    await rig.agent.close()
