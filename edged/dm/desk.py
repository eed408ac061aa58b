"""Platform requests that carry out an action: reboot, factory reset, custom actions.

Each runs as its own task, at most ``max_requests`` at once (beyond that: 409, and the reqId
is forgotten so the platform's retry can run). Each is owed exactly one answer within
``request_timeout``:

* an attached device's reboot or factory reset and every custom action run *first* and are
  answered with the outcome (202 or 200; the :class:`~edged.dm.actions.ActionError` code);
  when the action outlasts ``request_timeout`` it is answered 500 and its late end only logged;
* the gateway's own reboot or factory reset is answered 202 *before* it runs, since it may
  end this process: a flag is saved first, so that the next manage after the restart is
  logged as completing it (PROTOCOL.md 4.10); a failure to start it is logged;
* a request cancelled at shutdown is answered 500 ``shutting down``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from edged.config.management import ActionConfig
from edged.dm import codes
from edged.dm.actions import ActionError, ActionRunner
from edged.dm.outgoing import LogOnce, Outgoing
from edged.dm.requests import DeviceAction
from edged.dm.targets import Target
from edged.model import DeviceIdentity

log = logging.getLogger(__name__)

SHUTTING_DOWN = "shutting down"


class ActionDesk:
    """Runs action requests as tasks and answers each exactly once."""

    def __init__(
        self,
        runner: ActionRunner,
        outgoing: Outgoing,
        *,
        max_requests: int,
        request_timeout: float,
        counters: Counter[str],
        log_once: LogOnce,
    ) -> None:
        self.runner = runner
        self.out = outgoing
        self.max_requests = max_requests
        self.request_timeout = request_timeout
        self.counters = counters
        self._log_once = log_once
        self._tasks: dict[asyncio.Task[None], tuple[DeviceIdentity, str]] = {}

    @property
    def running(self) -> int:
        """Action requests in progress."""
        return len(self._tasks)

    def start(
        self,
        device: DeviceIdentity,
        req_id: str,
        what: str,
        body: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        """Run ``body()`` as a task for request ``req_id`` (or answer 409 when too busy)."""
        if len(self._tasks) >= self.max_requests:
            self.counters["busy"] += 1
            self.out.answers.forget(device, req_id)  # a retry with this reqId may then run
            self._log_once("busy", "%s: too many DM requests at once; answering 409", device)
            self.out.send_answer(device, req_id, codes.CONFLICT, "too many requests in progress")
            return
        task = asyncio.get_running_loop().create_task(body(), name=f"dm:{device}:{what}")
        self._tasks[task] = (device, req_id)
        task.add_done_callback(self._ended)

    def device_action(
        self,
        target: Target,
        request: DeviceAction,
        remember: Callable[[dict[str, Any] | None], Awaitable[None]],
    ) -> None:
        """Reboot or factory reset: the gateway's answered first, an attached device's after."""
        device, req_id, what = target.device, request.req_id, request.action.value
        action = getattr(target.config.actions, what)
        if target.is_gateway and action is not None:
            self.start(
                device,
                req_id,
                what,
                lambda: self.answer_then_act(device, req_id, what, action, remember),
            )
        else:
            self.start(
                device,
                req_id,
                what,
                lambda: self.act_then_answer(
                    device, req_id, what, action, params=None, success=codes.ACCEPTED
                ),
            )

    async def act_then_answer(
        self,
        device: DeviceIdentity,
        req_id: str,
        what: str,
        action: ActionConfig | None,
        *,
        params: Mapping[str, str] | None,
        success: int,
    ) -> None:
        """Run the action, then answer ``success`` or the failure's code."""
        run = asyncio.ensure_future(self.runner.run(device, action, params))
        try:
            done, _ = await asyncio.wait({run}, timeout=self.request_timeout)
        except asyncio.CancelledError:
            run.cancel()
            raise
        if not done:
            message = f"timed out after {self.request_timeout:g} s"
            self.out.answer(device, req_id, codes.INTERNAL_ERROR, message)
            try:
                await run
            except ActionError as exc:
                log.warning("%s of %s ended late and failed: %s", what, device, exc.message)
            except asyncio.CancelledError:
                run.cancel()
                raise
            else:
                log.info("%s of %s ended late, successfully", what, device)
            return
        try:
            run.result()
        except ActionError as exc:
            log.info("%s of %s: rc %s: %s", what, device, exc.rc, exc.message)
            self.out.answer(device, req_id, exc.rc, exc.message)
        else:
            self.out.answer(device, req_id, success)

    async def answer_then_act(
        self,
        device: DeviceIdentity,
        req_id: str,
        what: str,
        action: ActionConfig,
        remember: Callable[[dict[str, Any] | None], Awaitable[None]],
    ) -> None:
        """Save the flag (``remember``), answer 202, then run the action; failures logged."""
        await remember({"action": what, "reqId": req_id})
        self.out.answer(device, req_id, codes.ACCEPTED)
        log.warning("the platform asked for a %s of the gateway: starting it", what)
        try:
            await self.runner.run(device, action, None)
        except ActionError as exc:
            log.error("the gateway's %s failed: %s", what, exc.message)
            await remember(None)

    def _ended(self, task: asyncio.Task[None]) -> None:
        device, req_id = self._tasks.pop(task)
        if task.cancelled():
            self.out.answer(device, req_id, codes.INTERNAL_ERROR, SHUTTING_DOWN)
        elif task.exception() is not None:
            log.error("a DM request for %s failed", device, exc_info=task.exception())
            self.out.answer(device, req_id, codes.INTERNAL_ERROR, "internal error")

    async def cancel_all(self) -> None:
        """Cancel every request in progress; each not yet answered gets 500 ``shutting down``."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.sleep(0)  # let the done callbacks answer
