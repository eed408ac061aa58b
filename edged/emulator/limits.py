"""The platform's limits on what a gateway publishes (PROTOCOL.md §2.2), for the emulator alone.

Written from the protocol, not taken from the gateway (``edged.codec``), for the same reason as
:mod:`edged.emulator.grammar`: the oracle must not share the gateway's mistakes.
"""

from __future__ import annotations

MAX_PAYLOAD = 131072
"""Bytes: a larger message is rejected and its sender disconnected (close code 287)."""

MAX_GATEWAY_QOS = 1
"""A managed gateway publishes at QoS 0 or 1 (DM requests and answers travel at QoS 1)."""

RETAIN_ALLOWED = False
"""Organizations may not publish retained messages: the platform handles one as if the flag were
not set, so a gateway setting it expects something that will not happen."""
