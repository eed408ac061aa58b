"""A reload's new device list: added devices are registered as usual, removed ones keep going."""

from __future__ import annotations

import pytest

from edged.model import DeviceIdentity
from tests.unit.registrar.fakes import Harness, delivery, settle


async def test_added_devices_register_and_removed_ones_still_deliver(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = harness.make(["t/a", "t/b"], confirm_after=1.0)
    assert not registrar.is_held("t/a")  # admitted: its probe may go
    probe = registrar.track("t/a", done := delivery())
    done.set_result(None)
    await settle()
    harness.time.advance(1.0)
    assert probe.done() and registrar.counts()["registered"] == 1

    registrar.set_devices([DeviceIdentity("t", "b"), DeviceIdentity("t", "c")])
    # t/a is no longer configured, but what the outbox holds of it still goes, unheld
    assert not registrar.is_held("t/a")
    assert registrar.counts()["registered"] == 1
    # t/c is configured: admitted like any new device, not taken for a stranger
    assert not registrar.is_held("t/c")
    assert registrar.counts()["pending"] == 1
    assert "not configured" not in caplog.text
    registrar.close()
    await harness.flush()
    # the registered set on disk names configured devices only
    assert '"t/a"' not in harness.path.read_text()
