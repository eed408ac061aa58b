"""Plain-language explanations of MQTT refusals and server disconnects.

paho reports MQTT 3.1.1 CONNACK return codes as their MQTT 5 reason codes (4 becomes 134,
5 becomes 135, ...), so one table serves both protocol versions.
"""

from __future__ import annotations

from edged.uplink.connect import ConnectError, FailureKind

SESSION_TAKEN_OVER = 142

_AUTH = {134, 135, 138, 140}  # bad user name or password, not authorized, banned, bad auth method
_CLIENT_ID = {133}
_PROTOCOL = {132}
_BUSY = {136, 137, 151, 159}  # server unavailable, server busy, quota exceeded, rate exceeded


def refusal(code: int, name: str, client_id: str, endpoint: str) -> ConnectError:
    """What a CONNACK refusal with reason ``code`` (``name`` as paho spells it) means."""
    said = f"the broker {endpoint} refused the connection ({name}, code {code})"
    if code in _AUTH:
        return ConnectError(
            FailureKind.REFUSED_AUTH,
            f"{said}: it refused the gateway's token: check token_file / token_env, and that the"
            f" gateway {client_id} is registered with that token",
        )
    if code in _CLIENT_ID:
        return ConnectError(
            FailureKind.REFUSED_ID,
            f"{said}: it does not accept the client id {client_id}: check platform.org and the"
            " gateway type and id",
        )
    if code in _PROTOCOL:
        return ConnectError(
            FailureKind.REFUSED_PROTOCOL,
            f"{said}: it does not speak this MQTT version: check platform.mqtt_version",
        )
    if code in _BUSY:
        return ConnectError(FailureKind.REFUSED_BUSY, f"{said}: retrying later")
    return ConnectError(FailureKind.REFUSED_OTHER, said)


def takeover_message(client_id: str, evidence: str) -> str:
    """The operator-facing explanation of a suspected duplicate gateway."""
    return (
        f"another client is using client id {client_id} ({evidence}): check for a second"
        " gateway with the same identity; reconnecting slowly meanwhile"
    )
