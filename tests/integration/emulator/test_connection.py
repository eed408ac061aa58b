"""Connecting: TLS, refusals, and staying subscribed across a broker restart."""

from __future__ import annotations

import pytest

from edged.emulator import EmulatorError, PlatformEmulator
from edged.netutil import free_port
from tests.integration.emulator.helpers import (
    BOILER_READING,
    ORG,
    RawClient,
    event_body,
    gateway_client,
)
from tests.support.broker import APP_USER, Broker

pytestmark = pytest.mark.integration


def test_tls_with_the_brokers_ca(broker: Broker, gateway: RawClient) -> None:
    with PlatformEmulator(
        "localhost",
        broker.tls_port,
        ORG,
        app_id="tls",
        username=APP_USER,
        password=broker.app_password,
        tls_ca_file=broker.ca.ca_file,
    ) as emulator:
        assert emulator.connected
        assert emulator.client_id == "a:testorg:tls"
        gateway.publish(BOILER_READING, event_body(t=1))
        emulator.wait_for_events()


def test_tls_with_the_wrong_ca_fails_to_start(broker: Broker) -> None:
    emulator = PlatformEmulator(
        "localhost",
        broker.tls_port,
        ORG,
        username=APP_USER,
        password=broker.app_password,
        tls_ca_file=broker.ca.other_ca_file,
    )
    with pytest.raises(EmulatorError, match="cannot connect"):
        emulator.start()
    assert not emulator.connected


def test_wrong_password_fails_to_start_without_leaking(broker: Broker) -> None:
    emulator = PlatformEmulator(broker.host, broker.port, ORG, username=APP_USER, password="wrong")
    with pytest.raises(EmulatorError, match="refused"):
        emulator.start()
    assert "wrong" not in repr(emulator.__dict__.get("_connect_error"))


def test_nothing_listening_fails_to_start() -> None:
    emulator = PlatformEmulator("127.0.0.1", free_port(), ORG, username=APP_USER, password="x")
    with pytest.raises(EmulatorError, match="cannot connect"):
        emulator.start()
    emulator.stop()  # idempotent


def test_start_twice_is_refused(emu: PlatformEmulator) -> None:
    with pytest.raises(EmulatorError, match="already started"):
        emu.start()


def test_resubscribes_after_a_broker_restart(broker: Broker, emu: PlatformEmulator) -> None:
    broker.restart()
    emu.wait_connected(timeout=10)

    gateway = gateway_client(broker)
    try:
        gateway.publish(BOILER_READING, event_body(t=1))
        [event] = emu.wait_for_events()
    finally:
        gateway.close()
    assert event.values == {"t": 1}
