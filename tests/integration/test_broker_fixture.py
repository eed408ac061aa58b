"""The test broker itself: token auth and the ACL behave like the platform's rules."""

from __future__ import annotations

import socket
import ssl
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import APP_USER, GATEWAY_USER, Broker


def _connect_rc(broker: Broker, username: str, password: str, *, tls: bool = False) -> int:
    done = threading.Event()
    result: list[int] = []

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        result.append(int(getattr(rc, "value", rc)))  # type: ignore[call-overload]
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe")
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    if tls:
        client.tls_set(ca_certs=str(broker.ca.ca_file), cert_reqs=ssl.CERT_REQUIRED)
    client.connect("localhost" if tls else broker.host, broker.tls_port if tls else broker.port)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return result[0]


def test_token_auth_accepts_right_and_refuses_wrong_token(broker: Broker) -> None:
    assert _connect_rc(broker, GATEWAY_USER, broker.gateway_token) == 0
    assert _connect_rc(broker, APP_USER, broker.app_password, tls=True) == 0
    assert _connect_rc(broker, GATEWAY_USER, "wrong") != 0


def test_certificates_pass_strict_verification(broker: Broker) -> None:
    """Python 3.13 (Debian 13) verifies with VERIFY_X509_STRICT by default; 3.11 does not."""
    context = ssl.create_default_context(cafile=str(broker.ca.ca_file))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    with (
        socket.create_connection((broker.host, broker.tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
