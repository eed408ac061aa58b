"""Who an application is on the platform, and what the platform would refuse it (PROTOCOL.md §1.4,
§1.9, §5.1).

Everything here is checked locally, before connecting, so that a mistake is one clear error
rather than a refused connection or, worse, a disconnect in the middle of a session (the platform
disconnects an application that publishes or subscribes where it may not).

Client ids:

=================================  ==========================================  ===============
client id                          what                                        session
=================================  ==========================================  ===============
``a:<org>:<appId>``                a standalone application                    clean, or durable
``A:<org>:<appId>``                a member of a scalable application; every   clean (the platform
                                   member uses the same id and the platform    requires non-durable
                                   shares the subscriptions between them       for this form)
``A:<org>:<appId>:<instanceId>``   a member of a mixed-durability scalable     clean or durable
                                   application
=================================  ==========================================  ===============
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edged.appclient import grammar

QUICKSTART = "quickstart"
"""The organization id of the platform's unauthenticated sandbox (§1.9)."""


class IdentityError(ValueError):
    """An application identity, credential or request the platform would refuse."""


def check_id(what: str, value: str) -> str:
    """Return ``value`` if it can be an appId or instanceId (§1.4), else raise saying why.

    Raises:
        IdentityError: empty, over 36 characters, or a character outside ``A-Za-z0-9-_.``.
    """
    if not value:
        raise IdentityError(f"{what} must not be empty")
    if len(value) > grammar.MAX_ID_LENGTH:
        raise IdentityError(
            f"{what} {value[:40]!r}...: at most {grammar.MAX_ID_LENGTH} characters "
            f"(it has {len(value)})"
        )
    bad = sorted(set(value) - grammar.ID_CHARACTERS)
    if bad:
        shown = " ".join(repr(char) for char in bad[:5])
        raise IdentityError(
            f"{what} {value!r}: only letters, digits, '-', '_' and '.' are allowed (found {shown})"
        )
    return value


def org_from_key(key: str) -> str:
    """The organization an API key belongs to: ``a-<org>-<rest>`` (§5.1).

    Raises:
        IdentityError: the key is not of that form (then the org must be given).
    """
    parts = key.split("-", 2)
    if len(parts) != 3 or parts[0] != "a" or not parts[2] or not grammar.is_valid_id(parts[1]):
        raise IdentityError(
            "the API key does not look like a-<org>-<key>, so the org cannot be taken from it; "
            "give the org"
        )
    return parts[1]


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """An application's identity: its organization, appId and the client-id form.

    Args:
        org: Organization id.
        app_id: Application id (at most 36 of ``A-Za-z0-9-_.``).
        shared: A scalable application: client id ``A:<org>:<appId>``.
        instance_id: With ``shared``, a member of a mixed-durability scalable application:
            ``A:<org>:<appId>:<instanceId>``.
        durable: Keep the session (and its queued messages) across disconnects. Refused for
            the non-durable shared form ``A:<org>:<appId>``.

    Raises:
        IdentityError: an invalid id, an instanceId without ``shared``, a durable
            ``A:<org>:<appId>``, or a scalable application on Quickstart.
    """

    org: str
    app_id: str
    shared: bool = False
    instance_id: str | None = None
    durable: bool = False

    def __post_init__(self) -> None:
        if not grammar.is_valid_id(self.org):
            raise IdentityError(f"org {self.org!r} is not a valid organization id")
        check_id("appId", self.app_id)
        if self.instance_id is not None:
            check_id("instanceId", self.instance_id)
            if not self.shared:
                raise IdentityError("an instanceId is for a scalable (shared) application only")
        if self.shared and self.instance_id is None and self.durable:
            raise IdentityError(
                "a scalable application A:<org>:<appId> is non-durable: the platform requires "
                "a clean session; give an instanceId for a durable member"
            )
        if self.shared and self.is_quickstart:
            raise IdentityError("Quickstart has no scalable applications")

    @property
    def is_quickstart(self) -> bool:
        """True on the Quickstart organization (see :func:`check_quickstart`)."""
        return self.org == QUICKSTART

    @property
    def client_id(self) -> str:
        """The MQTT client id of this form (see the module's table)."""
        if self.shared:
            return grammar.scalable_client_id(self.org, self.app_id, self.instance_id)
        return grammar.application_client_id(self.org, self.app_id)

    @property
    def clean_session(self) -> bool:
        """The MQTT clean-session flag this identity connects with."""
        return not self.durable


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key (the MQTT username) and its token (the password; never shown)."""

    key: str
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.key:
            raise IdentityError("the API key is empty")
        if not self.token:
            raise IdentityError("the API token is empty")


def check_quickstart(
    org: str,
    *,
    tls: bool = False,
    command: bool = False,
    dm: bool = False,
    ids: tuple[str, ...] = (),
) -> None:
    """Refuse locally what Quickstart refuses (§1.9); nothing is refused for other orgs.

    Args:
        org: The organization.
        tls: A TLS connection is wanted.
        command: A command is to be published or subscribed to.
        dm: A device-management request is to be sent.
        ids: typeIds, deviceIds or appIds of a subscription or topic: no ``+`` wildcard there.

    Raises:
        IdentityError: saying which restriction applies.
    """
    if org != QUICKSTART:
        return
    if tls:
        raise IdentityError("Quickstart does not offer TLS: connect without it (port 1883)")
    if command:
        raise IdentityError("Quickstart applications cannot publish or subscribe to commands")
    if dm:
        raise IdentityError("Quickstart has no device management")
    if any("+" in value for value in ids):
        raise IdentityError(
            "Quickstart applications cannot use the '+' wildcard for a type, device or appId: "
            "name them"
        )
