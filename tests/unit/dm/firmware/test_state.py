"""The firmware state machine: transitions, refusals, what one step changes."""

from __future__ import annotations

import itertools

import pytest

from edged.dm.firmware import state as fs
from edged.dm.firmware.state import DOWNLOADED, DOWNLOADING, IDLE, Firmware, Refused, Status

READY = Firmware(version="2.0", name="fw", uri="https://h/fw", verifier="", state=IDLE)


def test_download_then_update_changes_one_step_at_a_time() -> None:
    steps = [READY]
    steps.append(fs.start_download(steps[-1]))
    steps.append(fs.downloaded(steps[-1]))
    steps.append(fs.start_install(steps[-1]))
    steps.append(fs.installed(steps[-1], "2026-01-01T00:00:00.000Z"))
    changed = [fs.changes(a, b) for a, b in itertools.pairwise(steps)]
    assert changed == [
        {"state": 1},
        {"state": 2},
        {"updateStatus": 1},
        {"state": 0, "updateStatus": 0, "updatedDateTime": "2026-01-01T00:00:00.000Z"},
    ]


def test_failures() -> None:
    downloading = fs.start_download(READY)
    for status in (Status.OUT_OF_MEMORY, Status.CONNECTION_LOST, Status.INVALID_URI):
        failed = fs.download_failed(downloading, status)
        assert fs.changes(downloading, failed) == {"state": 0, "updateStatus": int(status)}
    installing = fs.start_install(fs.downloaded(downloading))
    failed = fs.install_failed(installing, Status.UNSUPPORTED_IMAGE)
    assert fs.changes(installing, failed) == {"state": 0, "updateStatus": 5}
    # A new download after a failure resets updateStatus in the same step.
    again = fs.start_download(fs.download_failed(downloading, Status.VERIFICATION_FAILED))
    assert (again.state, again.update_status) == (DOWNLOADING, Status.SUCCESS)


def test_wrong_state_and_outstanding_requests_are_refused() -> None:
    with pytest.raises(Refused, match="not 2") as refused:
        fs.start_install(READY)
    assert refused.value.rc == 400
    downloaded = fs.downloaded(fs.start_download(READY))
    with pytest.raises(Refused, match="not 0"):
        fs.start_download(downloaded)
    for busy in (fs.start_download(READY), fs.start_install(downloaded)):
        for step in (fs.start_download, fs.start_install):
            with pytest.raises(Refused, match="in progress") as refused:
                step(busy)
            assert refused.value.rc == 400
        with pytest.raises(Refused) as refused:
            fs.platform_write(busy, {"version": "3"})
        assert refused.value.rc == 409


def test_platform_write() -> None:
    written = fs.platform_write(
        Firmware(update_status=Status.VERIFICATION_FAILED),
        {
            "version": "2",
            "uri": "https://h/x",
            "state": 0,
            "updateStatus": 0,
            "updatedDateTime": "",
        },
    )
    assert written == Firmware(version="2", uri="https://h/x")
    downloaded = Firmware(uri="https://h/x", state=DOWNLOADED)
    assert fs.platform_write(downloaded, {"name": "n"}).state == DOWNLOADED
    assert fs.platform_write(downloaded, {"uri": "https://h/y"}).state == IDLE  # stale image
    assert fs.platform_write(downloaded, {"state": 0}).state == IDLE
    bad: object
    for bad in (
        {"state": 1},
        {"state": True},
        {"updateStatus": 1},
        {"updateStatus": 7},
        {"version": 2},
        {"uri": "x" * 5000},
        [],
    ):
        with pytest.raises(Refused) as refused:
            fs.platform_write(downloaded, bad)
        assert refused.value.rc == 400


def test_stored_value_round_trip_and_garbage() -> None:
    value = fs.start_download(READY).value()
    assert Firmware.from_value(value) == fs.start_download(READY)
    assert Firmware.from_value({"state": 9, "updateStatus": "x", "version": 3}) == Firmware()
    assert Firmware.from_value(None) == Firmware()
    assert Firmware.from_value({"state": 0, "updateStatus": 0}).value()["uri"] == ""


def test_restart_ends_an_interrupted_download_as_connection_lost() -> None:
    interrupted = fs.restarted(fs.start_download(READY))
    assert (interrupted.state, interrupted.update_status) == (IDLE, Status.CONNECTION_LOST)
    downloaded = fs.downloaded(fs.start_download(READY))
    assert fs.restarted(downloaded) == downloaded
