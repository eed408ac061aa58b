"""Fixtures for the uplink's integration tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.uplink.helpers import AppClient
from tests.support.broker import Broker, LocalCA, TestCA


@pytest.fixture
def apps(broker: Broker) -> Iterator[Callable[..., AppClient]]:
    """Make connected platform-side clients; all are disconnected after the test."""
    made: list[AppClient] = []

    def make(**kwargs: Any) -> AppClient:
        target = kwargs.pop("target", broker)
        client = AppClient(target, **kwargs)
        made.append(client)
        return client.connect()

    yield make
    for client in made:
        client.close()


@pytest.fixture
def mismatched_broker(tmp_path: Path, test_ca: TestCA) -> Iterator[Broker]:
    """A broker whose certificate (signed by the test CA) names only ``elsewhere.invalid``."""
    directory = tmp_path / "mismatch"
    directory.mkdir()
    ca_key = test_ca.ca_file.with_name("ca.key")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=elsewhere.invalid",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (directory / "san.ext").write_text(
        "subjectAltName=DNS:elsewhere.invalid\nextendedKeyUsage=serverAuth\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        str(test_ca.ca_file),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-CAserial",
        str(directory / "ca.srl"),
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )
    ca = LocalCA(
        test_ca.ca_file, directory / "server.crt", directory / "server.key", test_ca.other_ca_file
    )
    instance = Broker(workdir=tmp_path / "mismatch-broker", ca=ca)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
