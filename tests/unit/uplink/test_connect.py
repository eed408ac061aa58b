"""Opening connections: error messages an operator can act on, and the connect thread."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

import pytest

from edged.netutil import free_port
from edged.uplink.connect import ConnectError, FailureKind, ThreadCall, open_connection, tls_context


def test_tls_context_requires_tls12_and_checks_names() -> None:
    context = tls_context(None)  # the system store
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_missing_or_bad_ca_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConnectError) as caught:
        tls_context(str(missing))
    assert caught.value.kind is FailureKind.CA_FILE
    assert str(missing) in str(caught.value)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConnectError) as caught:
        tls_context(str(garbage))
    assert caught.value.kind is FailureKind.CA_FILE
    assert str(garbage) in caught.value.message


def test_refused_port_says_so() -> None:
    port = free_port()
    with pytest.raises(ConnectError) as caught:
        open_connection("127.0.0.1", port, 2.0, tls=False, ca_file=None)
    assert caught.value.kind is FailureKind.UNREACHABLE
    assert f"127.0.0.1:{port} refused the connection" in caught.value.message


def test_plain_connection_gets_nodelay() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sock = open_connection("127.0.0.1", port, 2.0, tls=False, ca_file=None)
        assert isinstance(sock, socket.socket)
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_thread_call_delivers_results_and_errors() -> None:
    ok: ThreadCall[int] = ThreadCall(lambda: 42, name="t-ok", discard=lambda value: None)
    assert await ok.result == 42
    assert await ok.finished(1)

    def fail() -> int:
        raise ConnectError(FailureKind.UNREACHABLE, "nope")

    bad: ThreadCall[int] = ThreadCall(fail, name="t-bad", discard=lambda value: None)
    with pytest.raises(ConnectError, match="nope"):
        await bad.result
    assert await bad.finished(1)


async def test_thread_call_discards_what_nobody_awaits_any_more() -> None:
    release = threading.Event()
    discarded: list[str] = []

    def slow() -> str:
        release.wait(5)
        return "socket"

    call: ThreadCall[str] = ThreadCall(slow, name="t-slow", discard=discarded.append)
    call.result.cancel()  # the awaiting task was cancelled
    assert not await call.finished(0.05), "still blocked"
    release.set()
    assert await call.finished(2)
    await asyncio.sleep(0)
    assert discarded == ["socket"]


async def test_thread_call_abandoned_after_delivery_discards_once() -> None:
    discarded: list[str] = []
    call: ThreadCall[str] = ThreadCall(lambda: "socket", name="t-late", discard=discarded.append)
    assert await call.finished(2)
    await asyncio.sleep(0)
    call.abandon()
    call.abandon()
    assert discarded == ["socket"]
    taken: ThreadCall[str] = ThreadCall(lambda: "kept", name="t-taken", discard=discarded.append)
    await taken.finished(2)
    await asyncio.sleep(0)
    assert taken.take() == "kept"
    taken.abandon()
    assert discarded == ["socket"]
