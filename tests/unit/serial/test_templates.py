"""Command templates: placeholders filled from the payload, never able to inject extra commands."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.adapters.serial.config import placeholders
from edged.adapters.serial.templates import Template
from edged.errors import CommandRejected

pytestmark = pytest.mark.serial


def test_text_template_with_format_specs() -> None:
    template = Template("SP {value:.1f} {unit}\r\n", hex_bytes=False, encoding="utf-8")
    assert template.names == ("value", "unit")
    assert template.render({"value": 21.46, "unit": "C", "reqId": "x"}) == b"SP 21.5 C\r\n"


def test_template_without_placeholders_ignores_the_payload() -> None:
    template = Template("TARE\r\n", hex_bytes=False, encoding="ascii")
    assert template.render(None) == b"TARE\r\n"
    assert template.render("anything") == b"TARE\r\n"


def test_hex_template() -> None:
    template = Template("02 {addr:02X} 03", hex_bytes=True, encoding="utf-8")
    assert template.render({"addr": 26}) == b"\x02\x1a\x03"
    with pytest.raises(CommandRejected, match="not hex"):
        Template("02 {addr} 03", hex_bytes=True, encoding="utf-8").render({"addr": "zz"})


def test_literal_braces() -> None:
    assert Template("{{}}{a}", hex_bytes=False, encoding="utf-8").render({"a": 1}) == b"{}1"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "needs a JSON object"),
        ([1], "needs a JSON object"),
        ({}, "missing value"),
        ({"value": "1\r\nRESET"}, "control characters"),
        ({"value": {"a": 1}}, "number, string or boolean"),
        ({"value": "abc"}, "cannot format"),  # .1f of a string
    ],
)
def test_bad_payloads_are_rejected(payload: Any, message: str) -> None:
    template = Template("SP {value:.1f}\r\n", hex_bytes=False, encoding="utf-8")
    with pytest.raises(CommandRejected, match=message):
        template.render(payload)


def test_unencodable_text_is_rejected() -> None:
    template = Template("{name}", hex_bytes=False, encoding="ascii")
    with pytest.raises(CommandRejected, match="encoded"):
        template.render({"name": "café"})


@pytest.mark.parametrize(
    "text",
    ["{a.b}", "{a[0]}", "{0}", "{}", "{a!r}", "{a:{b}}", "{", "}"],
)
def test_unsafe_or_malformed_templates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        placeholders(text)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans()))
def test_rendered_text_never_contains_more_control_characters_than_the_template(value: Any) -> None:
    template = Template("SET {value}\r\n", hex_bytes=False, encoding="utf-8")
    try:
        data = template.render({"value": value})
    except CommandRejected:
        return
    assert data.count(b"\r") == 1
    assert data.count(b"\n") == 1
    assert data.endswith(b"\r\n")
