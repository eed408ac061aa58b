"""The unprivileged side: asking logind to reboot and systemd to run the install helper.

Both go over the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` when set, as dbus-fast reads it), one
connection per act, closed afterwards. Neither asks for interactive authorization: polkit's
answer for the ``edged`` user comes from the shipped rule alone (docs/privileged.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from edged.dbusutil import close_bus
from edged.privileged import PrivilegedError
from edged.privileged.names import FIRMWARE_DIR, check_image_name, install_unit
from edged.text import safe

log = logging.getLogger(__name__)

LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
LOGIND_MANAGER = "org.freedesktop.login1.Manager"
SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"


@asynccontextmanager
async def _system_bus() -> AsyncIterator[MessageBus]:
    try:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    except Exception as exc:  # missing socket, refused, failed authentication, bad address
        raise PrivilegedError(f"cannot reach the system bus: {safe(exc)}") from exc
    try:
        yield bus
    finally:
        await close_bus(bus)  # releases the socket at once, also on dbus-fast 2.44


async def _call(bus: MessageBus, message: Message, what: str) -> Message:
    reply = await bus.call(message)
    assert reply is not None  # only calls flagged NO_REPLY_EXPECTED return None
    if reply.message_type is MessageType.ERROR:
        detail = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
        raise PrivilegedError(
            f"{what} refused: {safe(reply.error_name)}" + (f": {safe(detail)}" if detail else "")
        )
    return reply


async def logind_reboot() -> None:
    """Ask logind to reboot the machine now (``Reboot(false)``: no interactive authorization).

    Returns once logind has accepted; the machine goes down shortly after. Raises
    :class:`PrivilegedError` when the bus cannot be reached or logind refuses (polkit denial,
    an inhibitor lock, logind not running).
    """
    async with _system_bus() as bus:
        await _call(
            bus,
            Message(
                destination=LOGIND,
                path=LOGIND_PATH,
                interface=LOGIND_MANAGER,
                member="Reboot",
                signature="b",
                body=[False],
            ),
            "reboot",
        )
    log.warning("Reboot requested from logind")


def image_name(image_path: str, firmware_dir: str = FIRMWARE_DIR) -> str:
    """The file name of ``image_path`` if it is an acceptable image lying in ``firmware_dir``.

    The checks the root helper repeats, made here to fail early with a clear message: the
    path's folder is ``firmware_dir`` itself, the name is acceptable, the file is a regular
    file (not a symlink). Raises :class:`PrivilegedError`.
    """
    folder, name = os.path.split(os.path.abspath(image_path))
    if folder != os.path.abspath(firmware_dir):
        raise PrivilegedError(f"{safe(image_path)} is not in the firmware folder {firmware_dir}")
    try:
        check_image_name(name)
        # lstat of a local file: quick enough to make on the event loop.
        mode = os.lstat(image_path).st_mode
    except (ValueError, OSError) as exc:
        raise PrivilegedError(f"{safe(image_path)}: {safe(exc)}") from exc
    if not stat.S_ISREG(mode):
        raise PrivilegedError(f"{safe(image_path)} is not a regular file")
    return name


async def start_install(
    image_path: str,
    *,
    timeout: float,  # noqa: ASYNC109 - the deadline is the install action's configured one
    firmware_dir: str = FIRMWARE_DIR,
) -> None:
    """Have the root helper unit install the image at ``image_path`` and wait for its result.

    Starts ``edged-install@<name>.service`` (mode ``replace``) and waits for systemd's
    ``JobRemoved`` of that job: ``done`` returns; any other result (``failed``, ``timeout``,
    ``canceled``, ...) raises :class:`PrivilegedError` naming it, as do a refused start and
    ``timeout`` seconds passing (the helper may then still be running; its outcome is in the
    journal). The image itself is checked again by the helper, as root.
    """
    unit = install_unit(image_name(image_path, firmware_dir))
    removed: dict[str, str] = {}  # job path -> result, for this unit's jobs
    arrived = asyncio.Event()

    def on_message(message: Message) -> None:
        if (
            message.message_type is MessageType.SIGNAL
            and message.interface == SYSTEMD_MANAGER
            and message.member == "JobRemoved"
            and message.signature == "uoss"
            and message.body[2] == unit
        ):
            removed[message.body[1]] = message.body[3]
            arrived.set()

    try:
        async with asyncio.timeout(timeout), _system_bus() as bus:
            bus.add_message_handler(on_message)
            # Listen before starting: the job may end before StartUnit's reply arrives. The
            # requester of a job gets its JobRemoved without Manager.Subscribe().
            await _call(
                bus,
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[
                        f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',"
                        f"interface='{SYSTEMD_MANAGER}',member='JobRemoved'"
                    ],
                ),
                "listening for systemd's jobs",
            )
            reply = await _call(
                bus,
                Message(
                    destination=SYSTEMD,
                    path=SYSTEMD_PATH,
                    interface=SYSTEMD_MANAGER,
                    member="StartUnit",
                    signature="ss",
                    body=[unit, "replace"],
                ),
                f"starting {unit}",
            )
            job = str(reply.body[0])
            log.info("Install of %s: started %s (job %s)", safe(image_path), unit, job)
            while job not in removed:
                arrived.clear()
                await arrived.wait()
    except TimeoutError:
        raise PrivilegedError(
            f"{unit} did not finish within {timeout:g} s (it may still be running)"
        ) from None
    result = removed[job]
    if result != "done":
        raise PrivilegedError(f"{unit} ended with result {safe(result)} (see its journal)")
    log.info("Install of %s: %s done", safe(image_path), unit)
