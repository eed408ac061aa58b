"""Fetching a firmware image over HTTPS into the state directory, verified, off the event loop.

:func:`fetch` is the blocking part and runs in a worker thread of :class:`Downloader` (its own
small pool, so a long download never holds a thread the rest of the daemon needs):

* HTTPS with the server's certificate and host name verified against ``firmware.ca_file`` or
  the system's trust store; plain ``http://`` only with ``allow_http``; up to 5 redirects, each
  target checked the same way. Credentials in the URI are sent as HTTP Basic to that URI only.
* The image is written to ``<path>.part`` and renamed to ``<path>`` once complete and verified.
  ``<path>.part.json`` records which URI (a SHA-256 of it) and which server validator (ETag or
  Last-Modified) the partial file belongs to. A later attempt for the same URI resumes with
  ``Range`` (and ``If-Range``); a server that answers 200 instead of 206 restarts it from 0.
* Within one download a cut is retried (at most :data:`ATTEMPTS` attempts, resumed as above);
  the whole download is bounded by ``firmware.timeout``, connecting and each read by
  ``firmware.connect_timeout``.
* An announced ``Content-Length`` above ``max_bytes`` is refused before reading; a body that
  grows beyond it is stopped and deleted.

Outcomes, as ``mgmt.firmware.updateStatus``: 0 downloaded and verified; 6 the URI cannot be
fetched (scheme refused, name not resolved, connection refused, TLS verification failed, an
HTTP error status, too many redirects); 3 the connection was lost after the response began
(or the download took longer than ``timeout``; the partial file is kept for a resume); 2 the
image is larger than ``max_bytes`` or the disk is full (or the file cannot be written; the
partial file is deleted); 4 the digest does not match the verifier (the file is deleted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import functools
import hashlib
import http.client
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import orjson

from edged import __version__
from edged.config.management import FirmwareConfig
from edged.dm.firmware.state import Status
from edged.dm.firmware.uri import Uri, parse_uri, scheme_problem
from edged.dm.firmware.verify import Verifier
from edged.privileged.names import VERSION_SUFFIX
from edged.text import safe

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
ATTEMPTS = 3
"""Connections tried within one download when the previous one was cut."""
RETRY_PAUSE = 0.5
"""Seconds before the second attempt; doubled before each further one."""
MAX_REDIRECTS = 5
STOP_GRACE = 2.0
"""Seconds a cancelled download waits for its thread to notice (it is then left to finish)."""
WORKERS = 2
"""Downloads running at once (others wait for a thread)."""

_T = TypeVar("_T")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a download ended: ``status`` 0 is success (the image is at its path)."""

    status: Status
    message: str
    size: int = 0


class _End(Exception):
    """Ends the download with ``status`` (partial file kept unless ``drop``)."""

    def __init__(self, status: Status, message: str, *, drop: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.drop = drop


class _Cut(Exception):
    """The connection was lost after the response began: retried while attempts remain."""


class _Restart(Exception):
    """The partial file cannot be resumed: start again from 0 (counts as an attempt)."""


def part_path(path: str) -> str:
    """Where the image is written until it is complete and verified."""
    return f"{path}.part"


def meta_path(path: str) -> str:
    """What the partial file belongs to (URI digest and server validator)."""
    return f"{path}.part.json"


def remove_files(path: str) -> None:
    """Delete the image, its partial file, that file's record and the image's version file
    (blocking: a few unlinks)."""
    for name in (path, part_path(path), meta_path(path), f"{path}{VERSION_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def fetch(
    uri: Uri,
    verifier: Verifier | None,
    path: str,
    config: FirmwareConfig,
    stop: threading.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Download ``uri`` to ``path``, verified. Blocking: call it in a worker thread."""
    job = _Job(uri, verifier, path, config, stop, clock)
    try:
        return job.run()
    except _End as end:
        if end.drop:
            with contextlib.suppress(OSError):
                remove_files(path)
        return Outcome(end.status, end.message)


class _Job:
    """One download (the state of its attempts)."""

    def __init__(  # noqa: PLR0917 - private; fetch() is the interface
        self,
        uri: Uri,
        verifier: Verifier | None,
        path: str,
        config: FirmwareConfig,
        stop: threading.Event,
        clock: Callable[[], float],
    ) -> None:
        self.uri = uri
        self.verifier = verifier
        self.path = path
        self.part = part_path(path)
        self.config = config
        self.stop = stop
        self.clock = clock
        self.deadline = clock() + config.timeout
        self.started = False
        self.sock: socket.socket | None = None
        """A response began at least once: later connection failures are a cut (3), not 6."""

    def run(self) -> Outcome:
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o750, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            offset, validator = self._resumable()
        except OSError as exc:
            raise _End(
                Status.OUT_OF_MEMORY, f"cannot use the firmware folder: {safe(exc)}"
            ) from exc
        pause = RETRY_PAUSE
        for attempt in range(1, ATTEMPTS + 1):
            try:
                size = self._attempt(offset, validator)
            except (_Cut, _Restart) as exc:
                if isinstance(exc, _Restart):
                    self._drop_part()
                if attempt == ATTEMPTS:
                    raise _End(Status.CONNECTION_LOST, f"connection lost: {exc}") from None
                log.info("Firmware download from %s: %s; trying again", self.uri, exc)
                if self.stop.wait(min(pause, max(0.0, self.deadline - self.clock()))):
                    raise _End(Status.CONNECTION_LOST, "stopped") from None
                pause *= 2
                offset, validator = self._resumable()
                continue
            return self._finish(size)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the partial file ----------------------------------------------------------------------

    def _uri_digest(self) -> str:
        return hashlib.sha256(self.uri.text.encode()).hexdigest()

    def _resumable(self) -> tuple[int, str | None]:
        """Bytes already fetched for this URI and the validator they came with (else 0)."""
        try:
            record = orjson.loads(_read_small(meta_path(self.path)))
            size = os.path.getsize(self.part)
        except (OSError, ValueError):
            self._drop_part()
            return 0, None
        if not isinstance(record, dict) or record.get("uri") != self._uri_digest():
            self._drop_part()
            return 0, None
        validator = record.get("validator")
        return size, validator if isinstance(validator, str) else None

    def _drop_part(self) -> None:
        for name in (self.part, meta_path(self.path)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def _record(self, validator: str | None) -> None:
        data = orjson.dumps({"uri": self._uri_digest(), "validator": validator})
        with open(meta_path(self.path), "wb") as file:
            file.write(data)

    # -- one connection ------------------------------------------------------------------------

    def _attempt(self, offset: int, validator: str | None) -> int:
        """One GET (following redirects); the size of the complete partial file."""
        uri = self.uri
        for _ in range(MAX_REDIRECTS + 1):
            connection = self._connect(uri)
            try:
                response = self._request(connection, uri, offset, validator)
                location = response.getheader("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    uri = self._redirect(uri, location)
                    continue
                return self._receive(response, offset)
            finally:
                connection.close()
        raise _End(Status.INVALID_URI, f"more than {MAX_REDIRECTS} redirects")

    def _redirect(self, uri: Uri, location: str) -> Uri:
        try:
            target = parse_uri(urllib.parse.urljoin(uri.text, location))
        except ValueError as exc:
            raise _End(Status.INVALID_URI, f"bad redirect: {exc}") from None
        problem = scheme_problem(target, allow_http=self.config.allow_http)
        if problem is not None:
            raise _End(Status.INVALID_URI, f"redirected to {target}: {problem}")
        log.info("Firmware download from %s: redirected to %s", uri, target)
        return target

    def _connect(self, uri: Uri) -> http.client.HTTPConnection:
        timeout = self._timeout()
        if uri.scheme == "http":
            return http.client.HTTPConnection(uri.host, uri.port, timeout=timeout)
        try:
            context = ssl.create_default_context(cafile=self.config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise _End(Status.INVALID_URI, f"cannot load firmware.ca_file: {safe(exc)}") from exc
        return http.client.HTTPSConnection(uri.host, uri.port, timeout=timeout, context=context)

    def _timeout(self) -> float:
        left = self.deadline - self.clock()
        if left <= 0:
            raise _End(Status.CONNECTION_LOST, f"took longer than {self.config.timeout:g} s")
        return min(self.config.connect_timeout, left)

    def _request(
        self,
        connection: http.client.HTTPConnection,
        uri: Uri,
        offset: int,
        validator: str | None,
    ) -> http.client.HTTPResponse:
        headers = {"User-Agent": f"edged/{__version__}", "Accept-Encoding": "identity"}
        if uri.username is not None:
            secret = f"{uri.username}:{uri.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(secret).decode()
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if validator is not None:
                headers["If-Range"] = validator
        try:
            connection.request("GET", uri.target, headers=headers)
            self.sock = connection.sock  # the response may take it over from the connection
            return connection.getresponse()
        except ssl.SSLCertVerificationError as exc:
            raise _End(
                Status.INVALID_URI, f"{uri}: TLS verification failed: {safe(exc.verify_message)}"
            ) from exc
        except socket.gaierror as exc:
            raise _End(Status.INVALID_URI, f"{uri}: cannot resolve the host: {safe(exc)}") from exc
        except (OSError, http.client.HTTPException) as exc:
            if self.started:
                raise _Cut(f"{type(exc).__name__}: {safe(exc)}") from exc
            raise _End(Status.INVALID_URI, f"{uri}: cannot connect: {safe(exc)}") from exc

    def _receive(
        self,
        response: http.client.HTTPResponse,
        offset: int,
    ) -> int:
        """Write the body to the partial file; its size once complete."""
        if response.status == 416 and offset > 0:
            raise _Restart("the server refused the range")
        if response.status == 206 and offset > 0:
            found = _CONTENT_RANGE.fullmatch(response.getheader("Content-Range") or "")
            if found is None or int(found.group(1)) != offset:
                raise _Restart("the server sent another range")
        elif response.status == 200:
            offset = 0
        else:
            reason = safe(response.reason, 80)
            raise _End(Status.INVALID_URI, f"{self.uri}: HTTP {response.status} {reason}")
        self.started = True
        length = response.length  # None: not announced (chunked or until close)
        limit = self.config.max_bytes
        if length is not None and offset + length > limit:
            raise _End(
                Status.OUT_OF_MEMORY,
                f"the image has {offset + length} bytes; firmware.max_bytes is {limit}",
                drop=True,
            )
        if offset == 0:
            validator = response.getheader("ETag") or response.getheader("Last-Modified")
            self._write_safely(lambda: self._record(validator))
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC)
        descriptor = self._write_safely(lambda: os.open(self.part, flags, 0o640))
        try:
            size = offset + self._copy(response, descriptor, offset)
            self._write_safely(lambda: os.fsync(descriptor))
        finally:
            os.close(descriptor)
        return size

    def _copy(
        self,
        response: http.client.HTTPResponse,
        descriptor: int,
        offset: int,
    ) -> int:
        received = 0
        limit = self.config.max_bytes
        announced = response.length
        while True:
            if self.stop.is_set():
                raise _End(Status.CONNECTION_LOST, "stopped")
            timeout = self._timeout()  # also ends the download at the overall deadline
            if self.sock is not None:
                with contextlib.suppress(OSError):  # closed by the response at its end
                    self.sock.settimeout(timeout)
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _Cut(f"after {offset + received} bytes: {type(exc).__name__}") from exc
            if not chunk:
                if announced is not None and received < announced:  # closed early
                    raise _Cut(f"after {offset + received} of {offset + announced} bytes")
                return received
            received += len(chunk)
            if offset + received > limit:
                raise _End(
                    Status.OUT_OF_MEMORY,
                    f"the image is larger than firmware.max_bytes ({limit})",
                    drop=True,
                )
            self._write_safely(functools.partial(_write_all, descriptor, chunk))

    def _write_safely(self, write: Callable[[], _T]) -> _T:
        try:
            return write()
        except OSError as exc:
            full = exc.errno in _DISK_FULL
            what = "the disk is full" if full else f"cannot write the image: {safe(exc)}"
            raise _End(Status.OUT_OF_MEMORY, what, drop=True) from exc

    # -- the end -------------------------------------------------------------------------------

    def _finish(self, size: int) -> Outcome:
        if self.verifier is not None:
            digest = self.verifier.digest()
            try:
                with open(self.part, "rb") as file:
                    while block := file.read(1024 * 1024):
                        digest.update(block)
            except OSError as exc:
                raise _End(Status.OUT_OF_MEMORY, f"cannot read the image: {safe(exc)}") from exc
            if not self.verifier.matches(digest):
                raise _End(
                    Status.VERIFICATION_FAILED,
                    f"the {self.verifier.algorithm} digest does not match the verifier",
                    drop=True,
                )
        self._write_safely(lambda: os.replace(self.part, self.path))
        self._write_safely(lambda: os.unlink(meta_path(self.path)))
        _sync_directory(os.path.dirname(self.path))
        return Outcome(Status.SUCCESS, f"{size} bytes", size)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _read_small(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read(4096)


def _sync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class Downloader:
    """Runs :func:`fetch` in a thread of its own, at most ``workers`` at once.

    Cancelling :meth:`download` sets the fetch's stop flag; the thread sees it after its
    current read (at most ``connect_timeout``) and leaves the partial file for a resume.
    """

    def __init__(self, workers: int = WORKERS) -> None:
        self._slots = asyncio.Semaphore(workers)

    async def download(
        self, uri: Uri, verifier: Verifier | None, path: str, config: FirmwareConfig
    ) -> Outcome:
        """Fetch ``uri`` to ``path``. Cancelling stops the fetch (partial file kept)."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[Outcome] = loop.create_future()
            stop = threading.Event()

            def work() -> None:
                try:
                    outcome = fetch(uri, verifier, path, config, stop)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
                    _hand_over(loop, done, None, exc)
                else:
                    _hand_over(loop, done, outcome, None)

            # Blocking edge: the fetch (sockets, file writes, hashing) runs in this thread.
            threading.Thread(target=work, name="edged-firmware", daemon=True).start()
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                stop.set()
                await asyncio.wait({done}, timeout=STOP_GRACE)
                raise


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Outcome],
    outcome: Outcome | None,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            assert outcome is not None
            done.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(settle)
