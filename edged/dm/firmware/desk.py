"""Firmware requests of the platform, carried out per managed device (docs/firmware.md).

:class:`FirmwareDesk` answers ``mgmt/initiate/firmware/download`` and ``.../update`` (202, or
400 in the wrong state or while one is outstanding, 500, 501 when the target has no
``firmware.install``), applies the platform's writes of ``mgmt.firmware``, and runs at most one
download or install per device as a task. Every step of the state machine
(:mod:`edged.dm.firmware.state`) is saved and notified at once: one notify per step with all
the sub-fields it changed, to each observer of ``mgmt.firmware`` or one of its sub-fields
(held back until the device is managed).

Images live in the ``firmware`` folder next to the agent's state file, one per device:
``fw+<typeId>+<deviceId>.img``, or ``.deb`` for the gateway's ``install-package`` (the root
helper's name rules, :mod:`edged.privileged.names`, which also reads the version the package
must have from ``<image>.version``, written here when ``mgmt.firmware.version`` is given);
``.part`` and ``.part.json`` while downloading. A downloaded image is deleted after its
install (whatever the outcome), when a platform write resets ``state`` to 0 or changes the
URI or verifier, and when its verification fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from edged import codec
from edged.config.management import FirmwareConfig
from edged.dm import codes
from edged.dm.actions import ActionError, ActionRunner
from edged.dm.attributes import DeviceAttributes, affected
from edged.dm.firmware import install
from edged.dm.firmware import state as fs
from edged.dm.firmware.download import Downloader, remove_files
from edged.dm.firmware.state import Firmware, Refused, Status
from edged.dm.firmware.uri import parse_uri, redact, scheme_problem
from edged.dm.firmware.verify import parse_verifier
from edged.dm.outgoing import Outgoing
from edged.dm.targets import Target, firmware_of
from edged.model import DeviceIdentity, JSONValue
from edged.privileged.names import VERSION_SUFFIX
from edged.text import safe

log = logging.getLogger(__name__)

FIELD = "mgmt.firmware"
NOT_SUPPORTED = "firmware actions are not supported: this device has no firmware.install"


class FirmwareDesk:
    """Firmware state, downloads and installs of every managed device."""

    def __init__(
        self,
        *,
        directory: str,
        runner: ActionRunner,
        out: Outgoing,
        attributes: Callable[[DeviceIdentity], DeviceAttributes],
        is_managed: Callable[[DeviceIdentity], bool],
        save: Callable[[], None],
        notify: Callable[[DeviceIdentity, list[str]], None],
        version: str,
        wall: Callable[[], float] = time.time,
        downloader: Downloader | None = None,
        restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.directory = directory
        self._restart = restart
        self.runner = runner
        self.out = out
        self._attributes = attributes
        self._is_managed = is_managed
        self._save = save
        self._notify_names = notify
        self.version = version
        self.wall = wall
        self.downloader = downloader or Downloader()
        self._jobs: dict[DeviceIdentity, asyncio.Task[None]] = {}
        self._unnotified: dict[DeviceIdentity, dict[str, JSONValue]] = {}

    @property
    def running(self) -> int:
        """Downloads and installs in progress."""
        return len(self._jobs)

    def image_path(self, target: Target) -> str:
        """Where the target's image is kept (``+`` cannot occur in an id)."""
        config = firmware_of(target)
        package = config is not None and config.install is not None and config.install.builtin
        extension = ".deb" if package == "install-package" else ".img"
        device = target.device
        return os.path.join(self.directory, f"fw+{device.type_id}+{device.device_id}{extension}")

    def current(self, device: DeviceIdentity) -> Firmware:
        """The device's ``mgmt.firmware``."""
        return Firmware.from_value(self._attributes(device).values.get(FIELD))

    # -- steps, saved and notified -------------------------------------------------------------

    def _set(self, device: DeviceIdentity, new: Firmware) -> dict[str, JSONValue]:
        old = self.current(device)
        self._attributes(device).values[FIELD] = new.value()
        return fs.changes(old, new)

    def _step(self, device: DeviceIdentity, new: Firmware) -> None:
        changed = self._set(device, new)
        self._save()
        if changed:
            if self._is_managed(device):
                self._notify(device, changed)
            else:
                self._unnotified.setdefault(device, {}).update(changed)

    def _notify(self, device: DeviceIdentity, changed: dict[str, JSONValue]) -> None:
        fields: list[dict[str, Any]] = []
        for name in affected(self._attributes(device).observed, FIELD):
            if name == FIELD:
                fields.append({"field": name, "value": changed})
            elif name[len(FIELD) + 1 :] in changed:
                fields.append({"field": name, "value": changed[name[len(FIELD) + 1 :]]})
        if fields:
            self.out.report(device, "notify", {"fields": fields})

    def managed(self, device: DeviceIdentity) -> None:
        """The device is managed (again): send the changes held back until now."""
        changed = self._unnotified.pop(device, None)
        if changed:
            self._notify(device, changed)

    # -- start and the platform's writes -------------------------------------------------------

    def load(self, targets: Iterable[Target]) -> None:
        """Settle what a restart interrupted (once, at start; a few stat/unlink calls)."""
        for target in targets:
            device, now = target.device, self.current(target.device)
            image = self.image_path(target)
            if now.state == fs.DOWNLOADING:
                log.warning("%s: a firmware download was interrupted by a restart", device)
                self._step(device, fs.restarted(now))
            elif now.update_status == Status.IN_PROGRESS:
                self._settle_install(target, now, image)
            elif now.state == fs.DOWNLOADED and not os.path.isfile(image):
                log.warning("%s: the downloaded firmware image is gone", device)
                self._step(device, fs.download_failed(now, Status.OUT_OF_MEMORY))

    def _settle_install(self, target: Target, now: Firmware, image: str) -> None:
        device, attributes = target.device, self._attributes(target.device)
        config = firmware_of(target)
        action = None if config is None else config.install
        at_restart = install.completes_at_restart(target.is_gateway, action)
        status = install.after_restart(now, attributes.job, self.version, at_restart=at_restart)
        attributes.job = {}
        with contextlib.suppress(OSError):
            remove_files(image)  # blocking edge, at start: a few unlinks
        if status == Status.SUCCESS:
            log.info(
                "%s: firmware %s is installed (running after the restart)", device, now.version
            )
            self._installed(device, now)
        else:
            log.warning(
                "%s: the firmware install did not complete (updateStatus %d)", device, status
            )
            self._step(device, fs.install_failed(now, status))

    def plan_write(self, device: DeviceIdentity, values: Iterable[JSONValue]) -> Firmware | None:
        """The value the platform's writes of ``mgmt.firmware`` lead to (raises Refused)."""
        planned = None
        for value in values:
            planned = fs.platform_write(planned or self.current(device), value)
        return planned

    def commit_write(self, target: Target, planned: Firmware) -> None:
        """Apply a planned write (not notified: the platform made the change itself)."""
        device = target.device
        before = self.current(device)
        if before.state == fs.DOWNLOADED and planned.state == fs.IDLE:
            remove_files(self.image_path(target))  # blocking edge: a few unlinks
        self._set(device, planned)

    # -- download ------------------------------------------------------------------------------

    def download(self, target: Target, req_id: str) -> None:
        """``mgmt/initiate/firmware/download``: answer, then fetch in a task."""
        device, config = target.device, firmware_of(target)
        if config is None:
            self.out.answer(device, req_id, codes.NOT_IMPLEMENTED, NOT_SUPPORTED)
            return
        now = self.current(device)
        try:
            started = fs.start_download(now)
            uri = parse_uri(now.uri)
            verifier = parse_verifier(now.verifier)
        except Refused as exc:
            self.out.answer(device, req_id, exc.rc, exc.message)
            return
        except ValueError as exc:
            self.out.answer(device, req_id, codes.BAD_REQUEST, str(exc))
            return
        self.out.answer(device, req_id, codes.ACCEPTED)
        self._step(device, started)
        problem = scheme_problem(uri, allow_http=config.allow_http)
        if problem is not None:
            log.warning("%s: firmware download from %s refused: %s", device, uri, problem)
            self._step(device, fs.download_failed(started, Status.INVALID_URI))
            return
        log.info("%s: downloading firmware %s from %s", device, now.version or "?", uri)
        path = self.image_path(target)
        self._run(device, "download", self._download(device, uri, verifier, path, config))

    async def _download(
        self, device: DeviceIdentity, uri: Any, verifier: Any, path: str, config: FirmwareConfig
    ) -> None:
        outcome = await self.downloader.download(uri, verifier, path, config)
        now = self.current(device)
        if outcome.status == Status.SUCCESS:
            log.info("%s: firmware downloaded (%s) and verified", device, outcome.message)
            self._step(device, fs.downloaded(now))
        else:
            log.warning(
                "%s: firmware download from %s failed (updateStatus %d): %s",
                device,
                redact(now.uri),
                outcome.status,
                outcome.message,
            )
            self._step(device, fs.download_failed(now, outcome.status))

    # -- update (install) ----------------------------------------------------------------------

    def update(self, target: Target, req_id: str) -> None:
        """``mgmt/initiate/firmware/update``: answer, then install in a task."""
        device, config = target.device, firmware_of(target)
        if config is None:
            self.out.answer(device, req_id, codes.NOT_IMPLEMENTED, NOT_SUPPORTED)
            return
        now = self.current(device)
        try:
            started = fs.start_install(now)
        except Refused as exc:
            self.out.answer(device, req_id, exc.rc, exc.message)
            return
        image = self.image_path(target)
        try:
            _prepare(image, now.version)  # blocking edge: a stat and a small write
        except OSError as exc:
            self.out.answer(device, req_id, codes.INTERNAL_ERROR, f"the image: {safe(exc)}")
            self._step(device, fs.download_failed(now, Status.OUT_OF_MEMORY))
            return
        self._attributes(device).job = {"from": self.version}
        self.out.answer(device, req_id, codes.ACCEPTED)
        self._step(device, started)
        log.warning("%s: installing firmware %s", device, now.version or "(no version given)")
        at_restart = install.completes_at_restart(target.is_gateway, config.install)
        self._run(device, "update", self._install(device, config, image, at_restart=at_restart))

    async def _install(
        self, device: DeviceIdentity, config: FirmwareConfig, image: str, *, at_restart: bool
    ) -> None:
        try:
            await self.runner.run(device, config.install, image=image)
        except ActionError as exc:
            status = install.failure_status(exc)
            log.warning("%s: firmware install failed (updateStatus %d): %s", device, status, exc)
            remove_files(image)  # blocking edge: a few unlinks
            self._attributes(device).job = {}
            self._step(device, fs.install_failed(self.current(device), status))
            return
        if at_restart:
            log.warning(
                "%s: the package is installed; edged restarts to run it (the restart completes "
                "the update)",
                device,
            )
            self._save()
            self._restart()
            return
        remove_files(image)  # blocking edge: a few unlinks
        self._attributes(device).job = {}
        self._installed(device, self.current(device))

    def _installed(self, device: DeviceIdentity, now: Firmware) -> None:
        self._step(device, fs.installed(now, codec.iso_time(self.wall())))
        attributes = self._attributes(device)
        info = attributes.value("deviceInfo")
        info = dict(info) if isinstance(info, dict) else {}
        if now.version and info.get("fwVersion") != now.version:
            attributes.set_override("deviceInfo", {**info, "fwVersion": now.version})
            self._save()
            self._notify_names(device, ["deviceInfo"])

    # -- tasks ---------------------------------------------------------------------------------

    def _run(self, device: DeviceIdentity, what: str, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"dm:{device}:firmware-{what}")
        self._jobs[device] = task
        task.add_done_callback(lambda done: self._ended(device, done))

    def _ended(self, device: DeviceIdentity, task: asyncio.Task[None]) -> None:
        if self._jobs.get(device) is task:
            del self._jobs[device]
        if task.cancelled() or task.exception() is None:
            return  # cancelled at shutdown: the state on disk is settled at the next start
        log.error("%s: firmware job failed", device, exc_info=task.exception())
        now = self.current(device)
        if now.busy:  # an internal error: "could not complete"
            self._step(device, fs.install_failed(now, Status.OUT_OF_MEMORY))

    async def close(self) -> None:
        """Stop every download and install; their state is settled at the next start."""
        tasks = list(self._jobs.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _prepare(image: str, version: str) -> None:
    """Check the image is there; write the version it must have next to it (the root helper
    checks a package against ``<image>.version``; other installs may ignore it)."""
    if not os.path.isfile(image):
        raise FileNotFoundError(errno.ENOENT, "the downloaded image is gone")
    sidecar = f"{image}{VERSION_SUFFIX}"
    if version:
        with open(sidecar, "w", encoding="utf-8") as file:
            file.write(f"{version}\n")
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sidecar)
