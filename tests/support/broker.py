"""The test broker: a real mosquitto (see :mod:`edged.devbroker`)."""

from edged.devbroker import APP_USER, GATEWAY_USER, Broker, LocalCA

TestCA = LocalCA

__all__ = ["APP_USER", "GATEWAY_USER", "Broker", "LocalCA", "TestCA"]
