"""Fixtures for the firmware tests: a test CA for the loopback HTTPS image server."""

from __future__ import annotations

import pytest

from edged.devbroker import LocalCA


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    """A CA, a server certificate for localhost signed by it, and an unrelated CA."""
    return LocalCA.create(tmp_path_factory.mktemp("firmware-ca"))
