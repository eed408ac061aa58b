"""Uplink settings for tests and benchmarks: plain TCP on loopback, short timings."""

from __future__ import annotations

from edged.config import Secret
from edged.uplink import UplinkSettings
from tests.support.broker import GATEWAY_USER

CLIENT_ID = "g:testorg:test-gw:gw-0001"


def settings_for_port(port: int, token: str = "token-for-tests") -> UplinkSettings:
    """Plain TCP to ``127.0.0.1:port`` with short timings suited to tests."""
    return UplinkSettings(
        client_id=CLIENT_ID,
        host="127.0.0.1",
        port=port,
        username=GATEWAY_USER,
        password=Secret(token),
        tls=False,
        ca_file=None,
        mqtt_version="3.1.1",
        persistent_session=True,
        session_expiry=3600,
        keepalive=30,
        connect_timeout=3,
        reconnect_initial=0.05,
        reconnect_max=0.4,
        refused_initial=0.1,
        refused_max=0.4,
        max_inflight=50,
        stable_after=2.0,
    )
