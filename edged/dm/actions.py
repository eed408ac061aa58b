"""Carrying out a device-management action: reboot, factory reset or a custom (bundle) action.

An action is configured (:class:`~edged.config.management.ActionConfig`) as one of:

* ``run``: an argv list the daemon runs itself, never through a shell. The program gets no
  stdin, a minimal environment (``PATH``, ``LANG=C.UTF-8``, ``EDGED_DEVICE_TYPE``,
  ``EDGED_DEVICE_ID``, ``EDGED_GATEWAY_TYPE``, ``EDGED_GATEWAY_ID``) plus one
  ``EDGED_PARAM_<NAME>`` per parameter (the name upper-cased, every character other than
  A-Z 0-9 turned into ``_``), and its own process group. The action is over when the program
  exits: whatever it left running in its group is then killed, as is the whole group when the
  action's timeout passes. Only the last 4 KiB of its stdout and stderr are kept.
* ``command``: one of the attached device's adapter commands, sent with the configured
  ``data`` and the parameters merged over it, as a ``json`` :class:`~edged.model.Command`.
* ``builtin`` (the gateway's only): ``logind-reboot`` asks logind to reboot the machine,
  ``install-package`` has the root helper unit install the image; both through the narrow
  privileged paths of :mod:`edged.privileged` (docs/privileged.md).

A firmware image to install (``image``) reaches a ``run`` program as ``EDGED_FIRMWARE_PATH``
and a ``command`` as ``data["path"]``; ``install-package`` requires one.

Parameters are checked before anything runs: unknown names, missing required ones, values
longer than :data:`MAX_VALUE_LENGTH` or not matching the declared ``pattern`` are a bad request
(rc 400). The outcome maps onto iotdm-1 return codes (PROTOCOL.md 4.10, 4.12) through the
:class:`ActionError` subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping

import orjson

from edged.config.management import ActionConfig
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported
from edged.model import Command, DeviceIdentity, JSONValue
from edged.privileged import PrivilegedError
from edged.text import safe

log = logging.getLogger(__name__)

MAX_VALUE_LENGTH = 4096
"""Characters allowed in one parameter value."""

OUTPUT_KEPT = 4096
"""Bytes kept of a program's stdout and of its stderr (the last ones)."""

MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# After the program exits and its group is killed, its pipes close at once unless something
# escaped the group (setsid) holding them; the output is not worth waiting longer for.
_PIPE_GRACE = 1.0
_ENV_NAME_RE = re.compile(r"[^A-Z0-9]")

Execute = Callable[[Command], Awaitable[Mapping[str, JSONValue] | None]]
"""An adapter's command entry point (the bridge's dispatch to the device's adapter)."""


class ActionError(Exception):
    """An action was not carried out; ``rc`` is the iotdm-1 return code to answer with."""

    rc: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ActionUnsupported(ActionError):
    """The action is not configured or the target cannot do it (501)."""

    rc = 501


class ActionBadRequest(ActionError):
    """The request's parameters are invalid; nothing was done (400)."""

    rc = 400


class ActionFailed(ActionError):
    """The action was attempted and failed, or did not finish in time (500)."""

    rc = 500


def env_name(parameter: str) -> str:
    """``EDGED_PARAM_<NAME>`` for a parameter name (``fw.url`` -> ``EDGED_PARAM_FW_URL``)."""
    return "EDGED_PARAM_" + _ENV_NAME_RE.sub("_", parameter.upper())


def check_params(action: ActionConfig, params: Mapping[str, str] | None) -> dict[str, str]:
    """The action's parameter values: ``params`` checked and completed with defaults.

    A required parameter that has a default is satisfied by it. Defaults are checked against
    the pattern like any value. Raises :class:`ActionBadRequest` naming every problem found.
    """
    given = dict(params or {})
    declared = {parameter.name: parameter for parameter in action.parameters}
    unknown = sorted(name for name in given if name not in declared)
    if unknown:
        raise ActionBadRequest("unknown parameters: " + _names(unknown))
    values = dict(given)
    for parameter in action.parameters:
        if parameter.name not in values and parameter.default is not None:
            values[parameter.name] = parameter.default
    missing = [p.name for p in action.parameters if p.required and p.name not in values]
    if missing:
        raise ActionBadRequest("missing required parameters: " + _names(missing))
    for name, value in values.items():
        if not isinstance(value, str):
            raise ActionBadRequest(f"parameter {safe(name)}: the value must be a string")
        if len(value) > MAX_VALUE_LENGTH:
            raise ActionBadRequest(
                f"parameter {safe(name)}: longer than {MAX_VALUE_LENGTH} characters"
            )
        if "\0" in value:
            raise ActionBadRequest(f"parameter {safe(name)}: contains a NUL character")
        pattern = declared[name].pattern
        if pattern is not None and re.fullmatch(pattern, value) is None:
            raise ActionBadRequest(
                f"parameter {safe(name)}: {safe(value, 64)!r} does not match "
                f"{safe(pattern, 64, backslash=False)}"
            )
    return values


def _names(names: list[str]) -> str:
    return safe(", ".join(names), 300)


class ActionRunner:
    """Runs configured actions for the gateway and its attached devices.

    ``execute`` carries out an adapter command (used for ``command`` actions); ``gateway`` is
    the gateway's own identity (it has no adapter, so it has no ``command`` actions).
    """

    def __init__(self, execute: Execute, *, gateway: DeviceIdentity) -> None:
        self._execute = execute
        self._gateway = gateway

    async def run(
        self,
        device: DeviceIdentity,
        action: ActionConfig | None,
        params: Mapping[str, str] | None = None,
        *,
        image: str | None = None,
    ) -> None:
        """Carry out ``action`` for ``device`` and return once it has finished successfully.

        ``image`` is the path of a firmware image the action installs. Raises
        :class:`ActionUnsupported` when ``action`` is None, :class:`ActionBadRequest` when the
        parameters are invalid or an image is missing (nothing runs), :class:`ActionFailed`
        when it failed or took longer than ``action.timeout``. Cancelling the call stops the
        action (a started install helper runs on: it is systemd's job, not ours).
        """
        if action is None:
            raise ActionUnsupported(f"this action is not configured for {safe(device)}")
        values = check_params(action, params)
        if action.run is not None:
            await self._run_program(device, action.run, values, action.timeout, image)
        elif action.command is not None:
            await self._run_command(device, action, values, image)
        elif action.builtin is not None:
            await self._run_builtin(device, action, image)
        else:  # pragma: no cover - ActionConfig insists on one of them
            raise ActionUnsupported("the action has neither run, command nor builtin")

    async def _run_builtin(
        self, device: DeviceIdentity, action: ActionConfig, image: str | None
    ) -> None:
        # Imported here: dbus-fast is needed only by the gateway's privileged acts.
        from edged.privileged.client import logind_reboot, start_install

        if device != self._gateway:
            raise ActionUnsupported(f"{action.builtin} is the gateway's own action")
        try:
            if action.builtin == "logind-reboot":
                async with asyncio.timeout(action.timeout):
                    await logind_reboot()
            elif action.builtin == "install-package":
                if image is None:
                    raise ActionBadRequest("install-package needs an image to install")
                await start_install(image, timeout=action.timeout)
            else:  # pragma: no cover - the config's Literal allows no other
                raise ActionUnsupported(f"unknown builtin {safe(action.builtin)}")
        except PrivilegedError as exc:
            raise ActionFailed(str(exc)) from exc
        except TimeoutError:
            raise ActionFailed(f"{action.builtin} timed out after {action.timeout:g} s") from None
        log.info("Action for %s: %s succeeded", device, action.builtin)

    def _environment(self, device: DeviceIdentity, values: Mapping[str, str]) -> dict[str, str]:
        env = {
            "PATH": MINIMAL_PATH,
            "LANG": "C.UTF-8",
            "EDGED_DEVICE_TYPE": device.type_id,
            "EDGED_DEVICE_ID": device.device_id,
            "EDGED_GATEWAY_TYPE": self._gateway.type_id,
            "EDGED_GATEWAY_ID": self._gateway.device_id,
        }
        for name, value in values.items():
            env[env_name(name)] = value
        return env

    async def _run_program(
        self,
        device: DeviceIdentity,
        argv: tuple[str, ...],
        values: Mapping[str, str],
        limit: float,
        image: str | None = None,
    ) -> None:
        program = safe(argv[0])
        env = self._environment(device, values)
        if image is not None:
            env["EDGED_FIRMWARE_PATH"] = image
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                _ProgramProtocol,
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ActionFailed(f"cannot run {program}: {safe(exc)}") from exc
        pid = transport.get_pid()
        log.info("Action for %s: running %s (pid %d)", device, program, pid)
        try:
            async with asyncio.timeout(limit):
                await protocol.exited.wait()
        except TimeoutError:
            raise ActionFailed(f"{program} timed out after {limit:g} s") from None
        finally:
            # Its own session: the group id is its pid. Kill what is left (everything, when
            # it timed out or we were cancelled), let the watcher reap it, drain its pipes.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            await protocol.exited.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_PIPE_GRACE):
                    await protocol.drained.wait()
            transport.close()
        returncode = transport.get_returncode()
        assert returncode is not None
        if returncode != 0:
            last = _last_line(protocol.stderr) or _last_line(protocol.stdout)
            how = f"exit code {returncode}" if returncode > 0 else f"signal {-returncode}"
            raise ActionFailed(f"{program} failed ({how})" + (f": {last}" if last else ""))
        log.info("Action for %s: %s succeeded", device, program)

    async def _run_command(
        self,
        device: DeviceIdentity,
        action: ActionConfig,
        values: Mapping[str, str],
        image: str | None = None,
    ) -> None:
        assert action.command is not None
        if device == self._gateway:
            raise ActionUnsupported("the gateway has no adapter to send a command to")
        data: dict[str, JSONValue] = {**action.data, **values}
        if image is not None:
            data["path"] = image
        try:
            payload = orjson.dumps(data)
        except TypeError as exc:  # pragma: no cover - config data is parsed JSON/YAML
            raise ActionFailed(f"the command's data cannot be encoded: {safe(exc)}") from exc
        command = Command(device, action.command, "json", payload, data)
        name = safe(action.command)
        try:
            async with asyncio.timeout(action.timeout):
                await self._execute(command)
        except CommandRejected as exc:
            raise ActionBadRequest(f"{name} rejected: {safe(exc)}") from exc
        except CommandUnsupported as exc:
            raise ActionUnsupported(f"{name} unsupported: {safe(exc)}") from exc
        except CommandFailed as exc:
            raise ActionFailed(f"{name} failed: {safe(exc)}") from exc
        except TimeoutError as exc:
            raise ActionFailed(f"{name} timed out after {action.timeout:g} s") from exc
        except Exception as exc:  # any adapter bug is a failed action, not a crash
            log.exception("Action for %s: command %s raised", device, name)
            raise ActionFailed(f"{name} failed: {type(exc).__name__}: {safe(exc)}") from exc


class _ProgramProtocol(asyncio.SubprocessProtocol):
    """Keeps the last :data:`OUTPUT_KEPT` bytes of stdout and stderr; tells when it exited.

    The exit is taken from the protocol rather than ``Process.wait()``, which on Python 3.11
    waits for the pipes to close too (a leftover child holding them would hold us).
    """

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exited = asyncio.Event()
        self.drained = asyncio.Event()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        tail = self.stdout if fd == 1 else self.stderr
        tail += data
        if len(tail) > OUTPUT_KEPT:
            del tail[: len(tail) - OUTPUT_KEPT]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open:
            self.drained.set()

    def process_exited(self) -> None:
        self.exited.set()


def _last_line(output: bytes | bytearray) -> str:
    """The last non-empty line of a program's output, made safe for a message."""
    for line in reversed(output.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return safe(line.strip())
    return ""
