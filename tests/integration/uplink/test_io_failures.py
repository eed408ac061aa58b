"""The uplink's I/O failure paths against a real mosquitto, with faults injected on real sockets.

A :class:`FaultProxy` sits between the uplink and the broker and misbehaves on request (garbage
bytes, a reset, a half-close, a broker that stops answering, a client whose writes back up,
many packets in one TLS record). Where paho has to fail in a way no broker can provoke, one
paho method is made to raise once. Every case checks what the gateway owes: the connection is
closed, the failure is logged in one line, the session reconnects and keeps delivering, and no
QoS 1 message handed to it is lost (in-flight ones are resent; duplicates are allowed).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import select
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest

from edged.uplink import Uplink, UplinkSettings
from edged.uplink.driver import MISC_INTERVAL
from tests.integration.uplink.faultproxy import Down, FaultProxy, Link, packet_types
from tests.integration.uplink.helpers import (
    COMMANDS,
    EVENTS,
    AppClient,
    Inbox,
    command_topic,
    event_topic,
    eventually,
    running,
    settings_for,
)
from tests.support.broker import Broker

pytestmark = pytest.mark.integration

PUBLISH = 3
PINGREQ = b"\xc0\x00"


@pytest.fixture
async def proxy(broker: Broker) -> AsyncIterator[FaultProxy]:
    """A fault-injecting proxy in front of the broker's plain listener."""
    instance = await FaultProxy(broker.port).start()
    try:
        yield instance
    finally:
        await instance.close()


def _logged_once(caplog: pytest.LogCaptureFixture, since: int, reason: str = "") -> None:
    """After record number ``since``, edged logged one WARNING-or-worse line: the loss, with
    ``reason`` and the backoff delay."""
    loud = [
        r.getMessage()
        for r in caplog.records[since:]
        if r.name.startswith("edged") and r.levelno >= logging.WARNING
    ]
    assert len(loud) == 1, loud
    assert "lost the connection" in loud[0], loud
    assert reason in loud[0], loud
    assert "; reconnecting in " in loud[0], loud


def _loop_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What asyncio reported: exceptions escaping callbacks, tasks whose exception nobody read."""
    gc.collect()  # "Task exception was never retrieved" is reported when the task is collected
    return [r.getMessage() for r in caplog.records if r.name == "asyncio"]


async def _publish(uplink: Uplink, payloads: Iterable[bytes]) -> None:
    """Hand ``payloads`` to the uplink concurrently (QoS 1); they wait while it is down."""
    await asyncio.gather(*(uplink.publish(event_topic(), payload, 1) for payload in payloads))


async def _all_delivered(uplink: Uplink, app: AppClient, expected: set[bytes]) -> None:
    assert await uplink.flush(10), "QoS 1 messages still unacknowledged"
    await eventually(
        lambda: expected <= set(app.payloads()), within=10, what=f"{len(expected)} messages"
    )
    assert set(app.payloads()) == expected


def _socket(uplink: Uplink) -> socket.socket:
    """The uplink's current socket (to check later that it was closed)."""
    sock = uplink._driver.sock
    assert sock is not None
    return sock  # type: ignore[no-any-return]


async def _connected_again(uplink: Uplink, proxy: FaultProxy, broken: socket.socket) -> None:
    await eventually(
        lambda: uplink.connected and uplink.stats.reconnects == 1, within=5, what="reconnect"
    )
    assert len(proxy.links) == 2, "one reconnect, through the proxy"
    assert broken.fileno() == -1, "the uplink closed the broken connection"


async def _subscribed(uplink: Uplink) -> None:
    await uplink.wait_connected()
    await eventually(lambda: uplink.stats.subscribed == 1, what="SUBACK")


# -- 1. faults the reader notices ------------------------------------------------------------


def _garbage(data: bytes) -> Callable[[Link], None]:
    return lambda link: link.inject(data)


READ_FAULTS: dict[str, Callable[[Link], None]] = {
    "unknown packet type": _garbage(b"\x00\x00"),
    "remaining length over four bytes": _garbage(b"\x30\xff\xff\xff\xff\x7f"),
    # paho 2.1 raises struct.error out of loop_read here (the driver's _fail path); 2.2 reports
    # a protocol error like for the others
    "PUBLISH shorter than its topic length": _garbage(b"\x30\x02\x00\x10"),
    "PUBACK without a packet id": _garbage(b"\x40\x00"),
    "a second CONNACK on the same connection": _garbage(b"\x20\x02\x00\x00"),
    "connection reset": Link.reset,
    "half-closed by the peer": Link.half_close,
}


@pytest.mark.parametrize("fault", READ_FAULTS, ids=list(READ_FAULTS))
async def test_a_broken_read_closes_logs_once_reconnects_and_loses_nothing(
    fault: str,
    broker: Broker,
    proxy: FaultProxy,
    apps: Callable[..., AppClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edged")
    app = apps()
    app.subscribe(EVENTS)
    inbox = Inbox()
    uplink = Uplink(settings_for(broker, port=proxy.port), inbox)
    uplink.set_subscriptions([(COMMANDS, 1)])
    before = [f"before-{i}".encode() for i in range(10)]
    after = [f"after-{i}".encode() for i in range(10)]
    async with running(uplink):
        await _subscribed(uplink)
        await _publish(uplink, before)
        assert await uplink.flush(5)
        mark = len(caplog.records)
        broken = _socket(uplink)
        READ_FAULTS[fault](proxy.current)
        await _publish(uplink, after)  # some go out on the broken connection, some wait
        await _connected_again(uplink, proxy, broken)
        app.publish(command_topic("ping"), b"still-listening")
        await eventually(lambda: b"still-listening" in inbox.payloads(), what="a command")
        await _all_delivered(uplink, app, set(before + after))
        _logged_once(caplog, mark)
    assert not _loop_errors(caplog)


async def test_a_second_connack_does_not_leave_the_session_deaf_to_the_next_drop(
    broker: Broker, proxy: FaultProxy, apps: Callable[..., AppClient]
) -> None:
    """A CONNACK in mid-session must not detach the session from its connection's end."""
    app = apps()
    app.subscribe(EVENTS)
    uplink = Uplink(settings_for(broker, port=proxy.port), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        proxy.current.inject(b"\x20\x02\x00\x00")
        await _publish(uplink, [b"between"])
        links = len(proxy.links)
        proxy.current.reset()
        await eventually(
            lambda: uplink.connected and len(proxy.links) > links, what="a reconnect after the drop"
        )
        await _publish(uplink, [b"after"])
        await _all_delivered(uplink, app, {b"between", b"after"})


# -- 2. the connection dies while a large backlog is being written ---------------------------


def _backlogged(uplink: Uplink) -> bool:
    """paho holds bytes it could not write and the kernel's send buffer is full."""
    sock = uplink._driver.sock  # the uplink's real socket: what the fault acts on
    if sock is None or not uplink._client.want_write():
        return False
    _, writable, _ = select.select([], [sock], [], 0)
    return not writable


def _reset_by_network(uplink: Uplink, link: Link) -> None:
    link.reset()  # RST: the reader sees ECONNRESET


def _cannot_send_any_more(uplink: Uplink, link: Link) -> None:
    # The kernel now fails every send with EPIPE while nothing arrives to read: paho's next
    # write, not a read, meets the failure.
    _socket(uplink).shutdown(socket.SHUT_WR)


WRITE_FAULTS: dict[str, Callable[[Uplink, Link], None]] = {
    "reset by the network": _reset_by_network,
    "socket cannot send any more (EPIPE)": _cannot_send_any_more,
}


@pytest.mark.parametrize("fault", WRITE_FAULTS, ids=list(WRITE_FAULTS))
async def test_a_backlog_cut_off_mid_write_is_resent_in_full_after_reconnect(
    fault: str,
    broker: Broker,
    apps: Callable[..., AppClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edged")
    app = apps()
    app.subscribe(EVENTS)
    proxy = await FaultProxy(broker.port, receive_buffer=65536).start()
    try:
        uplink = Uplink(settings_for(broker, port=proxy.port, max_inflight=200), Inbox())
        # 6 MB: more than the kernel buffers between uplink and proxy can take
        backlog = [f"{i:03d}".encode() + bytes(40_000) for i in range(150)]
        after = [f"after-{i}".encode() for i in range(10)]
        async with running(uplink):
            await uplink.wait_connected()
            await _publish(uplink, [b"before"])
            assert await uplink.flush(5)
            proxy.current.stop_reading_client()
            await _publish(uplink, backlog)
            await eventually(lambda: _backlogged(uplink), what="a write backlog in paho")
            assert uplink.stats.inflight == len(backlog)
            mark = len(caplog.records)
            broken = _socket(uplink)
            WRITE_FAULTS[fault](uplink, proxy.current)
            await _publish(uplink, after)
            await _connected_again(uplink, proxy, broken)
            forwarded = sum(len(chunk) for _, chunk in proxy.links[0].sent_up)
            assert forwarded < 40_000 * len(backlog) // 2, "most of the backlog never got through"
            await _all_delivered(uplink, app, {b"before", *backlog, *after})
            assert uplink.stats.inflight == 0
            _logged_once(caplog, mark)
    finally:
        await proxy.close()
    assert not _loop_errors(caplog)


# -- 3. the broker stops answering -----------------------------------------------------------


async def test_unanswered_keepalive_closes_within_the_keepalive_and_reconnects(
    broker: Broker,
    proxy: FaultProxy,
    apps: Callable[..., AppClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edged")
    keepalive = 2
    app = apps()
    app.subscribe(EVENTS)
    uplink = Uplink(settings_for(broker, port=proxy.port, keepalive=keepalive), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        await _publish(uplink, [b"before"])
        assert await uplink.flush(5)
        mark = len(caplog.records)
        silent = proxy.current
        silent.down = Down.DROP  # PINGREQs still reach the broker; its PINGRESPs do not return
        dropping_since = time.monotonic()
        broken = _socket(uplink)
        await eventually(
            lambda: silent.client_closed is not None, within=3 * keepalive + 2, what="the close"
        )
        pings = [at for at, chunk in silent.sent_up if chunk == PINGREQ and at >= dropping_since]
        assert pings, "the uplink pinged before giving up"
        waited = (silent.client_closed or 0.0) - pings[0]
        # paho gives a PINGRESP one keepalive; the driver looks every MISC_INTERVAL.
        assert keepalive - 0.05 <= waited <= keepalive + MISC_INTERVAL + 0.5, waited
        await _connected_again(uplink, proxy, broken)
        await _publish(uplink, [b"after"])
        await _all_delivered(uplink, app, {b"before", b"after"})
        _logged_once(caplog, mark, "no answer to keepalive pings")
    assert not _loop_errors(caplog)


# -- 4. paho itself raises -------------------------------------------------------------------


def _raise_once(monkeypatch: pytest.MonkeyPatch, client: Any, name: str) -> list[str]:
    """Make ``client.<name>()`` raise once, then behave; returns a list that records the raise."""
    original = getattr(client, name)
    raised: list[str] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append(name)
            raise RuntimeError(f"injected failure in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(client, name, broken)
    return raised


@pytest.mark.parametrize("method", ["loop_read", "loop_write", "loop_misc"])
async def test_an_exception_inside_paho_closes_logs_once_and_the_loop_goes_on(
    method: str,
    broker: Broker,
    apps: Callable[..., AppClient],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="edged")
    app = apps()
    app.subscribe(EVENTS)
    inbox = Inbox()
    uplink = Uplink(settings_for(broker), inbox)
    uplink.set_subscriptions([(COMMANDS, 1)])
    async with running(uplink):
        await _subscribed(uplink)
        mark = len(caplog.records)
        broken = _socket(uplink)
        raised = _raise_once(monkeypatch, uplink._client, method)
        if method == "loop_read":
            app.publish(command_topic("ping"), b"unread")  # the read that fails
        elif method == "loop_write":
            await _publish(uplink, [b"unwritten"])  # the write that fails
        await eventually(lambda: bool(raised), within=MISC_INTERVAL + 1, what=f"{method} call")
        await eventually(
            lambda: uplink.connected and uplink.stats.reconnects == 1, what="reconnect"
        )
        assert broken.fileno() == -1, "the uplink closed the connection"
        await _publish(uplink, [b"after"])
        expected = {b"unwritten", b"after"} if method == "loop_write" else {b"after"}
        await _all_delivered(uplink, app, expected)
        if method == "loop_read":
            # QoS 1, never acknowledged by the uplink: the broker delivers it again
            await eventually(lambda: b"unread" in inbox.payloads(), what="the redelivery")
        _logged_once(caplog, mark, f"injected failure in {method}")
    assert not _loop_errors(caplog)


# -- 5. TLS: decrypted bytes the socket never signals again ----------------------------------


def _server_context(broker: Broker) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(broker.ca.cert_file, broker.ca.key_file)
    return context


def _tls_settings(broker: Broker, port: int) -> UplinkSettings:
    return settings_for(
        broker, tls=True, host="localhost", port=port, ca_file=str(broker.ca.ca_file)
    )


def _commands(sizes: list[int]) -> list[bytes]:
    return [f"{i:03d}:".encode() + b"x" * size for i, size in enumerate(sizes)]


COMMAND_SIZES = [50] * 10 + [40_000, 70_000] + [50] * 40
"""Small ones, two that span TLS records, then many small ones that share the last record."""


async def test_packets_buffered_inside_one_tls_record_are_all_handed_over(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    app = apps()
    commands = _commands(COMMAND_SIZES)
    proxy = await FaultProxy(broker.port, tls=_server_context(broker)).start()
    try:
        inbox = Inbox()
        uplink = Uplink(_tls_settings(broker, proxy.port), inbox)
        uplink.set_subscriptions([(COMMANDS, 1)])
        async with running(uplink):
            await _subscribed(uplink)
            link = proxy.current
            link.down = Down.HOLD
            for command in commands:
                app.publish(command_topic("set"), command)
            await eventually(
                lambda: packet_types(bytes(link.held)).count(PUBLISH) == len(commands),
                what="every command held at the proxy",
            )
            # One TLS write: the last record carries many packets, and once the uplink has
            # read it from the socket nothing more arrives to wake the reader.
            link.release()
            await eventually(
                lambda: len(inbox.messages) >= len(commands), within=5, what="every command"
            )
            assert inbox.payloads() == commands
            assert uplink.stats.reconnects == 0
    finally:
        await proxy.close()


async def test_a_corrupt_tls_record_closes_logs_once_and_reconnects(
    broker: Broker, apps: Callable[..., AppClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edged")
    app = apps()
    app.subscribe(EVENTS)
    proxy = await FaultProxy(broker.port, tls=_server_context(broker)).start()
    try:
        uplink = Uplink(_tls_settings(broker, proxy.port), Inbox())
        async with running(uplink):
            await uplink.wait_connected()
            await _publish(uplink, [b"before"])
            assert await uplink.flush(5)
            mark = len(caplog.records)
            broken = _socket(uplink)
            # an application-data record header, then bytes that fail decryption
            proxy.current.inject_raw(b"\x17\x03\x03\x00\x20" + bytes(range(32)))
            await _publish(uplink, [b"after"])
            await _connected_again(uplink, proxy, broken)
            await _all_delivered(uplink, app, {b"before", b"after"})
            _logged_once(caplog, mark)
    finally:
        await proxy.close()
    assert not _loop_errors(caplog)


async def test_a_burst_of_commands_over_the_brokers_tls_listener_all_arrive(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    """Large and small commands queued up at once, straight from mosquitto's TLS listener.

    mosquitto gives each packet its own TLS record(s), so this burst does not depend on the
    pending-bytes drain (the test above does); it checks the reads of a real TLS stream.
    """
    app = apps()
    commands = _commands([50] * 150 + [100_000, 30_000] + [50] * 150)
    inbox = Inbox()
    uplink = Uplink(_tls_settings(broker, broker.tls_port), inbox)
    uplink.set_subscriptions([(COMMANDS, 1)])
    async with running(uplink):
        await _subscribed(uplink)
        sent = [app.client.publish(command_topic("set"), command, 1) for command in commands]
        for info in sent:
            info.wait_for_publish(5)  # blocks the loop: the commands pile up for the uplink
        await eventually(
            lambda: len(inbox.messages) >= len(commands), within=5, what="every command"
        )
        assert inbox.payloads() == commands
