"""The platform's application side: an MQTT application client for Watson IoT / Maximo IoT.

What an operator (and the platform emulator, which is built on it) needs of the application side
of the platform's MQTT API (PROTOCOL.md §1.4, §2.3, §4): the application identity and its client
ids, API-key authentication, Quickstart's restrictions checked locally, subscriptions to device
events, device status and application status, publishing commands and events, and DM requests.
``edged app`` (:mod:`edged.appcli`) is its command line. See ``docs/app.md``.

Not part of the daemon and independent of its code, like the emulator (see
``tests/unit/emulator/test_independence.py``).
"""

from edged.appclient.client import AppClient, AppConfig, Listener
from edged.appclient.connection import AppClientError, AuthRefused
from edged.appclient.identity import QUICKSTART, ApiKey, AppIdentity, IdentityError, org_from_key
from edged.appclient.messages import AppMessage
from edged.appclient.settings import ConnectionSettings, ProxySettings, parse_proxy_url

__all__ = [
    "QUICKSTART",
    "ApiKey",
    "AppClient",
    "AppClientError",
    "AppConfig",
    "AppIdentity",
    "AppMessage",
    "AuthRefused",
    "ConnectionSettings",
    "IdentityError",
    "Listener",
    "ProxySettings",
    "org_from_key",
    "parse_proxy_url",
]
