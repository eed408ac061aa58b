"""The daemon's logging: libraries quieted whatever the order of setup, secrets redacted.

Each test configures the real root logger as the daemon does (``setup_logging``) and reads
what reaches stderr; the fixture puts pytest's own logging back afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from edged.adapters.modbus.link import quiet_pymodbus_logging
from edged.linkretry import LinkRetry
from edged.logsetup import (
    RECENT,
    adapter_extra,
    device_extra,
    journal_handler,
    setup_logging,
    stream_is_journal,
)
from edged.model import DeviceIdentity

LIBRARIES = ("pymodbus", "pymodbus.logging", "bleak")


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what ``setup_logging`` does to the root logger and the library loggers."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)  # as in a fresh process
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def log_everything() -> None:
    """What pymodbus logs on a late answer (ERROR) and a refused connect (WARNING), and more."""
    library = logging.getLogger("pymodbus.logging")  # the logger pymodbus logs through
    library.error("ERROR: request ask for transaction_id=8 but got id=7, Skipping.")
    library.warning("Failed to connect [Errno 111]")
    logging.getLogger("bleak.backends").info("bleak chatter")
    logging.getLogger("bleak.backends").warning("bleak warning")
    logging.getLogger("edged.test").info("edged line")


@pytest.mark.parametrize(
    "order",
    [
        pytest.param((setup_logging, quiet_pymodbus_logging), id="daemon: logging, then adapter"),
        pytest.param((quiet_pymodbus_logging, setup_logging), id="adapter, then logging"),
    ],
)
def test_pymodbus_is_quiet_whatever_runs_first(
    order: tuple[Callable[[], None], Callable[[], None]], capsys: pytest.CaptureFixture[str]
) -> None:
    for step in order:
        step()
    log_everything()
    err = capsys.readouterr().err
    assert "pymodbus" not in err
    assert "transaction_id" not in err and "Failed to connect" not in err
    assert "INFO    edged.test: edged line" in err  # the handler works: this is no vacuous pass
    assert "WARNING bleak.backends: bleak warning" in err
    assert "bleak chatter" not in err


def test_debug_level_keeps_the_libraries_out(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug")
    quiet_pymodbus_logging()
    log_everything()
    logging.getLogger("edged.test").debug("edged detail")
    err = capsys.readouterr().err
    assert "edged detail" in err
    assert "pymodbus" not in err and "bleak chatter" not in err


def test_pymodbus_debugging_by_hand_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    """pymodbus's own switch sets a level on its child logger, which wins over the quieting."""
    setup_logging()
    quiet_pymodbus_logging()
    logging.getLogger("pymodbus.logging").setLevel(logging.DEBUG)
    logging.getLogger("pymodbus.logging").warning("asked for it")
    assert "asked for it" in capsys.readouterr().err


def test_secrets_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(secrets=["s3cr3t-token", "abc"])  # too short to redact safely: kept
    logging.getLogger("edged.test").warning("token is %s, abc", "s3cr3t-token")
    err = capsys.readouterr().err
    assert "s3cr3t-token" not in err
    assert "token is ********, abc" in err


# -- journald ------------------------------------------------------------------------------------


@pytest.fixture
def journal_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TextIO]:
    """A real file standing for stderr, named by ``JOURNAL_STREAM`` as systemd names stderr."""
    with (tmp_path / "stderr").open("w+") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        yield stream


def _journal_module() -> Any:
    try:
        return importlib.import_module("systemd.journal")
    except ImportError:
        pytest.fail("systemd-python is missing: install edged's `journal` extra (libsystemd-dev)")


def test_under_systemd_records_go_to_journald_with_device_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_stream: TextIO
) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        _journal_module(),
        "send",
        lambda message, /, **fields: sent.append({"MESSAGE": message, **fields}),
    )
    stream = journal_stream
    setup_logging(secrets=["s3cr3t-token"], stream=stream)
    device = DeviceIdentity("boiler", "b-1")
    logging.getLogger("edged.test").warning(
        "device %s said %s", device, "s3cr3t-token", extra=device_extra(device, "modbus:/dev/ttyS0")
    )
    logging.getLogger("edged.test").info("adapter up", extra=adapter_extra("ble:hci0"))
    logging.getLogger("edged.test").debug("below the level")

    assert [entry["MESSAGE"] for entry in sent] == [
        "edged.test: device boiler/b-1 said ********",
        "edged.test: adapter up",
    ]
    first, second = sent
    assert first["PRIORITY"] == "4" and second["PRIORITY"] == "6"
    assert first["LOGGER"] == "edged.test" and first["SYSLOG_IDENTIFIER"] == "edged"
    assert first["EDGED_DEVICE"] == "boiler/b-1" and first["EDGED_ADAPTER"] == "modbus:/dev/ttyS0"
    assert second["EDGED_ADAPTER"] == "ble:hci0" and "EDGED_DEVICE" not in second
    for entry in sent:  # only names journald accepts; the record's attributes are not sent
        assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in entry), sorted(entry)
        assert "s3cr3t-token" not in repr(entry)
    assert stream.read() == ""  # nothing went to stderr as well
    assert "device boiler/b-1 said ********" in RECENT.records[-1]


def test_without_systemd_python_journal_lines_carry_priority_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_stream: TextIO
) -> None:
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # import fails as if not installed
    stream = journal_stream
    setup_logging(stream=stream)
    logging.getLogger("edged.test").warning("to stderr", extra=device_extra("boiler/b-1"))
    stream.seek(0)
    assert stream.read() == "<4>edged.test: to stderr\n"


def test_a_journal_stream_that_is_not_our_stderr_means_plain_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_stream: TextIO
) -> None:
    """A child of a service inherits JOURNAL_STREAM with its stderr redirected elsewhere."""
    assert stream_is_journal(journal_stream)
    with (tmp_path / "other").open("w+") as other:
        assert not stream_is_journal(other)
        setup_logging(stream=other)
        logging.getLogger("edged.test").warning("plain")
        other.seek(0)
        assert re.fullmatch(r"\S+ \S+ WARNING edged\.test: plain\n", other.read())


@pytest.fixture(scope="module")
def journal_socket_opened() -> None:
    """libsystemd opens one journal socket per process at the first send and keeps it: open it
    before the per-test fd leak check counts."""
    with contextlib.suppress(ImportError):
        importlib.import_module("systemd.journal").send("edged test: journal socket warm-up")


@pytest.mark.usefixtures("journal_socket_opened")
def test_journal_handler_canary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_stream: TextIO
) -> None:
    """Unmocked: the installed systemd-python builds our handler and sends without raising
    (no journald here: it drops the datagram); without the module, stderr is used instead."""
    try:
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        assert journal_handler() is None
        return
    handler = journal_handler()
    assert isinstance(handler, journal.JournalHandler)
    stream = journal_stream
    setup_logging(stream=stream)
    assert isinstance(logging.getLogger().handlers[0], journal.JournalHandler)
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda self, record: errors.append(record))
    logging.getLogger("edged.test").error("canary", extra=device_extra("boiler/b-1", "sim"))
    assert errors == []


def test_link_retry_lines_carry_their_fields(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    retry = LinkRetry(
        logging.getLogger("edged.test"),
        "boiler/b-1 on /dev/ttyS0",
        initial=1,
        maximum=2,
        stable_after=0,
        clock=lambda: now[0],
        extra=device_extra("boiler/b-1", "serial:/dev/ttyS0"),
    )
    with caplog.at_level(logging.DEBUG, "edged.test"):
        retry.attempt_failed("port gone")
        retry.attempt_failed("port gone")
        retry.connected()
    assert [getattr(r, "EDGED_DEVICE", None) for r in caplog.records] == ["boiler/b-1"] * 3
    assert {getattr(r, "EDGED_ADAPTER", None) for r in caplog.records} == {"serial:/dev/ttyS0"}
