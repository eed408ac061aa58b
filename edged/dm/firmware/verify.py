"""``mgmt.firmware.verifier``: the digest a downloaded image must have (PROTOCOL.md 4.11).

The verifier's length chooses the algorithm: 64 hex digits are a SHA-256 digest, 32 an MD5
digest. MD5 is accepted only because the protocol allows it: it no longer protects against
a deliberately crafted image, so an operator who cares should send SHA-256 (and rely on the
verified HTTPS download). An empty or absent verifier means no check (the protocol makes it
optional). Any other length, or a character that is not a hex digit, is a bad request (400)
at the download request: nothing is fetched for a verifier that can never match.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from dataclasses import dataclass
from typing import Protocol

_HEX = frozenset(string.hexdigits)
_LENGTHS = {64: "sha256", 32: "md5"}


class Digest(Protocol):
    """The part of a :mod:`hashlib` object the download uses."""

    def update(self, data: bytes, /) -> None:
        """Add bytes."""

    def hexdigest(self) -> str:
        """The digest so far, as lower-case hex."""


@dataclass(frozen=True, slots=True)
class Verifier:
    """An expected digest: ``algorithm`` is ``sha256`` or ``md5``, ``expected`` lower-case hex."""

    algorithm: str
    expected: str

    def digest(self) -> Digest:
        """A fresh hashing object for this algorithm."""
        if self.algorithm == "md5":
            # Accepted only because PROTOCOL.md 4.11 allows it: an integrity check, not security.
            return hashlib.md5(usedforsecurity=False)
        return hashlib.sha256()

    def matches(self, digest: Digest) -> bool:
        """Whether the hashed bytes have the expected digest."""
        return hmac.compare_digest(digest.hexdigest(), self.expected)


def parse_verifier(value: object) -> Verifier | None:
    """The verifier of ``value``; None when there is none. Raises ValueError when malformed."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("the verifier must be a string of hex digits")
    algorithm = _LENGTHS.get(len(value))
    if algorithm is None:
        raise ValueError(
            f"the verifier has {len(value)} characters; "
            "64 (SHA-256) or 32 (MD5) hex digits expected"
        )
    if not set(value) <= _HEX:
        raise ValueError("the verifier has characters that are not hex digits")
    return Verifier(algorithm, value.lower())
