"""Firmware URIs: 400 when unparsable, updateStatus 6 for a scheme not fetched, no secrets."""

from __future__ import annotations

import pytest

from edged.dm.firmware.uri import parse_uri, redact, scheme_problem


def test_parsed_parts() -> None:
    uri = parse_uri("https://me:p%40ss@fw.example.com:8443/a/b.deb?sig=xyz")
    assert (uri.scheme, uri.host, uri.port) == ("https", "fw.example.com", 8443)
    assert uri.target == "/a/b.deb?sig=xyz"
    assert (uri.username, uri.password) == ("me", "p@ss")
    assert str(uri) == "https://fw.example.com:8443/a/b.deb?..."
    assert parse_uri("HTTPS://h").target == "/"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        5,
        "no-scheme/path",
        "https:///path",
        "https://h:99999/",
        "https://h/a b",
        "x" * 5000,
    ],
)
def test_unparsable_is_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match=r"mgmt\.firmware\.uri"):
        parse_uri(value)


def test_schemes() -> None:
    assert scheme_problem(parse_uri("https://h/x"), allow_http=False) is None
    assert scheme_problem(parse_uri("http://h/x"), allow_http=True) is None
    assert "allow_http" in (scheme_problem(parse_uri("http://h/x"), allow_http=False) or "")
    for text in ("ftp://h/x", "file:///etc/passwd", "data:abc"):
        assert "not supported" in (scheme_problem(parse_uri(text), allow_http=True) or "")


def test_redact_never_shows_credentials_or_query() -> None:
    shown = redact("https://user:secret@[::1]:8443/fw.bin?token=abc#frag")
    assert shown == "https://[::1]:8443/fw.bin?..."
    assert redact("https://h:bad/x") == "(unparsable URI)"
