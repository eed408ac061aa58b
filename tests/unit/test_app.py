"""Building the gateway: one adapter that cannot load does not stop the others."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edged import registry
from edged.app import Gateway
from edged.config import load_config_text
from edged.model import DeviceIdentity, DeviceState
from edged.netutil import free_port

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


async def test_a_restart_request_stops_in_order_and_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGED_APP_TEST_TOKEN", "t0ken-value")
    config = load_config_text(
        CONFIG.replace(
            "  token_env", f"  host: 127.0.0.1\n  port: {free_port()}\n  tls: false\n  token_env"
        )
        + f"storage: {{path: {tmp_path / 'outbox.sqlite'}}}\n"
        + f"control: {{socket: {tmp_path / 'c.sock'}}}\n"
    )
    gateway = Gateway(config)
    running = asyncio.create_task(gateway.run())
    await asyncio.sleep(0.3)
    assert gateway.restart_requested is False
    gateway.request_restart()
    await asyncio.wait_for(running, 20)
    assert getattr(gateway, "restart_requested") is True  # noqa: B009 - mypy narrowed it to False
    assert gateway.stuck_tasks == []
    await asyncio.get_running_loop().shutdown_default_executor()  # the state files' writer
