"""The daemon's logging: libraries quieted whatever the order of setup, secrets redacted.

Each test configures the real root logger as the daemon does (``setup_logging``) and reads
what reaches stderr; the fixture puts pytest's own logging back afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from edged.adapters.modbus.link import quiet_pymodbus_logging
from edged.logsetup import setup_logging

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
