"""Building the gateway: one adapter that cannot load does not stop the others."""

from __future__ import annotations

from typing import Any

import pytest

from edged import registry
from edged.app import Gateway
from edged.config import load_config_text
from edged.model import DeviceIdentity, DeviceState

CONFIG = """\
platform:
  org: abc123
  gateway: {type: gw, id: gw-1}
  token_env: EDGED_APP_TEST_TOKEN
devices:
  - {id: s1, type: sim, adapter: simulated, simulated: {values: {t: {}}}}
  - {id: tty1, type: meter, adapter: serial, serial: {port: /dev/ttyUSB7, parser: json}}
"""


async def test_an_adapter_that_cannot_load_marks_only_its_devices_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGED_APP_TEST_TOKEN", "t0ken-value")
    config = load_config_text(CONFIG)
    real = registry.adapter_factory

    def factory(name: str) -> Any:
        if name == "serial":
            raise ModuleNotFoundError("No module named 'serial'")
        return real(name)

    monkeypatch.setattr(registry, "adapter_factory", factory)
    gateway = Gateway(config)
    assert [adapter.name for adapter in gateway.adapters] == ["simulated:sim/s1"]
    down = gateway.bridge.states[DeviceIdentity("meter", "tty1")]
    assert down.state is DeviceState.DOWN
    assert "adapter serial unavailable: No module named 'serial'" in down.detail
    status = gateway.status()
    assert status["adapters"]["serial"]["failing"] is True
    assert status["devices"]["down"] == 1
