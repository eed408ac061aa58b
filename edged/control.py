"""The control socket: ``edged status`` (and friends) asking the running daemon over a Unix socket.

Protocol: the client sends one JSON object on one line, ``{"cmd": "<name>"}``; the daemon
answers one JSON line, ``{"ok": true, "data": ...}`` or ``{"ok": false, "error": "..."}``,
and closes. Commands are the handlers the daemon registers (``status``, ``publish-status``,
``reload``).

The socket lives in the service's runtime directory (``RuntimeDirectory=edged``, mode 0750,
group edged) and is made mode 0660, so root and members of group edged may use it. Nothing a
client does can stall the daemon: a request line is at most :data:`MAX_REQUEST` bytes and must
arrive within :data:`READ_TIMEOUT` seconds, at most :data:`MAX_CLIENTS` are served at once
(others get "busy"), and a client that does not read its answer is cut off after
:data:`WRITE_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from edged.text import safe

log = logging.getLogger(__name__)

MAX_REQUEST = 4096
READ_TIMEOUT = 2.0
WRITE_TIMEOUT = 5.0
MAX_CLIENTS = 16
SOCKET_NAME = "control.sock"

Handler = Callable[[], Any | Awaitable[Any]]


def default_socket_path(environ: Mapping[str, str] | None = None) -> str:
    """``$RUNTIME_DIRECTORY/control.sock`` under systemd, else ``/run/edged/control.sock``."""
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0] or "/run/edged"
    return os.path.join(runtime, SOCKET_NAME)


class ControlServer:
    """Serves the control socket at ``path`` with ``handlers`` by command name."""

    def __init__(self, path: str, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self.handlers = dict(handlers)
        self.counters: dict[str, int] = {"requests": 0, "refused": 0, "busy": 0}
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> bool:
        """Listen; False (logged) when the socket cannot be made: the daemon runs on without."""
        try:
            self._clear_stale()
            self._server = await asyncio.start_unix_server(
                self._serve, self.path, limit=MAX_REQUEST
            )
            os.chmod(self.path, 0o660)
        except OSError as exc:
            log.error(
                "no control socket at %s (edged status will not reach this daemon): %s",
                self.path,
                exc,
            )
            return False
        return True

    def _clear_stale(self) -> None:
        """Remove a socket file left by a daemon that died; refuse to steal a live one."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(0.5)  # blocking edge: a local connect, at start only
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)  # nobody listens: stale
            return
        finally:
            probe.close()
        raise OSError(f"another edged answers on {self.path}")

    async def close(self) -> None:
        """Stop listening, end the clients being served and remove the socket file."""
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self._clients) >= MAX_CLIENTS:
                self.counters["busy"] += 1
                await self._answer(writer, {"ok": False, "error": "busy; try again"})
                return
            self._clients.add(task)
            answer = await self._handle(reader)
            await self._answer(writer, answer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled: nothing to answer
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)

    async def _handle(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            self.counters["refused"] += 1
            return {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
        except asyncio.IncompleteReadError as exc:
            line = exc.partial  # a client that closed its side without a newline
        if len(line) > MAX_REQUEST:
            self.counters["refused"] += 1
            return {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
        try:
            request = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.counters["refused"] += 1
            return {"ok": False, "error": 'not JSON; send {"cmd": "status"}'}
        command = request.get("cmd") if isinstance(request, dict) else None
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            self.counters["refused"] += 1
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown command {safe(command, 40)}; known: {known}"}
        self.counters["requests"] += 1
        try:
            data = handler()
            if inspect.isawaitable(data):
                data = await data
        except Exception as exc:
            log.exception("control command %s failed", command)
            return {"ok": False, "error": f"{command} failed: {safe(exc)}"}
        return {"ok": True, "data": data}

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(orjson.dumps(answer, default=str) + b"\n")
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()


class NotRunning(Exception):
    """No daemon answers on the control socket."""


def request(path: str, command: str, timeout: float = 10.0) -> Any:
    """Send ``command`` to the daemon at ``path`` and return its data (a blocking client).

    Raises :class:`NotRunning` when nothing listens there and :class:`RuntimeError` with the
    daemon's message when it refused the command.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunning(f"edged is not running (nothing answers on {path})") from exc
        except PermissionError as exc:
            raise NotRunning(
                f"no permission to use {path}: run as root or as a member of group edged"
            ) from exc
        client.sendall(orjson.dumps({"cmd": command}) + b"\n")
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    answer = orjson.loads(b"".join(chunks))
    if not answer.get("ok"):
        raise RuntimeError(str(answer.get("error", "refused")))
    return answer.get("data")
