"""logind_reboot and start_install against mocks of logind and systemd on a private system bus."""

from __future__ import annotations

import asyncio
import gc
import re
import warnings
from pathlib import Path

import pytest

from edged.privileged import PrivilegedError
from edged.privileged.client import logind_reboot, start_install
from tests.integration.privileged.mockbus import MockBus

pytestmark = pytest.mark.integration

MANAGER = "org.freedesktop.systemd1.Manager"
IMAGE = "edged_0.2.0-1_all.deb"
UNIT = "edged-install@edged_0.2.0\\x2d1_all.deb.service"


def _raising(name: str, message: str) -> str:
    return f"raise dbus.exceptions.DBusException({message!r}, name={name!r})"


def _start_unit(result: str | None, *, job: int = 7, other_first: bool = True) -> str:
    """Code for a mock StartUnit that returns job ``job``; with ``result``, its JobRemoved is
    sent before the reply (the race the client must survive), after a JobRemoved of some other
    unit's job and one of another job of the same unit."""
    path = f"/org/freedesktop/systemd1/job/{job}"
    emit = "self.EmitSignal({m!r}, 'JobRemoved', 'uoss', [dbus.UInt32({n}), {p!r}, {u}, {r!r}])"
    lines = []
    if result is not None:
        if other_first:
            lines.append(
                emit.format(
                    m=MANAGER,
                    n=3,
                    p="/org/freedesktop/systemd1/job/3",
                    u="'other.service'",
                    r="failed",
                )
            )
            lines.append(
                emit.format(
                    m=MANAGER, n=4, p="/org/freedesktop/systemd1/job/4", u="args[0]", r="failed"
                )
            )
        lines.append(emit.format(m=MANAGER, n=job, p=path, u="args[0]", r=result))
    lines.append(f"ret = dbus.ObjectPath({path!r})")
    return "\n".join(lines)


@pytest.fixture
def image(tmp_path: Path) -> str:
    folder = tmp_path / "firmware"
    folder.mkdir()
    path = folder / IMAGE
    path.write_bytes(b"not looked at by the client")
    return str(path)


async def test_reboot_calls_logind_without_interaction(logind: MockBus) -> None:
    await logind_reboot()
    assert logind.calls("Reboot") == [[False]]


@pytest.mark.parametrize(
    "error",
    [
        "org.freedesktop.DBus.Error.AccessDenied",
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
        "org.freedesktop.login1.BlockedByInhibitorLock",
    ],
)
async def test_refused_reboot_is_a_privileged_error(logind: MockBus, error: str) -> None:
    logind.control.AddMethod(
        "org.freedesktop.login1.Manager", "Reboot", "b", "", _raising(error, "Not\nallowed")
    )
    with pytest.raises(PrivilegedError) as caught:
        await logind_reboot()
    assert str(caught.value) == f"reboot refused: {error}: Not\\nallowed"


async def test_reboot_without_a_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/none.socket")
    # dbus-fast 2.44 (Debian 13) leaves a failed connection's socket to the garbage collector,
    # with a ResourceWarning; collect it here rather than at some later test's expense.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        message = ""
        try:
            await logind_reboot()
        except PrivilegedError as exc:
            message = str(exc)
        gc.collect()
    assert message.startswith("cannot reach the system bus: ")


async def test_reboot_without_logind(systemd: MockBus) -> None:
    # A bus without logind on it: the bus itself answers the call with an error.
    with pytest.raises(PrivilegedError, match=r"reboot refused: org\.freedesktop\.DBus\.Error"):
        await logind_reboot()


async def test_install_done(systemd: MockBus, image: str) -> None:
    systemd.control.AddMethod(MANAGER, "StartUnit", "ss", "o", _start_unit("done"))
    await start_install(image, timeout=10, firmware_dir=str(Path(image).parent))
    assert systemd.calls("StartUnit") == [[UNIT, "replace"]]


@pytest.mark.parametrize("result", ["failed", "timeout", "canceled", "dependency"])
async def test_install_not_done_is_an_error(systemd: MockBus, image: str, result: str) -> None:
    systemd.control.AddMethod(MANAGER, "StartUnit", "ss", "o", _start_unit(result))
    with pytest.raises(PrivilegedError, match=re.escape(f"{UNIT} ended with result {result}")):
        await start_install(image, timeout=10, firmware_dir=str(Path(image).parent))


async def test_install_waits_for_its_job(systemd: MockBus, image: str) -> None:
    systemd.control.AddMethod(MANAGER, "StartUnit", "ss", "o", _start_unit(None, job=9))
    task = asyncio.create_task(
        start_install(image, timeout=10, firmware_dir=str(Path(image).parent))
    )
    for _ in range(500):
        if systemd.calls("StartUnit"):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert not task.done()
    systemd.control.EmitSignal(
        MANAGER, "JobRemoved", "uoss", [9, "/org/freedesktop/systemd1/job/9", UNIT, "done"]
    )
    await asyncio.wait_for(task, 5)


async def test_install_timeout(systemd: MockBus, image: str) -> None:
    systemd.control.AddMethod(MANAGER, "StartUnit", "ss", "o", _start_unit(None))
    with pytest.raises(PrivilegedError, match=r"did not finish within 0.3 s"):
        await start_install(image, timeout=0.3, firmware_dir=str(Path(image).parent))


async def test_install_start_refused(systemd: MockBus, image: str) -> None:
    error = "org.freedesktop.DBus.Error.AccessDenied"
    systemd.control.AddMethod(
        MANAGER, "StartUnit", "ss", "o", _raising(error, "Interactive authentication required.")
    )
    with pytest.raises(PrivilegedError, match=f"refused: {error}: Interactive"):
        await start_install(image, timeout=10, firmware_dir=str(Path(image).parent))


async def test_install_checks_the_image_before_asking(
    systemd: MockBus, image: str, tmp_path: Path
) -> None:
    systemd.control.AddMethod(MANAGER, "StartUnit", "ss", "o", _start_unit("done"))
    folder = str(Path(image).parent)
    (tmp_path / "elsewhere.deb").write_bytes(b"x")
    (Path(folder) / "link.deb").symlink_to(image)
    (Path(folder) / "notes.txt").write_text("x")
    cases = {
        str(tmp_path / "elsewhere.deb"): "not in the firmware folder",
        f"{folder}/../elsewhere.deb": "not in the firmware folder",
        f"{folder}/link.deb": "not a regular file",
        f"{folder}/notes.txt": "must start with a letter or digit",
        f"{folder}/missing.deb": "No such file",
    }
    for path, expected in cases.items():
        with pytest.raises(PrivilegedError, match=expected):
            await start_install(path, timeout=10, firmware_dir=folder)
    assert systemd.calls("StartUnit") == []
