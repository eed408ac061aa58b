"""Hostile and careless configs (issue 8, item 14): each reproduction from fuzzing 365 mutated
configs ends in ConfigError with one-line problems, never a traceback, a hang or a config that
is accepted and then fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edged.app import Gateway
from edged.config import Config, load_config, load_config_text
from edged.config.yamlguard import MAX_DEPTH, MAX_VALUES
from edged.errors import ConfigError

PROBLEM_LINE = re.compile(r"[^\n]+:\d+: [^\n]+: [^\n]+")

PLATFORM = """\
platform:
  org: abc123
  gateway: {type: gw, id: gw-1}
  token_env: EDGED_HOSTILE_TOKEN
"""
TOKENLESS = """\
platform:
  org: abc123
  gateway: {type: gw, id: gw-1}
"""


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_HOSTILE_TOKEN", "hostile-t0ken")


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "edged.yaml")
    problems = info.value.problems
    assert problems
    for problem in problems:
        assert PROBLEM_LINE.fullmatch(problem), problem
    return problems


def _sim(section: str) -> str:
    return f"devices:\n  - {{id: s1, type: sim, adapter: simulated, simulated: {section}}}\n"


# -- the YAML text ------------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x01", "\x07", "\x1b", "\x7f", "\ufffe"])
def test_control_characters_are_a_problem_at_their_line(char: str) -> None:
    # PyYAML's reader rejected these before the try block: a ReaderError traceback.
    problems = _problems(PLATFORM + f"status:\n  event: st{char}atus\n")
    assert problems == [f"edged.yaml:6: (yaml): character #x{ord(char):04x} is not allowed in YAML"]


@pytest.mark.parametrize(
    "text",
    [
        "x: &a [*a]\n",
        "x: &a {k: *a}\n",
        "x: &a\n  <<: *a\n",
        "x: &a [1, [2, [3, *a]]]\n",
    ],
    ids=["list", "mapping", "merge", "nested"],
)
def test_a_recursive_alias_is_a_problem(text: str) -> None:
    # Was a RecursionError while converting the (cyclic) node graph.
    problems = _problems(PLATFORM + text)
    line = 6 if text.endswith("<<: *a\n") else 5
    assert problems == [f"edged.yaml:{line}: (yaml): alias *a refers to itself"]


@pytest.mark.parametrize("depth", [3000, 10_000])
def test_deep_flow_nesting_is_a_problem(depth: int) -> None:
    # Was a RecursionError inside PyYAML's composer.
    problems = _problems(PLATFORM + "x: " + "[" * depth + "]" * depth + "\n")
    assert problems == [f"edged.yaml:5: (yaml): nested deeper than {MAX_DEPTH} levels"]


def test_deep_block_nesting_is_a_problem() -> None:
    text = PLATFORM + "".join(f"{'  ' * level}k{level}:\n" for level in range(3000))
    (problem,) = _problems(text)
    assert problem == f"edged.yaml:{5 + MAX_DEPTH}: (yaml): nested deeper than {MAX_DEPTH} levels"


def test_an_alias_cannot_smuggle_depth_past_the_limit() -> None:
    half = MAX_DEPTH // 2 + 1
    text = PLATFORM + "a: &deep " + "[" * half + "]" * half + "\nb: " + "[" * half + "*deep"
    (problem,) = _problems(text + "]" * half + "\n")
    assert problem == f"edged.yaml:6: (yaml): alias *deep nests deeper than {MAX_DEPTH} levels"


@pytest.mark.timeout(30)
def test_billion_laughs_is_refused_quickly() -> None:
    # Ten levels of ten aliases each expand to 10**10 values: this hung, filling memory.
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 10)]
    (problem,) = _problems(PLATFORM + "\n".join(lines) + "\n")
    assert problem.startswith("edged.yaml:")
    assert problem.endswith(f": (yaml): more than {MAX_VALUES} values once aliases are expanded")


def test_modest_aliases_and_merge_keys_still_work() -> None:
    text = PLATFORM + (
        "devices:\n"
        "  - {id: s0, type: sim, adapter: simulated,"
        " simulated: &sim {interval: 1s, values: {t: {kind: sine}}}}\n"
        "  - {id: s1, type: sim, adapter: simulated, simulated: {<<: *sim, interval: 2s}}\n"
        "  - {id: s2, type: sim, adapter: simulated, simulated: *sim}\n"
    )
    config = load_config_text(text, "edged.yaml")
    assert [device.section.interval for device in config.devices] == [1.0, 2.0, 1.0]


def test_an_aliased_mapping_with_a_merge_key_can_be_used_twice() -> None:
    text = PLATFORM + (
        "devices:\n"
        "  - {id: s0, type: sim, adapter: simulated,"
        " simulated: &base {interval: 1s, values: {t: {kind: sine}}}}\n"
        "  - {id: s1, type: sim, adapter: simulated,"
        " simulated: &fast {<<: *base, interval: 100ms}}\n"
        "  - {id: s2, type: sim, adapter: simulated, simulated: *fast}\n"
    )
    config = load_config_text(text, "edged.yaml")
    assert [device.section.interval for device in config.devices] == [1.0, 0.1, 0.1]


@pytest.mark.parametrize(
    ("value", "where", "message"),
    [
        ("9" * 5000, "storage.commit_batch", "this number has too many digits"),
        ("-" + "1" * 5000, "storage.commit_batch", "this number has too many digits"),
        ("9" * 4000, "status.interval", "the duration is far too long"),
        ("9" * 4000, "storage.commit_batch", "Input should be less than or equal to"),
        ("2001-02-30", "status.interval", "not a valid date or time: day is out of range"),
    ],
)
def test_values_python_cannot_build_are_problems(value: str, where: str, message: str) -> None:
    # Were ValueError/OverflowError tracebacks from PyYAML's constructors or float().
    section, key = where.split(".")
    (problem,) = _problems(PLATFORM + f"{section}:\n  {key}: {value}\n")
    assert problem.startswith(f"edged.yaml:6: {where}: {message}"), problem


def test_huge_full_report_every_is_a_problem() -> None:
    device = (
        "devices:\n  - id: m1\n    type: meter\n    adapter: modbus\n    modbus:\n"
        "      url: tcp://192.0.2.7\n      report: changes\n"
        f"      full_report_every: {'9' * 400}\n"
        "      points: {v: {address: 0}}\n"
    )
    (problem,) = _problems(PLATFORM + device)
    assert problem == (
        "edged.yaml:12: devices[0].modbus.full_report_every: the duration is far too long"
    )


# -- keys and values that would break the one-line format -----------------------------------------


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('"bad\\nkey": 1\n', "edged.yaml:5: bad\\nkey: unknown key"),
        ('status: {"ev\\nent": x}\n', "edged.yaml:5: status.ev\\nent: unknown key"),
        (
            "devices:\n  - {id: s1, type: sim, adapter: simulated, "
            'simulated: {values: {t: {}}, "i\\r\\nnterval": 1}}\n',
            "edged.yaml:6: devices[0].simulated.i\\r\\nnterval: unknown key",
        ),
        (
            'devices:\n  - {id: s1, type: sim, adapter: "warp\\ndrive"}\n',
            "edged.yaml:6: devices[0].adapter: unknown adapter 'warp\\ndrive'",
        ),
        ('adapters: {"mod\\nbus": {}}\n', "edged.yaml:5: adapters.mod\\nbus: unknown adapter"),
        ('"\\e[2J\\u2028": 1\n', "edged.yaml:5: \\x1b[2J\\u2028: unknown key"),
    ],
    ids=["top", "section", "adapter-section", "adapter-name", "adapter-key", "escape"],
)
def test_every_problem_is_one_line_whatever_the_keys_hold(snippet: str, expected: str) -> None:
    # A newline inside a key split the problem over two lines (6 of the fuzzed configs).
    problems = _problems(PLATFORM + snippet)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_long_key_is_cut_in_the_report() -> None:
    (problem,) = _problems(PLATFORM + f"? {'k' * 100_000}\n: 1\n")
    assert problem.endswith("...(+99936 chars): unknown key")
    assert len(problem) < 200


# -- numbers and durations that were accepted and then failed at run time -------------------------


@pytest.mark.parametrize(
    ("snippet", "where", "message"),
    [
        ("  mqtt_version: 5\n  session_expiry: .inf\n", "platform.session_expiry", "finite"),
        ("  connect_timeout: .inf\n", "platform.connect_timeout", "finite"),
        ("  connect_timeout: 1.0e+300\n", "platform.connect_timeout", "must be between"),
        ("  reconnect: {initial: .nan}\n", "platform.reconnect.initial", "not .nan"),
        ("  keepalive: .nan\n", "platform.keepalive", "not .nan"),
        ("  mqtt_version: [5]\n", "platform.mqtt_version", "Input should be"),
        ('  host: "bad host\\n"\n', "platform.host", "host name"),
        ("status: {interval: 1.0e-9}\n", "status.interval", "must be between 1s and 1d"),
        ("commands: {timeout: .inf}\n", "commands.timeout", "finite"),
        (_sim("{values: {t: {kind: sine, period: 0}}}"), "values.t.period", "between 1ms"),
        (_sim("{interval: .nan, values: {t: {}}}"), "simulated.interval", "not .nan"),
        (_sim("{values: {t: {min: -.inf}}}"), "values.t.min", "finite number"),
        (_sim("{script: [{v: .nan}]}"), "script[0].v", "must be a finite number"),
        (_sim(f"{{script: [{{v: {2**64}}}]}}"), "script[0].v", "must fit in 64 bits"),
        (_sim(f"{{count: {2**64}, values: {{t: {{}}}}}}"), "simulated.count", "less than"),
    ],
)
def test_values_that_used_to_fail_at_run_time_are_refused(
    snippet: str, where: str, message: str
) -> None:
    # Each of these was accepted; the daemon then exited 70, retried with a traceback, spun a
    # busy loop, or divided by zero (period 0) once running.
    problems = _problems(PLATFORM + snippet)
    assert len(problems) == 1, problems
    assert f"{where}: " in problems[0] and message in problems[0], problems


@pytest.mark.parametrize(
    ("device", "where"),
    [
        (
            "{id: m1, type: t, adapter: modbus, modbus: {url: 'tcp://192.0.2.7', commands:"
            " {valve: {address: 1, type: int16, min: 0, max: .nan}}}}",
            "devices[0].modbus.commands.valve.max",
        ),
        (
            "{id: m1, type: t, adapter: modbus, modbus: {url: 'tcp://192.0.2.7', report: changes,"
            " points: {v: {address: 1, deadband: .inf}}}}",
            "devices[0].modbus.points.v.deadband",
        ),
        (
            "{id: d1, type: t, adapter: serial, serial: {port: /dev/ttyS0,"
            " parser: {json: {fields: {a: {type: float, scale: .nan}}}}}}",
            "devices[0].serial.parser.json.fields.a.scale",
        ),
        (
            "{id: b1, type: t, adapter: ble, ble: {address: 'A4:C1:38:5E:12:34',"
            " manufacturer_data: [{company_id: 1177, fields: {t: {type: int16, scale: .inf}}}]}}",
            "devices[0].ble.manufacturer_data[0].fields.t.scale",
        ),
    ],
    ids=["modbus-command-limit", "modbus-deadband", "serial-scale", "ble-scale"],
)
def test_adapters_refuse_nan_and_inf_numbers(device: str, where: str) -> None:
    # A NaN command limit compared false both ways: any value was written to the valve.
    problems = _problems(PLATFORM + f"devices:\n  - {device}\n")
    assert any(f" {where}: " in problem and "finite" in problem for problem in problems), problems


def test_a_token_env_with_a_nul_is_refused() -> None:
    # os.environ.get() raised ValueError ("embedded null byte") for this name.
    assert _problems(TOKENLESS + '  token_env: "A\\0B"\n') == [
        "edged.yaml:4: platform.token_env: must be an environment variable name (A-Z a-z 0-9 _)"
    ]


def _build(config: Config) -> Gateway:
    """Everything ``edged run`` does before the event loop starts touching the network."""
    return Gateway(config)


def test_the_extremes_that_are_accepted_build_the_daemon() -> None:
    text = PLATFORM + (
        "  mqtt_version: 5\n  session_expiry: 4294967295\n  connect_timeout: 10m\n"
        "  keepalive: 1h\n  reconnect: {initial: 10ms, max: 1d, refused_initial: 10ms}\n"
        "status: {interval: 1s}\ncommands: {timeout: 1h}\n"
        + _sim(
            "{interval: 0, command_delay: 365d, count: 9223372036854775807,"
            " values: {t: {kind: counter, min: -1.0e+15, max: 1.0e+15}, w: {kind: sine,"
            " period: 1ms}}, script: [{big: 9223372036854775807, small: -9223372036854775808}]}"
        )
    )
    config = load_config_text(text, "edged.yaml")
    gateway = _build(config)
    assert gateway.uplink is not None
    assert config.platform.session_expiry == 0xFFFFFFFF


# -- files: the config, the token, the CA -------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _file_problem(tmp_path: Path, key: str, value: str) -> str:
    text = TOKENLESS + f"  {key}: {value}\n"
    if key == "ca_file":
        text = PLATFORM + f"  {key}: {value}\n"
    (problem,) = _problems(text)
    return problem


@pytest.mark.timeout(20)
def test_token_file_problems(tmp_path: Path, fifo: Path) -> None:
    latin1 = tmp_path / "latin1"
    latin1.write_bytes(b"t\xf6ken\n")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    where = "edged.yaml:4: platform.token_file"
    assert _file_problem(tmp_path, "token_file", str(latin1)) == (
        f"{where}: the token file is not UTF-8 text"
    )
    assert _file_problem(tmp_path, "token_file", '"/etc/edged/to\\0ken"') == (
        f"{where}: cannot read the token file: the path contains a NUL character"
    )
    assert _file_problem(tmp_path, "token_file", "/dev/zero") == (
        f"{where}: cannot read the token file: it is a character device, not a regular file"
    )
    assert _file_problem(tmp_path, "token_file", str(fifo)) == (
        f"{where}: cannot read the token file: it is a FIFO (named pipe), not a regular file"
    )
    assert _file_problem(tmp_path, "token_file", str(tmp_path)) == (
        f"{where}: cannot read the token file: it is a directory, not a regular file"
    )
    assert _file_problem(tmp_path, "token_file", str(big)) == (
        f"{where}: cannot read the token file: it is larger than 4 KiB"
    )


@pytest.mark.timeout(20)
def test_ca_file_problems(tmp_path: Path, fifo: Path) -> None:
    where = "edged.yaml:5: platform.ca_file"
    assert _file_problem(tmp_path, "ca_file", '"/etc/ssl/c\\0a.pem"') == (
        f"{where}: cannot read the CA file: the path contains a NUL character"
    )
    assert _file_problem(tmp_path, "ca_file", "/dev/zero") == (
        f"{where}: cannot read the CA file: it is a character device, not a regular file"
    )
    assert _file_problem(tmp_path, "ca_file", str(fifo)) == (
        f"{where}: cannot read the CA file: it is a FIFO (named pipe), not a regular file"
    )


@pytest.mark.timeout(20)
def test_config_file_problems(tmp_path: Path, fifo: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (1024 * 1024 + 1))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(PLATFORM.encode() + b"# caf\xe9\n")
    cases = {
        str(fifo): "it is a FIFO (named pipe), not a regular file",
        "/dev/zero": "it is a character device, not a regular file",
        str(tmp_path): "it is a directory, not a regular file",
        str(big): "it is larger than 1024 KiB",
        str(tmp_path / "absent.yaml"): "No such file or directory",
    }
    for path, reason in cases.items():
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.problems == [f"{path}:1: (file): cannot read the config file: {reason}"]
    with pytest.raises(ConfigError) as info:
        load_config(str(latin1))
    assert info.value.problems == [
        f"{latin1}:5: (file): the config file is not UTF-8 text (byte {len(PLATFORM) + 6})"
    ]


def _check_config(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", "check-config", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_check_config_on_a_fifo_or_dev_zero_exits_78_at_once(kind: str, fifo: Path) -> None:
    # A FIFO hung `edged check-config` until a writer came; /dev/zero read forever.
    path = str(fifo) if kind == "fifo" else "/dev/zero"
    result = _check_config(path)
    assert result.returncode == 78, result.stderr
    reason = "a FIFO (named pipe)" if kind == "fifo" else "a character device"
    assert result.stderr.splitlines() == [
        f"{path}:1: (file): cannot read the config file: it is {reason}, not a regular file",
        f"{path}: 1 problem(s) found",
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(90)
def test_check_config_reports_every_hostile_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "edged.yaml"
    path.write_text(
        PLATFORM
        + '  "con\\nnect_timeout": 5s\n  session_expiry: .inf\n  reconnect: {initial: .nan}\n'
        + "status: {interval: 1.0e-9}\n"
        + _sim("{interval: .nan, values: {t: {kind: sine, period: 0}}}")
    )
    env = {**os.environ, "EDGED_HOSTILE_TOKEN": "t"}
    result = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 78
    lines = result.stderr.splitlines()
    assert lines[-1] == f"{path}: 6 problem(s) found", lines
    for line in lines[:-1]:
        assert PROBLEM_LINE.fullmatch(line), line
    assert f"{path}:5: platform.con\\nnect_timeout: unknown key" in lines
