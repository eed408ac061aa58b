"""Fixtures: logind and systemd's manager mocked on a private system bus the client points at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.privileged.mockbus import MockBus, running

pytestmark = pytest.mark.integration


@pytest.fixture
def logind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MockBus]:
    """A mock logind whose ``Reboot(b)`` records the call and does nothing."""
    with running(
        tmp_path / "bus",
        "org.freedesktop.login1",
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
    ) as bus:
        bus.control.AddMethod("org.freedesktop.login1.Manager", "Reboot", "b", "", "")
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MockBus]:
    """A mock systemd manager; each test adds the ``StartUnit`` it needs."""
    with running(
        tmp_path / "bus",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
    ) as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus
