"""Application identities: every client-id form, session flags, validation, Quickstart."""

from __future__ import annotations

import pytest

from edged.appclient import ApiKey, AppIdentity, IdentityError, org_from_key
from edged.appclient.identity import check_id, check_quickstart


def test_every_client_id_form_and_its_session_flag() -> None:
    standalone = AppIdentity("org123", "watch")
    assert (standalone.client_id, standalone.clean_session) == ("a:org123:watch", True)
    assert AppIdentity("org123", "watch", durable=True).clean_session is False
    shared = AppIdentity("org123", "fleet", shared=True)
    assert (shared.client_id, shared.clean_session) == ("A:org123:fleet", True)
    member = AppIdentity("org123", "fleet", shared=True, instance_id="n-1.b_2")
    assert member.client_id == "A:org123:fleet:n-1.b_2"
    durable_member = AppIdentity("org123", "fleet", shared=True, instance_id="n1", durable=True)
    assert durable_member.clean_session is False


def test_a_non_durable_shared_application_cannot_be_durable() -> None:
    with pytest.raises(IdentityError, match=r"non-durable: the platform requires a clean session"):
        AppIdentity("org123", "fleet", shared=True, durable=True)


def test_an_instance_id_needs_a_shared_application() -> None:
    with pytest.raises(IdentityError, match="instanceId is for a scalable"):
        AppIdentity("org123", "fleet", instance_id="n1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "appId must not be empty"),
        ("a" * 37, r"at most 36 characters \(it has 37\)"),
        ("my app", r"only letters, digits, '-', '_' and '.' are allowed \(found ' '\)"),
        ("a:b", r"\(found ':'\)"),
        ("a+", r"\(found '\+'\)"),
        ("été", r"\(found 'é'\)"),
    ],
)
def test_invalid_app_ids_are_refused_saying_why(value: str, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        AppIdentity("org123", value)


def test_36_characters_of_every_allowed_kind_are_fine() -> None:
    value = "Az09-_." + "x" * 29
    assert check_id("appId", value) == value
    AppIdentity("org123", value, shared=True, instance_id=value)


def test_invalid_instance_ids_are_refused() -> None:
    with pytest.raises(IdentityError, match="instanceId 'n/1'"):
        AppIdentity("org123", "fleet", shared=True, instance_id="n/1")


def test_an_invalid_org_is_refused() -> None:
    with pytest.raises(IdentityError, match="org 'a:b'"):
        AppIdentity("a:b", "watch")


def test_the_org_comes_from_the_api_key() -> None:
    assert org_from_key("a-org123-a84ps90Ajs") == "org123"
    assert org_from_key("a-org123-with-dashes") == "org123"
    for key in ("use-token-auth", "a-org123", "g-org123-x", "a--x", "a-org123-"):
        with pytest.raises(IdentityError, match="does not look like a-<org>-<key>"):
            org_from_key(key)


def test_the_token_is_never_in_a_repr() -> None:
    key = ApiKey("a-org123-k", "s3cret-token")
    assert "s3cret" not in repr(key)
    with pytest.raises(IdentityError, match="token is empty"):
        ApiKey("a-org123-k", "")


def test_quickstart_restrictions() -> None:
    with pytest.raises(IdentityError, match="no scalable applications"):
        AppIdentity("quickstart", "fleet", shared=True)
    with pytest.raises(IdentityError, match="does not offer TLS"):
        check_quickstart("quickstart", tls=True)
    with pytest.raises(IdentityError, match="cannot publish or subscribe to commands"):
        check_quickstart("quickstart", command=True)
    with pytest.raises(IdentityError, match="no device management"):
        check_quickstart("quickstart", dm=True)
    with pytest.raises(IdentityError, match="'\\+' wildcard"):
        check_quickstart("quickstart", ids=("+", "d1"))
    check_quickstart("quickstart", ids=("sensor", "d1"))
    # None of it applies elsewhere.
    check_quickstart("org123", tls=True, command=True, dm=True, ids=("+", "+"))
