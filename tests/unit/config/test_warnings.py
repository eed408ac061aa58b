"""Unsafe but working settings (issue 8, item 15): plain TCP to a remote broker and a token file
other users can read are accepted with a warning, in check-config and when the daemon starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edged.config import load_config_text
from edged.netutil import free_port
from tests.support.daemon import running_daemon

TOKEN = "w4rn-t0ken"


def _config(tmp_path: Path, *, tls: bool, host: str, mode: int = 0o600, port: int = 1883) -> str:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(mode)
    return (
        "platform:\n  org: abc123\n  gateway: {type: gw, id: gw-1}\n"
        f"  token_file: {token}\n  tls: {str(tls).lower()}\n  host: '{host}'\n  port: {port}\n"
        "  reconnect: {initial: 1s, max: 2s}\n"
        f"storage: {{path: {tmp_path / 'outbox.sqlite'}}}\n"
        "devices:\n  - {id: s1, type: sim, adapter: simulated,"
        " simulated: {interval: 1h, values: {t: {}}}}\n"
    )


def _warnings(text: str) -> tuple[str, ...]:
    return load_config_text(text, "edged.yaml").warnings


def test_plain_tcp_to_a_remote_broker_is_a_warning(tmp_path: Path) -> None:
    warnings = _warnings(_config(tmp_path, tls=False, host="broker.example.com"))
    assert warnings == (
        "edged.yaml:5: platform.tls: warning: tls is false: the token and all data go to"
        " broker.example.com unencrypted and the broker is not authenticated",
    )


def test_plain_tcp_to_the_default_platform_host_is_a_warning(tmp_path: Path) -> None:
    text = _config(tmp_path, tls=False, host="x").replace("  host: 'x'\n", "")
    (warning,) = _warnings(text)
    assert "abc123.messaging.internetofthings.ibmcloud.com unencrypted" in warning


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LocalHost.", "mq.localhost"]
)
def test_plain_tcp_on_the_loopback_is_silent(tmp_path: Path, host: str) -> None:
    assert _warnings(_config(tmp_path, tls=False, host=host)) == ()


def test_tls_to_a_remote_broker_is_silent(tmp_path: Path) -> None:
    assert _warnings(_config(tmp_path, tls=True, host="broker.example.com")) == ()


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o666])
def test_a_token_file_other_users_can_access_is_a_warning(tmp_path: Path, mode: int) -> None:
    (warning,) = _warnings(_config(tmp_path, tls=True, host="h.example.com", mode=mode))
    assert warning == (
        f"edged.yaml:4: platform.token_file: warning: other users can access the token file"
        f" (mode {mode:04o}); make it 0600, or 0640 with group edged"
    )


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640])
def test_a_private_token_file_is_silent(tmp_path: Path, mode: int) -> None:
    # 0640 root:edged is the documented setup (docs/decisions.md, Packaging).
    assert _warnings(_config(tmp_path, tls=True, host="h.example.com", mode=mode)) == ()


def test_check_config_prints_the_warnings_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "edged.yaml"
    path.write_text(_config(tmp_path, tls=False, host="broker.example.com", mode=0o644))
    result = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"{path}:4: platform.token_file: warning: other users can access the token file"
        " (mode 0644); make it 0600, or 0640 with group edged",
        f"{path}:5: platform.tls: warning: tls is false: the token and all data go to"
        " broker.example.com unencrypted and the broker is not authenticated",
    ]
    assert result.stdout.strip().endswith("adapters: simulated, 2 warning(s)")
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.timeout(60)
def test_the_daemon_logs_the_warnings_when_it_starts(tmp_path: Path) -> None:
    # 0.0.0.0 is not a loopback address, yet connecting to it stays on this machine; nothing
    # listens on the port, so the uplink just retries until the daemon is stopped.
    port = free_port()
    path = tmp_path / "edged.yaml"
    path.write_text(_config(tmp_path, tls=False, host="0.0.0.0", mode=0o644, port=port))
    with running_daemon(path) as daemon:
        daemon.wait_for_output(r"edged started")
        output = daemon.output
    assert re.search(
        r"WARNING +edged: config: .*platform\.token_file: warning: other users", output
    )
    assert re.search(r"WARNING +edged: config: .*platform\.tls: warning: tls is false", output)
    assert output.index("platform.tls: warning") < output.index("edged started")
    assert TOKEN not in output
