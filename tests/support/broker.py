"""The test broker: a real mosquitto (see :mod:`edged.devbroker`).

:class:`WsBroker` adds MQTT over WebSockets listeners (plain ``ws`` and ``wss`` with the same
certificate as the TLS listener) to the usual plain and TLS ones. Mosquitto accepts any request
path on them (``/mqtt`` or anything else). Mosquitto 2.0 needs at least one ordinary listener
besides its websockets ones, which :class:`Broker` always has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edged.devbroker import APP_USER, GATEWAY_USER, Broker, LocalCA
from edged.netutil import free_port, wait_for_port

TestCA = LocalCA


@dataclass
class WsBroker(Broker):
    """A :class:`Broker` with ``ws`` on :attr:`ws_port` and ``wss`` on :attr:`wss_port`."""

    ws_port: int = field(default_factory=free_port)
    wss_port: int = field(default_factory=free_port)

    def _write_files(self) -> Path:
        conf = super()._write_files()
        lines = [
            f"listener {self.ws_port} 127.0.0.1",
            "protocol websockets",
            f"listener {self.wss_port} 127.0.0.1",
            "protocol websockets",
            f"cafile {self.ca.ca_file}",
            f"certfile {self.ca.cert_file}",
            f"keyfile {self.ca.key_file}",
            "require_certificate false",
        ]
        with conf.open("a") as out:
            out.write("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        """Start (or restart) and wait until the websockets listeners accept connections too."""
        super().start()
        for port in (self.ws_port, self.wss_port):
            wait_for_port(port)


__all__ = ["APP_USER", "GATEWAY_USER", "Broker", "LocalCA", "TestCA", "WsBroker"]
