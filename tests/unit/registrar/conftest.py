"""Fixtures of the registrar's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.registrar.fakes import FakeTime, Harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(FakeTime(), tmp_path / "registered.json")
    yield made
    await made.flush()
