"""The core is supervised: a failing core task restarts, shutdown is bounded at every step."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edged import app, registry
from edged.adapters.base import Adapter, ReadingSink
from edged.app import Gateway
from edged.backoff import Backoff
from edged.bridge import Bridge
from edged.config import load_config
from edged.model import DeviceIdentity, OutgoingMessage
from edged.outbox import BULK_LANE
from edged.supervisor import keep_running
from tests.support.broker import Broker
from tests.support.daemon import write_config
from tests.support.outbox import open_outbox

pytestmark = pytest.mark.integration

GW = DeviceIdentity("gw", "gw-1")


async def test_a_failing_core_task_is_logged_once_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    settled = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise KeyError("boom")
        settled.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.DEBUG, logger="edged.supervisor"):
        task = asyncio.ensure_future(
            keep_running("status loop", work, backoff=Backoff(initial=0.01, maximum=0.02))
        )
        await asyncio.wait_for(settled.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert runs == 4


class Publisher:
    """Refuses topics with "bad" in them as the uplink refuses a bug; acknowledges the rest."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def publish(self, topic: str, payload: bytes, qos: int) -> asyncio.Future[None]:
        if "bad" in topic:
            raise ValueError("Publish topic cannot contain wildcards.")
        self.sent.append(topic)
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivery.set_result(None)
        return delivery


async def test_a_message_the_uplink_rejects_is_dropped_and_the_rest_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Publisher()
    async with open_outbox(tmp_path) as outbox:
        bridge = Bridge(GW, [], outbox)
        for topic in ("a", "bad/1", "b", "bad/2", "c"):
            outbox.put(BULK_LANE, "d", OutgoingMessage(topic, b"{}", 1))
        with caplog.at_level(logging.ERROR, logger="edged.bridge"):
            forwarder = asyncio.ensure_future(bridge.forward(publisher))
            await asyncio.wait_for(outbox.wait_empty(), 5)  # every row deleted: none left behind
            forwarder.cancel()
            await asyncio.gather(forwarder, return_exceptions=True)
    assert publisher.sent == ["a", "b", "c"]
    assert bridge.counters["publish_errors"] == 2 and bridge.counters["forwarded"] == 3
    assert outbox.counters["delivered"] == 3 and outbox.counters["discarded"] == 2
    assert len(caplog.records) == 1


class Stubborn(Adapter):
    """Ignores the first cancellation (a blocking library call, a bug), honours the next."""

    def __init__(self) -> None:
        super().__init__("stubborn", [DeviceIdentity("sim", "stuck-1")])
        self.running = asyncio.Event()

    async def run(self, sink: ReadingSink) -> None:
        self.running.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await asyncio.Event().wait()


async def test_shutdown_gives_up_on_an_adapter_that_ignores_cancellation(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubborn = Stubborn()
    monkeypatch.setattr(registry, "adapter_factory", lambda name: lambda *a: [stubborn])
    monkeypatch.setattr(app, "STOP_STEP_SECONDS", 0.5)
    devices = [
        {"id": "stuck-1", "type": "sim", "adapter": "simulated", "simulated": {"values": {"n": {}}}}
    ]
    gateway = Gateway(load_config(str(write_config(tmp_path, broker, devices))))
    running = asyncio.ensure_future(gateway.run())
    try:
        await asyncio.wait_for(stubborn.running.wait(), 5)
        started = time.monotonic()
        gateway.request_stop()
        await asyncio.wait_for(asyncio.shield(running), 10)
        took = time.monotonic() - started
    finally:
        left = [
            t for t in asyncio.all_tasks() if t.get_name() in ("supervisor", "adapter:stubborn")
        ]
        for task in [*left, running]:
            task.cancel()  # the stubborn adapter honours this second cancellation
        await asyncio.wait_for(asyncio.gather(*left, running, return_exceptions=True), 5)
    assert gateway.stuck_tasks == ["supervisor"]
    assert took < 3
    await asyncio.get_running_loop().shutdown_default_executor()  # the state files' writer


def test_the_daemon_exits_with_an_error_instead_of_hanging_on_a_stuck_task(
    tmp_path: Path, broker: Broker
) -> None:
    devices = [
        {"id": "stuck-1", "type": "sim", "adapter": "simulated", "simulated": {"values": {"n": {}}}}
    ]
    config = write_config(tmp_path, broker, devices)
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from edged import app, cli, registry
        from edged.adapters.base import Adapter

        class Stubborn(Adapter):
            async def run(self, sink):
                os.kill(os.getpid(), signal.SIGTERM)
                while True:
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        pass

        registry.adapter_factory = lambda name: lambda specs, *a: [
            Stubborn("stubborn", [s.identity for s in specs])
        ]
        app.STOP_STEP_SECONDS = 0.5
        sys.exit(cli.main(["run", "--config", {str(config)!r}]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 70, done.stderr
    assert "task supervisor did not stop within" in done.stderr
    assert "exiting with stuck tasks: supervisor" in done.stderr
