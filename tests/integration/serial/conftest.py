"""Fixtures of the serial adapter's integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.serial.instruments import PtyPair


@pytest.fixture
def pty() -> Iterator[PtyPair]:
    """A raw pty pair, closed after the test."""
    pair = PtyPair()
    try:
        yield pair
    finally:
        pair.close()
