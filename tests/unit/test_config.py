"""Config loading: typed models, every error at once with file:line and key path, secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edged.config import Secret, load_config, load_config_text
from edged.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "edged.yaml")
    return info.value.problems


GOOD = """\
platform:
  org: abc123
  gateway: {type: gw, id: gw-1}
  token_env: EDGED_TEST_TOKEN
devices:
  - id: s1
    type: sim
    adapter: simulated
    simulated: {interval: 250ms, values: {t: {kind: sine}}}
"""


def test_good_config_loads_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_TEST_TOKEN", "s3cret-token")
    config = load_config_text(GOOD)
    assert config.platform.resolved_host == "abc123.messaging.internetofthings.ibmcloud.com"
    assert config.platform.resolved_port == 8883
    assert config.platform.tls and config.platform.persistent_session
    assert config.devices[0].section.interval == 0.25
    assert str(config.gateway) == "gw/gw-1"
    assert config.token.reveal() == "s3cret-token"
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.token)


def test_every_problem_is_reported_with_line_and_path(tmp_path: Path) -> None:
    text = """\
platform:
  org: abc123
  gateway: {type: gw, id: gw-1}
  token_file: /nonexistent/token
  port: 99999
  colour: blue
devices:
  - id: s1
    type: sim
    adapter: simulated
    simulated:
      interval: soon
      values: {t: {kind: sine}}
  - id: s1
    type: sim
    adapter: simulated
    simulated: {values: {t: {}}}
  - {id: "has space", type: sim, adapter: warp-drive}
  - id: s3
    type: sim
    adapter: simulated
    simulated: {}
    stray: 1
"""
    problems = _problems(text)
    assert "edged.yaml:5: platform.port: Input should be less than or equal to 65535" in problems
    assert "edged.yaml:6: platform.colour: unknown key" in problems
    assert any(
        p.startswith("edged.yaml:12: devices[0].simulated.interval: expected a duration")
        for p in problems
    )
    assert any(
        p.startswith("edged.yaml:14: devices[1].id: device sim/s1 is already defined")
        for p in problems
    )
    assert any(
        p.startswith("edged.yaml:18: devices[2].id: must be 1-36 characters") for p in problems
    )
    assert any(
        p.startswith("edged.yaml:18: devices[2].adapter: unknown adapter 'warp-drive'")
        for p in problems
    )
    assert any(p.startswith("edged.yaml:22: devices[3].simulated: give values") for p in problems)
    assert "edged.yaml:23: devices[3].stray: unknown key" in problems


def test_token_and_ca_file_problems(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello")
    problems = _problems(
        f"platform:\n  org: abc123\n  gateway: {{type: gw, id: g}}\n"
        f"  token_file: {empty}\n  ca_file: {not_pem}\n"
    )
    assert problems == [
        "edged.yaml:4: platform.token_file: the token file is empty",
        "edged.yaml:5: platform.ca_file: the CA file holds no PEM certificate",
    ]
    problems = _problems(
        "platform:\n  org: abc123\n  gateway: {type: gw, id: g}\n"
        f"  token_file: {tmp_path / 'missing'}\n  ca_file: {tmp_path / 'nope.pem'}\n"
    )
    assert problems[0].startswith("edged.yaml:4: platform.token_file: cannot read the token file")
    assert problems[1].startswith("edged.yaml:5: platform.ca_file: cannot read the CA file")


def test_missing_token_env_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGED_TOKEN", raising=False)
    problems = _problems("platform:\n  org: abc123\n  gateway: {type: gw, id: g}\n")
    assert problems == [
        "edged.yaml:1: platform: no token: set token_file, or the environment variable EDGED_TOKEN"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("platform: [1, 2\n", "edged.yaml:2: (yaml):"),
        ("a: 1\na: 2\n", "edged.yaml:2: a: duplicate key"),
        ("- 1\n- 2\n", "edged.yaml:1: (top level): the config must be a mapping"),
        (
            "devices: {}\nplatform: {org: o, gateway: {type: t, id: i}, token_env: X}\n",
            "edged.yaml:1: devices: must be a list",
        ),
    ],
)
def test_malformed_documents(text: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X", "t0ken")
    problems = _problems(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_secret_never_shows() -> None:
    secret = Secret("top-secret")
    assert "top-secret" not in repr(secret) and "top-secret" not in f"{secret}"


def _example_configs() -> list[Path]:
    return sorted(
        [REPO / "config" / "edged.example.yaml", *(REPO / "config" / "examples").glob("*.yaml")]
    )


@pytest.mark.parametrize("path", _example_configs(), ids=lambda p: p.name)
def test_shipped_example_configs_are_valid(path: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("example-token\n")
    text = path.read_text().replace("/etc/edged/token", str(token))
    os.environ.setdefault("EDGED_TOKEN", "example-token")
    config = load_config_text(text, str(path))
    assert config.devices, f"{path.name} configures no device"


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "platform:\n  org: abc123\n  gateway: {type: gw, id: g}\n"
        "  token_env: NOPE_UNSET\n  bogus: 1\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NOPE_UNSET"}
    result = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 78
    assert f"{bad}:5: platform.bogus: unknown key" in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    result = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(good)],
        capture_output=True,
        text=True,
        env={**env, "EDGED_TEST_TOKEN": "zzzz-token"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 device(s)" in result.stdout
    assert "zzzz-token" not in result.stdout + result.stderr


def test_demo_config_is_valid(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("demo\n")
    text = (REPO / "config" / "demo.yaml").read_text() + "\n"
    text = text.replace("  tls: true\n", f"  tls: true\n  token_file: {token}\n")
    config = load_config(_write(tmp_path / "demo.yaml", text))
    assert len(config.devices) >= 3


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
