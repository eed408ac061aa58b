"""Fixtures for the emulator's integration tests: the emulator, a gateway and an app client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edged.emulator import PlatformEmulator
from tests.integration.emulator.helpers import ORG, RawClient, app_client, gateway_client
from tests.support.broker import APP_USER, Broker


@pytest.fixture
def emu(broker: Broker) -> Iterator[PlatformEmulator]:
    """A started emulator on the test broker (plain TCP), stopped after the test."""
    with PlatformEmulator(
        broker.host, broker.port, ORG, username=APP_USER, password=broker.app_password
    ) as emulator:
        yield emulator


@pytest.fixture
def gateway(broker: Broker) -> Iterator[RawClient]:
    """A raw paho client logged in as the gateway."""
    client = gateway_client(broker)
    yield client
    client.close()


@pytest.fixture
def app(broker: Broker) -> Iterator[RawClient]:
    """A raw paho client logged in as a second application."""
    client = app_client(broker)
    yield client
    client.close()
