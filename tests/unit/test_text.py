"""Outside-supplied text in logs: one line, escaped, bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edged.text import safe


def test_newlines_and_control_characters_are_escaped() -> None:
    assert safe("ok\nERROR edged.uplink: FAKE\r\x1b[31m\x00") == (
        "ok\\nERROR edged.uplink: FAKE\\r\\x1b[31m\\x00"
    )


def test_backslashes_are_escaped_so_an_escape_cannot_be_forged() -> None:
    assert safe("a\\nb") == "a\\\\nb"


def test_long_text_is_cut_and_says_how_much_was_left_out() -> None:
    assert safe("x" * 1_000_000, limit=10) == "xxxxxxxxxx...(+999990 chars)"


def test_non_strings_are_shown_as_text() -> None:
    assert safe(42) == "42"
    assert safe(None) == "None"


def test_plain_text_is_unchanged() -> None:
    assert safe("device type is not valid (id: pump-7)") == "device type is not valid (id: pump-7)"


@given(st.text(max_size=500))
def test_any_text_becomes_one_printable_bounded_line(text: str) -> None:
    shown = safe(text, limit=50)
    assert shown.isprintable()
    assert len(shown) <= 50 * 10 + 30  # an escape is at most 10 characters
