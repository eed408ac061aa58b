"""Through firewalls end to end: the daemon as a process over WebSockets and through an HTTP
CONNECT proxy, watched by ``edged app watch`` the same way (issue 14, item 4)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.appclient.helpers import app_env, read_until, start_app
from tests.support.broker import LocalCA, WsBroker
from tests.support.daemon import running_daemon, write_config
from tests.support.proxy import LocalProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def ws_broker(tmp_path: Path) -> Iterator[WsBroker]:
    instance = WsBroker(workdir=tmp_path / "ws-broker", ca=LocalCA.create(tmp_path / "ca"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _device() -> dict[str, Any]:
    return {
        "id": "fw-1",
        "type": "sim",
        "adapter": "simulated",
        "simulated": {"interval": 0.1, "values": {"n": {"kind": "counter"}}},
    }


@pytest.mark.parametrize("through", ["wss", "proxy"])
def test_the_daemon_publishes_through_a_firewall_and_an_app_watches_the_same_way(
    tmp_path: Path, ws_broker: WsBroker, through: str
) -> None:
    proxy = LocalProxy("http").start()
    try:
        platform: dict[str, Any]
        if through == "wss":  # MQTT over WebSockets with TLS, as on port 443
            platform = {
                "transport": "websockets",
                "host": "localhost",
                "port": ws_broker.wss_port,
                "tls": True,
                "ca_file": str(ws_broker.ca.ca_file),
            }
        else:  # plain MQTT through an HTTP CONNECT proxy
            platform = {"proxy": proxy.url}
        config = write_config(tmp_path / "gw", ws_broker, [_device()], platform=platform)
        if through == "wss":  # the application over WebSockets
            extra = {"EDGED_APP_TRANSPORT": "websockets", "EDGED_APP_PORT": str(ws_broker.ws_port)}
        else:  # the application through the proxy too
            extra = {"EDGED_APP_PROXY": proxy.url}
        env = app_env(ws_broker, "fw-watch", tmp_path, **extra)
        watch = start_app("watch", "--type", "sim", "--json", env=env)
        try:
            with running_daemon(config):
                lines: list[str] = []
                read_until(watch.stdout, '"fw-1"', lines)
        finally:
            watch.send_signal(signal.SIGINT)
            watch.communicate(timeout=10)  # waits and closes its pipes
    finally:
        proxy.stop()
    assert any('"fw-1"' in line for line in lines), lines
    if through == "proxy":  # both tunnels went through it
        assert proxy.targets.count((ws_broker.host, ws_broker.port)) >= 2, proxy.targets
