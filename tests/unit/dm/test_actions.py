"""Actions: parameters checked before anything runs, real programs run and cleaned up, adapter
command errors mapped to iotdm-1 return codes."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import pytest

from edged.config.management import ActionConfig, ActionParameter
from edged.dm.actions import (
    MAX_VALUE_LENGTH,
    OUTPUT_KEPT,
    ActionBadRequest,
    ActionError,
    ActionFailed,
    ActionRunner,
    ActionUnsupported,
    _ProgramProtocol,
    check_params,
    env_name,
)
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported
from edged.model import Command, DeviceIdentity, JSONValue

GW = DeviceIdentity("gw", "gw-1")
DEV = DeviceIdentity("sensor", "s-1")


class FakeAdapter:
    """Records commands; raises ``error`` or sleeps ``delay`` when told to."""

    def __init__(self, error: BaseException | None = None, delay: float = 0.0) -> None:
        self.commands: list[Command] = []
        self.error = error
        self.delay = delay

    async def execute(self, command: Command) -> Mapping[str, JSONValue] | None:
        self.commands.append(command)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return {"done": True}


async def never_called(command: Command) -> None:
    raise AssertionError(f"unexpected command {command}")


@pytest.fixture(autouse=True)
def _reaper_threads_finished() -> Iterator[None]:
    """Python 3.11's asyncio reaps each child in a thread that ends just after the exit has been
    reported; join it, so the leak check does not catch it in its last instructions."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("asyncio-waitpid-"):
            thread.join(timeout=5)


def runner(adapter: FakeAdapter | None = None) -> ActionRunner:
    return ActionRunner(adapter.execute if adapter else never_called, gateway=GW)


def script(tmp_path: Path, body: str, name: str = "action.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(); it is dead for our purpose only once reaped.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def gone(pid: int, within: float = 2.0) -> bool:
    """Whether ``pid`` is dead within ``within`` s: SIGKILL is delivered asynchronously, and on
    a loaded machine the killed process may take a moment to be scheduled and die."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_error_codes_and_messages() -> None:
    assert (ActionUnsupported("x").rc, ActionBadRequest("x").rc, ActionFailed("x").rc) == (
        501,
        400,
        500,
    )
    error = ActionBadRequest("bad value")
    assert isinstance(error, ActionError)
    assert str(error) == error.message == "bad value"


def test_env_name() -> None:
    assert env_name("fw.url") == "EDGED_PARAM_FW_URL"
    assert env_name("a-b_c9") == "EDGED_PARAM_A_B_C9"


PARAMS = (
    ActionParameter(name="mode", required=True, pattern="fast|slow"),
    ActionParameter(name="level", default="3", pattern=r"\d"),
    ActionParameter(name="note"),
)


def test_params_defaults_filled_and_optional_left_out() -> None:
    action = ActionConfig(run=("/bin/true",), parameters=PARAMS)
    assert check_params(action, {"mode": "fast"}) == {"mode": "fast", "level": "3"}
    assert check_params(action, {"mode": "slow", "level": "7", "note": "hi"}) == {
        "mode": "slow",
        "level": "7",
        "note": "hi",
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"mode": "fast", "bogus": "1", "other": "2"}, "unknown parameters: bogus, other"),
        ({"level": "1"}, "missing required parameters: mode"),
        ({"mode": "faster"}, "does not match fast|slow"),
        ({"mode": "fast", "level": "12"}, r"does not match \\d$"),
        ({"mode": "fast", "note": "x" * (MAX_VALUE_LENGTH + 1)}, "longer than 4096"),
        ({"mode": "fast", "note": "a\0b"}, "NUL"),
    ],
)
async def test_bad_params_run_nothing(
    tmp_path: Path, params: dict[str, str], expected: str
) -> None:
    marker = tmp_path / "ran"
    action = ActionConfig(run=(script(tmp_path, f"touch {marker}\n"),), parameters=PARAMS)
    with pytest.raises(ActionBadRequest, match=expected) as caught:
        await runner().run(DEV, action, params)
    assert caught.value.rc == 400
    assert not marker.exists()
    adapter = FakeAdapter()
    command_action = ActionConfig(command="setMode", parameters=PARAMS)
    with pytest.raises(ActionBadRequest):
        await runner(adapter).run(DEV, command_action, params)
    assert adapter.commands == []


async def test_params_for_an_action_without_parameters_are_unknown() -> None:
    with pytest.raises(ActionBadRequest, match="unknown parameters: x"):
        await runner().run(GW, ActionConfig(run=("/bin/true",)), {"x": "1"})


async def test_not_configured_is_unsupported() -> None:
    with pytest.raises(ActionUnsupported, match="not configured") as caught:
        await runner().run(GW, None)
    assert caught.value.rc == 501


async def test_true_succeeds_and_false_fails() -> None:
    await runner().run(GW, ActionConfig(run=("/bin/true",)))
    with pytest.raises(ActionFailed, match=r"exit code 1"):
        await runner().run(GW, ActionConfig(run=("/bin/false",)))


async def test_program_sees_minimal_env_with_params_and_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGED_SECRET_TOKEN", "do-not-leak")
    out = tmp_path / "env.txt"
    action = ActionConfig(
        run=(script(tmp_path, f'env > {out}\necho "args: $*" >> {out}\n'), "one", "two words"),
        parameters=(ActionParameter(name="fw.url", required=True), ActionParameter(name="x")),
    )
    await runner().run(DEV, action, {"fw.url": "http://h/$(reboot);'\n"})
    lines = out.read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith(" "))
    assert env["EDGED_DEVICE_TYPE"] == "sensor"
    assert env["EDGED_DEVICE_ID"] == "s-1"
    assert env["EDGED_GATEWAY_ID"] == "gw-1"
    assert env["LANG"] == "C.UTF-8"
    assert env["EDGED_PARAM_FW_URL"] == "http://h/$(reboot);'"  # passed verbatim, not run
    assert "EDGED_PARAM_X" not in env
    assert "EDGED_SECRET_TOKEN" not in env
    assert "HOME" not in env
    assert "args: one two words" in lines


async def test_program_has_no_stdin(tmp_path: Path) -> None:
    # With stdin at /dev/null, `read` hits end of input at once instead of waiting.
    action = ActionConfig(run=(script(tmp_path, "read line && exit 3\nexit 0\n"),), timeout=5)
    await runner().run(GW, action)


async def test_failure_names_exit_code_and_last_stderr_line(tmp_path: Path) -> None:
    body = (
        "echo starting\necho 'first problem' >&2\nprintf 'disk \\033[31mfull\\n\\n' >&2\nexit 4\n"
    )
    action = ActionConfig(run=(script(tmp_path, body),))
    with pytest.raises(ActionFailed) as caught:
        await runner().run(GW, action)
    message = str(caught.value)
    assert "exit code 4" in message
    assert message.endswith(r"disk \x1b[31mfull")  # the last non-empty line, escaped
    assert "\n" not in message
    assert caught.value.rc == 500


async def test_huge_output_ends_with_the_last_line(tmp_path: Path) -> None:
    body = (
        "head -c 3000000 /dev/zero | tr '\\0' a\n"
        "head -c 3000000 /dev/zero >&2\n"
        "printf '\\nlast\\n' >&2\n"
        "exit 1\n"
    )
    with pytest.raises(ActionFailed, match=r"exit code 1\): last$"):
        await runner().run(GW, ActionConfig(run=(script(tmp_path, body),), timeout=30))


def test_output_kept_is_bounded() -> None:
    protocol = _ProgramProtocol()
    for _ in range(100):
        protocol.pipe_data_received(1, b"o" * 1000)
        protocol.pipe_data_received(2, b"e" * 999 + b"!")
    assert len(protocol.stdout) == len(protocol.stderr) == OUTPUT_KEPT
    assert protocol.stderr.endswith(b"e!")


async def test_missing_and_not_executable_program(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match=r"cannot run /nonexistent/prog: .*No such file"):
        await runner().run(GW, ActionConfig(run=("/nonexistent/prog",)))
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(ActionFailed, match=r"cannot run .*Permission denied"):
        await runner().run(GW, ActionConfig(run=(str(plain),)))


async def test_timeout_kills_program_and_its_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"sleep 60 &\necho $$ $! > {pids}\nwait\n"
    action = ActionConfig(run=(script(tmp_path, body),), timeout=0.5)
    with pytest.raises(ActionFailed, match=r"timed out after 0.5 s"):
        await runner().run(GW, action)
    shell, child = (int(pid) for pid in pids.read_text().split())
    assert gone(shell)
    assert gone(child)


async def test_leftovers_of_a_finished_program_are_killed(tmp_path: Path) -> None:
    # The action is over when the program exits; what it left running in its group goes too.
    pids = tmp_path / "pids"
    body = f"sleep 60 &\necho $! > {pids}\nexit 0\n"
    await asyncio.wait_for(runner().run(GW, ActionConfig(run=(script(tmp_path, body),))), 10)
    assert gone(int(pids.read_text()))


async def test_cancelling_the_run_kills_the_program(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"echo $$ > {pids}\nexec sleep 60\n"
    task = asyncio.create_task(runner().run(GW, ActionConfig(run=(script(tmp_path, body),))))
    for _ in range(200):
        if pids.exists() and pids.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(int(pids.read_text()))


async def test_killed_by_signal_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match=r"signal 9"):
        await runner().run(GW, ActionConfig(run=(script(tmp_path, "kill -9 $$\n"),)))


async def test_command_action_sends_data_merged_with_params() -> None:
    adapter = FakeAdapter()
    action = ActionConfig(
        command="setMode",
        data={"mode": "auto", "hold": 5},
        parameters=(ActionParameter(name="mode"),),
    )
    await runner(adapter).run(DEV, action, {"mode": "manual"})
    [command] = adapter.commands
    assert command.device == DEV
    assert command.name == "setMode"
    assert command.format == "json"
    assert command.data == {"mode": "manual", "hold": 5}
    assert orjson.loads(command.payload) == command.data
    await runner(adapter).run(DEV, action)
    assert adapter.commands[1].data == {"mode": "auto", "hold": 5}


@pytest.mark.parametrize(
    ("error", "expected", "rc"),
    [
        (CommandRejected("mode out of range"), ActionBadRequest, 400),
        (CommandUnsupported("no such command"), ActionUnsupported, 501),
        (CommandFailed("bus\nerror"), ActionFailed, 500),
        (RuntimeError("adapter bug"), ActionFailed, 500),
    ],
)
async def test_command_errors_map_to_return_codes(
    error: Exception, expected: type[ActionError], rc: int
) -> None:
    adapter = FakeAdapter(error)
    with pytest.raises(expected) as caught:
        await runner(adapter).run(DEV, ActionConfig(command="reset"))
    assert caught.value.rc == rc
    assert "\n" not in str(caught.value)
    assert str(error).splitlines()[0] in str(caught.value)


async def test_command_timeout_is_a_failure() -> None:
    adapter = FakeAdapter(delay=30)
    action = ActionConfig(command="reset", timeout=0.1)
    with pytest.raises(ActionFailed, match=r"timed out after 0.1 s"):
        await runner(adapter).run(DEV, action)


async def test_gateway_has_no_command_actions() -> None:
    adapter = FakeAdapter()
    with pytest.raises(ActionUnsupported):
        await runner(adapter).run(GW, ActionConfig(command="reset"))
    assert adapter.commands == []


class FakePrivileged:
    """Stands in for edged.privileged.client: records the calls, raises ``error`` if given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.error = error

    async def logind_reboot(self) -> None:
        self.calls.append(("reboot",))
        if self.error is not None:
            raise self.error

    async def start_install(self, image_path: str, *, timeout: float) -> None:  # noqa: ASYNC109
        self.calls.append(("install", image_path, str(timeout)))
        if self.error is not None:
            raise self.error


@pytest.fixture
def privileged(monkeypatch: pytest.MonkeyPatch) -> FakePrivileged:
    from edged.privileged import client

    fake = FakePrivileged()
    monkeypatch.setattr(client, "logind_reboot", fake.logind_reboot)
    monkeypatch.setattr(client, "start_install", fake.start_install)
    return fake


async def test_builtin_reboot(privileged: FakePrivileged) -> None:
    await runner().run(GW, ActionConfig(builtin="logind-reboot"))
    assert privileged.calls == [("reboot",)]


async def test_builtin_install_gets_the_image_and_the_timeout(privileged: FakePrivileged) -> None:
    action = ActionConfig(builtin="install-package", timeout=600)
    await runner().run(GW, action, image="/var/lib/edged/firmware/edged_1.0_all.deb")
    assert privileged.calls == [("install", "/var/lib/edged/firmware/edged_1.0_all.deb", "600.0")]


async def test_builtin_install_without_image_is_a_bad_request(
    privileged: FakePrivileged,
) -> None:
    with pytest.raises(ActionBadRequest, match="needs an image") as caught:
        await runner().run(GW, ActionConfig(builtin="install-package"))
    assert caught.value.rc == 400
    assert privileged.calls == []


async def test_privileged_error_is_a_failed_action(privileged: FakePrivileged) -> None:
    from edged.privileged import PrivilegedError

    privileged.error = PrivilegedError("reboot refused: org.freedesktop.DBus.Error.AccessDenied")
    with pytest.raises(ActionFailed) as caught:
        await runner().run(GW, ActionConfig(builtin="logind-reboot"))
    assert caught.value.rc == 500
    assert str(caught.value) == "reboot refused: org.freedesktop.DBus.Error.AccessDenied"
    with pytest.raises(ActionFailed, match="AccessDenied"):
        await runner().run(GW, ActionConfig(builtin="install-package"), image="/x.deb")


async def test_builtins_are_the_gateways_own(privileged: FakePrivileged) -> None:
    for builtin in ("logind-reboot", "install-package"):
        with pytest.raises(ActionUnsupported, match="gateway's own"):
            await runner().run(DEV, ActionConfig(builtin=builtin), image="/x.deb")
    assert privileged.calls == []


async def test_builtin_reboot_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from edged.privileged import client

    async def hang() -> None:
        await asyncio.sleep(30)

    monkeypatch.setattr(client, "logind_reboot", hang)
    with pytest.raises(ActionFailed, match=r"logind-reboot timed out after 0.1 s"):
        await runner().run(GW, ActionConfig(builtin="logind-reboot", timeout=0.1))


async def test_install_of_an_image_outside_the_firmware_folder(tmp_path: Path) -> None:
    # The real client: it refuses before it looks for a bus.
    image = tmp_path / "edged_1.0_all.deb"
    image.write_bytes(b"x")
    with pytest.raises(ActionFailed, match="is not in the firmware folder /var/lib/edged/firmware"):
        await runner().run(GW, ActionConfig(builtin="install-package"), image=str(image))


async def test_image_reaches_a_program_as_env(tmp_path: Path) -> None:
    out = tmp_path / "path.txt"
    action = ActionConfig(run=(script(tmp_path, f'printf %s "$EDGED_FIRMWARE_PATH" > {out}\n'),))
    await runner().run(GW, action, image="/data/fw/image 1.bin")
    assert out.read_text() == "/data/fw/image 1.bin"
    await runner().run(GW, action)
    assert out.read_text() == ""


async def test_image_reaches_a_command_as_data_path() -> None:
    adapter = FakeAdapter()
    action = ActionConfig(command="flash", data={"path": "configured", "slot": 2})
    await runner(adapter).run(DEV, action, image="/data/fw/image.hex")
    assert adapter.commands[0].data == {"path": "/data/fw/image.hex", "slot": 2}
    assert orjson.loads(adapter.commands[0].payload)["path"] == "/data/fw/image.hex"
