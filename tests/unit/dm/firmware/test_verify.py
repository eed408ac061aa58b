"""The verifier: its length chooses SHA-256 or MD5; anything else is refused."""

from __future__ import annotations

import hashlib

import pytest

from edged.dm.firmware.verify import Verifier, parse_verifier

DATA = b"an image"


def test_length_chooses_the_algorithm() -> None:
    sha = hashlib.sha256(DATA).hexdigest()
    md5 = hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert parse_verifier(sha) == Verifier("sha256", sha)
    assert parse_verifier(md5.upper()) == Verifier("md5", md5)
    for text in (sha, md5.upper()):
        verifier = parse_verifier(text)
        assert verifier is not None
        digest = verifier.digest()
        digest.update(DATA)
        assert verifier.matches(digest)
        wrong = verifier.digest()
        wrong.update(DATA + b"!")
        assert not verifier.matches(wrong)


@pytest.mark.parametrize("empty", [None, ""])
def test_no_verifier_means_no_check(empty: object) -> None:
    assert parse_verifier(empty) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("ab" * 20, "40 characters"),
        ("a" * 63, "63 characters"),
        ("g" * 64, "not hex"),
        ("0x" + "a" * 30, "not hex"),
        (" " + "a" * 31, "not hex"),
        (12, "string"),
    ],
)
def test_malformed_verifiers(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_verifier(value)
