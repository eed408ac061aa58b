"""A bounded fuzz of the config loader (issue 8, items 14 and 16), run in CI.

Mutations of the shipped example configs, both of their data (keys deleted, renamed with control
characters, values swapped for other types, huge, negative, NaN, infinite or deeply nested) and
of their text (characters and snippets inserted: aliases, alias bombs, deep brackets, tags, huge
numbers). For each, the loader must:

* raise nothing but :class:`~edged.errors.ConfigError`, within the test's timeout;
* report every problem (and warning) as one ``FILE:LINE: key.path: message`` line;
* for a config it accepts, build what ``edged run`` builds before it touches the network (the
  Gateway and every adapter, strictly), and let each simulated device produce readings that
  encode as event payloads.

Examples are derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edged import codec, registry
from edged.adapters.base import AdapterContext
from edged.adapters.simulated.adapter import SimulatedDevice
from edged.app import Gateway
from edged.config import Config, load_config_text
from edged.errors import ConfigError
from tests.support.sink import RecordingSink

REPO = Path(__file__).resolve().parents[3]
SEEDS = sorted(
    [
        REPO / "config" / "edged.example.yaml",
        REPO / "config" / "demo.yaml",
        *(REPO / "config" / "examples").glob("*.yaml"),
    ]
)
PATH = "fuzz.yaml"
LINE = re.compile(r"fuzz\.yaml:\d+: [^\n]+: [^\n]+")

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class _Seeds(list[str]):
    """The seed texts; shown by name, not in full, in a falsifying example."""

    def __repr__(self) -> str:
        return f"<{len(self)} example configs>"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The example configs' text, each reading the token from a private file."""
    token = tmp_path_factory.mktemp("fuzz") / "token"
    token.write_text("fuzz-t0ken\n")
    token.chmod(0o600)
    texts = _Seeds()
    for path in SEEDS:
        text = path.read_text()
        if "token_file: /etc/edged/token" in text:
            text = text.replace("/etc/edged/token", str(token))
        else:
            text = text.replace("token_env: EDGED_TOKEN", f"token_file: {token}")
        if f"token_file: {token}" not in text:
            text = text.replace("  tls: true\n", f"  tls: true\n  token_file: {token}\n")
        assert f"token_file: {token}" in text, path
        texts.append(text)
    for text in texts:  # the seeds themselves are valid: mutations start from a working config
        load_config_text(text, PATH)
    return texts


# -- what every outcome must satisfy ---------------------------------------------------------------


def _check_lines(lines: tuple[str, ...] | list[str]) -> None:
    for line in lines:
        assert LINE.fullmatch(line), line
        assert len(line.splitlines()) == 1, line


async def _first_readings(config: Config) -> None:
    """Run each simulated device until it has produced a reading; encode every reading."""
    sink = RecordingSink()
    runners = [
        SimulatedDevice(device.spec()) for device in config.devices if device.adapter == "simulated"
    ]
    expected = [runner for runner in runners if runner.spec.section.count != 0]
    tasks = [asyncio.create_task(runner.run(sink)) for runner in runners]
    try:
        await sink.wait_for(
            lambda: all(sink.of(r.spec.identity) for r in expected), "a reading from each", 5.0
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for reading in sink.readings:
        codec.encode_event(reading.values, reading.timestamp)


def _accepted_config_runs(config: Config) -> None:
    _check_lines(config.warnings)
    Gateway(config).status()  # forgiving: a broken adapter only marks its devices down ...
    context = AdapterContext(gateway=config.gateway)
    for name in config.adapters_in_use:  # ... so build each adapter strictly as well
        specs = [device.spec() for device in config.devices if device.adapter == name]
        registry.adapter_factory(name)(specs, config.adapter_settings.get(name), context)
    asyncio.run(_first_readings(config))


def _check(text: str) -> None:
    try:
        config = load_config_text(text, PATH)
    except ConfigError as exc:
        problems = exc.problems
    else:
        event("accepted")
        _accepted_config_runs(config)
        return
    event("refused")
    assert problems
    _check_lines(problems)


# -- data mutations -------------------------------------------------------------------------------

SPECIAL_VALUES: list[Any] = [
    math.nan, math.inf, -math.inf, 0, -1, 0.5, 1e-9, 1e300, -1e300, 2**63, 2**64, -(2**63) - 1,
    "", "0", "0ms", "-5s", "5 s", "1e3", "1h", "366d", ".inf", "\x00", "a\nb", "\x1b[31m",
    "\u2028", "é", True, False, None, [], {},
]  # fmt: skip
SCALARS = st.sampled_from(SPECIAL_VALUES) | st.one_of(  # half of them from the list
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from([30, 400, 4000]).map(lambda digits: 10**digits),  # 4000 digits: float() fails
    st.sampled_from([300, 5000]).map(lambda size: "x" * size),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(  # half of them hostile
    ["a\nb", "x\x00y", "\x1b[2J", "k\u2028", "\r", "id", "interval", "<<", "k" * 300, ""]
) | st.one_of(st.text(max_size=12), st.integers())


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


MUTATIONS = ["delete", "replace", "wrap", "stringify", "deep", "rename", "add"]


def _mutate(draw: st.DrawFn, container: dict[Any, Any] | list[Any], key: Any) -> None:
    kind = draw(st.sampled_from(MUTATIONS))
    if kind == "delete":
        del container[key]
    elif kind == "replace":
        container[key] = draw(VALUES)
    elif kind == "wrap":
        container[key] = [container[key]] if draw(st.booleans()) else {"x": container[key]}
    elif kind == "stringify":
        container[key] = str(container[key])
    elif kind == "deep":
        container[key] = _nested(draw(st.integers(min_value=30, max_value=120)))
    elif isinstance(container, list):  # rename or add in a list: one more item
        container.append(draw(VALUES))
    elif kind == "rename":
        container[draw(KEYS)] = container.pop(key)
    else:
        container[draw(KEYS)] = draw(VALUES)


@st.composite
def mutated_data(draw: st.DrawFn, seed_texts: list[str]) -> str:
    data = yaml.safe_load(draw(st.sampled_from(seed_texts)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        # walk down to a random place in the document, then change it
        container: Any = data
        while True:
            keys = list(container) if isinstance(container, dict) else list(range(len(container)))
            key = draw(st.sampled_from(keys))
            child = container[key]
            if not isinstance(child, dict | list) or not child or draw(st.booleans()):
                break
            container = child
        _mutate(draw, container, key)
        if not data:
            break
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


# -- edge values where values are expected: configs that are often accepted and must then run ------

EDGE_VALUES: list[Any] = [
    0, 1, -1, 0.001, 0.1, 1e15, -1e15, 2**63 - 1, -(2**63), 4294967295, 65535, 65536, 3600,
    "0ms", "0s", "1ms", "10ms", "1s", "10m", "1h", "1d", "365d", True, False, None,
]  # fmt: skip


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of the numbers, booleans and duration-like strings in ``data``."""
    if isinstance(data, dict | list):
        items = data.items() if isinstance(data, dict) else enumerate(data)
        return [leaf for key, value in items for leaf in _leaves(value, (*path, key))]
    is_duration = isinstance(data, str) and re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h|d)", data)
    return [path] if isinstance(data, int | float) or is_duration else []


@st.composite
def edge_values(draw: st.DrawFn, seed_texts: list[str]) -> str:
    data = yaml.safe_load(draw(st.sampled_from(seed_texts)))
    leaves = _leaves(data)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        *parents, last = draw(st.sampled_from(leaves))
        container = data
        for part in parents:
            container = container[part]
        container[last] = draw(st.sampled_from(EDGE_VALUES))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


# -- text mutations -------------------------------------------------------------------------------

_BOMB = "".join(
    [
        "b0: &b0 [x, x, x, x, x, x, x, x, x, x]\n",
        *(f"b{n}: &b{n} [{', '.join([f'*b{n - 1}'] * 10)}]\n" for n in range(1, 9)),
    ]
)
SNIPPETS = [
    _BOMB,
    "r: &r [*r]\n",
    "r: &r {k: *r, <<: *r}\n",
    "d: " + "[" * 5000 + "]" * 5000 + "\n",
    "d: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
    "<<: *undefined\n",
    "m: &m {interval: .nan}\nn: {<<: *m}\n",
    "p: !!python/object/apply:os.system [echo]\n",
    "q: !!binary 'not base64!'\n",
    "? [a, b]\n: 1\n",
    "t: 2001-02-30\n",
    "n: " + "9" * 5000 + "\n",
    "f: !!float abc\n",
    "s: !!set {a, b}\n",
    "---\nsecond: document\n",
    "\tindented: with a tab\n",
    "'unterminated: quote\n",
    "k: &a 1\nk2: &a 2\n",
]
NUMBERS = [".nan", ".inf", "-.inf", "1.0e+300", "-1", "0", "9" * 5000, "9" * 400, "0x" + "f" * 30]
HOSTILE_CHARS = ["\x00", "\x01", "\x1b", "\x85", "\ufeff", "\u2028", "\x7f", "\t", "\r"]


@st.composite
def mutated_text(draw: st.DrawFn, seed_texts: list[str]) -> str:
    text = draw(st.sampled_from(seed_texts))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        lines = text.split("\n")
        at = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        kind = draw(st.sampled_from(["char", "snippet", "indented", "number", "drop", "repeat"]))
        if kind == "char":
            line = lines[at]
            col = draw(st.integers(min_value=0, max_value=len(line)))
            char = draw(st.characters(codec="utf-8") | st.sampled_from(HOSTILE_CHARS))
            lines[at] = line[:col] + char + line[col:]
        elif kind == "snippet":
            lines.insert(at, draw(st.sampled_from(SNIPPETS)).rstrip("\n"))
        elif kind == "indented":
            indent = len(lines[at]) - len(lines[at].lstrip(" "))
            snippet = draw(st.sampled_from(SNIPPETS)).rstrip("\n")
            lines.insert(at, "\n".join(" " * indent + part for part in snippet.split("\n")))
        elif kind == "number":
            numbers = [i for i, line in enumerate(lines) if re.search(r":\s+\d", line)]
            if numbers:
                at = draw(st.sampled_from(numbers))
                number = draw(st.sampled_from(NUMBERS))
                lines[at] = re.sub(r"(:\s+)\d[\w.]*", rf"\g<1>{number}", lines[at], count=1)
        elif kind == "drop":
            del lines[at]
        else:
            lines.insert(at, lines[at])
        text = "\n".join(lines)
    return text


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
@FUZZ
@given(data=st.data())
def test_fuzzed_config_data(seeds: list[str], data: st.DataObject) -> None:
    _check(data.draw(mutated_data(seeds)))


@pytest.mark.timeout(180)
@FUZZ
@given(data=st.data())
def test_fuzzed_edge_values(seeds: list[str], data: st.DataObject) -> None:
    _check(data.draw(edge_values(seeds)))


@pytest.mark.timeout(180)
@FUZZ
@given(data=st.data())
def test_fuzzed_config_text(seeds: list[str], data: st.DataObject) -> None:
    _check(data.draw(mutated_text(seeds)))


def test_the_checks_catch_what_they_are_meant_to() -> None:
    """The oracle itself: a multi-line problem and a config that cannot run are caught."""
    with pytest.raises(AssertionError):
        _check_lines(["fuzz.yaml:1: a\nb: unknown key"])
    with pytest.raises(AssertionError):
        _check_lines(["fuzz.yaml:1: a\u2028b: unknown key"])
    config = load_config_text(
        "platform: {org: abc123, gateway: {type: g, id: g}, token_env: PATH}\n"
        "devices: [{id: s, type: t, adapter: simulated, simulated: {values: {v: {}}}}]\n",
        PATH,
    )
    device = config.devices[0]
    broken = type(device.section).model_construct(
        interval=0.0, values={}, script=[{"v": 2**70}], count=None, fail_after=None,
        command_delay=0.0,
    )  # fmt: skip
    bad = dataclasses.replace(config, devices=(dataclasses.replace(device, section=broken),))
    with pytest.raises(TypeError, match="64-bit"):
        _accepted_config_runs(bad)
