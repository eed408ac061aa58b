"""The one fixture of the adapter contract suite: a factory of rigs, per adapter kind."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.contract.rigs import BUILDERS, Absent, Env, Rig, RigFactory, params


@pytest.fixture(params=params())
async def make_rig(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RigFactory]:
    """A factory building one adapter kind (the parameter) plus whatever counterpart it needs.

    Everything a factory call started (ptys, servers, the BlueZ mock) is torn down after the
    test, in reverse order. Tests narrow the kinds with ``parametrize(..., indirect=True)``.
    """
    kind: str = request.param
    build = BUILDERS[kind]
    # pymodbus logs every dropped connection and refused frame; the adapter's own logs say it.
    library = logging.getLogger("pymodbus")
    level = library.level
    library.setLevel(logging.CRITICAL)
    try:
        async with contextlib.AsyncExitStack() as stack:
            env = Env(stack, tmp_path, monkeypatch)

            async def factory(absent: Absent = "none") -> Rig:
                return await build(env, absent)

            yield factory
    finally:
        library.setLevel(level)
