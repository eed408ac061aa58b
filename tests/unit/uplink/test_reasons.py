"""CONNACK refusals in plain words, for MQTT 3.1.1 return codes and MQTT 5 reason codes."""

from __future__ import annotations

import pytest
from paho.mqtt.client import convert_connack_rc_to_reason_code
from paho.mqtt.enums import ConnackCode

from edged.uplink.connect import FailureKind
from edged.uplink.reasons import refusal


@pytest.mark.parametrize(
    ("v311_code", "kind"),
    [
        (1, FailureKind.REFUSED_PROTOCOL),
        (2, FailureKind.REFUSED_ID),
        (3, FailureKind.REFUSED_BUSY),
        (4, FailureKind.REFUSED_AUTH),
        (5, FailureKind.REFUSED_AUTH),
    ],
)
def test_mqtt311_return_codes_via_paho(v311_code: int, kind: FailureKind) -> None:
    reason = convert_connack_rc_to_reason_code(ConnackCode(v311_code))  # what on_connect gets
    failure = refusal(reason.value, reason.getName(), "g:o:t:i", "host:8883")
    assert failure.kind is kind
    assert "host:8883" in failure.message


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (134, FailureKind.REFUSED_AUTH),
        (135, FailureKind.REFUSED_AUTH),
        (138, FailureKind.REFUSED_AUTH),
        (133, FailureKind.REFUSED_ID),
        (132, FailureKind.REFUSED_PROTOCOL),
        (137, FailureKind.REFUSED_BUSY),
        (159, FailureKind.REFUSED_BUSY),
        (157, FailureKind.REFUSED_OTHER),
    ],
)
def test_mqtt5_reason_codes(code: int, kind: FailureKind) -> None:
    assert refusal(code, "name", "g:o:t:i", "h:1").kind is kind


def test_auth_refusal_tells_what_to_check() -> None:
    message = refusal(135, "Not authorized", "g:o:t:i", "h:1").message
    assert "refused the gateway's token" in message
    assert "token_file" in message
    assert "g:o:t:i" in message
