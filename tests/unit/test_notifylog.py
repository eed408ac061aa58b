"""Notify messages: platform text is data, never log structure; what is kept is bounded."""

from __future__ import annotations

import logging

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.notifylog import OTHER, NotifyLog

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def notify(message: object, device_id: str = "pump-1", **extra: object) -> bytes:
    body = {"Request": "publish", "RC": 3, "Type": "pump", "Id": device_id, "Message": message}
    return orjson.dumps({**body, **extra})


def test_each_problem_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    log = NotifyLog()
    with caplog.at_level(logging.DEBUG, logger="edged.notify"):
        for _ in range(5):
            log.handle(notify("Device type is not valid."))
    assert [r.levelno for r in caplog.records] == [logging.WARNING] + [logging.DEBUG] * 4
    assert log.summary() == {"total": 5, "sources": 1, "top": {"pump/pump-1": 5}}


def test_a_newline_in_the_message_cannot_forge_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="edged.notify"):
        NotifyLog().handle(notify("x\n2026-12-01 ERROR edged.uplink: INJECTED-FAKE-LINE"))
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert "x\\n2026-12-01 ERROR edged.uplink: INJECTED-FAKE-LINE" in record.getMessage()


def test_a_megabyte_message_becomes_a_short_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edged.notify"):
        NotifyLog().handle(notify("m" * 1_000_000, device_id="d" * 1000))
    assert len(caplog.records[0].getMessage()) < 1000


def test_what_is_kept_is_bounded_however_many_sources_write() -> None:
    log = NotifyLog(max_sources=10, max_problems=20)
    for n in range(1000):
        log.handle(notify(f"problem {n}" * 100, device_id=f"dev-{n}"))
    assert len(log.per_source) == 11
    assert log.per_source[OTHER] == 990
    assert len(log._logged) == 20
    assert len(orjson.dumps(log.summary())) < 2000


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"[1,2]", b"null", b'{"RC": "3"}', b'{"Message": {"nested": [1]}}'],
)
def test_odd_notify_messages_are_taken_without_error(payload: bytes) -> None:
    log = NotifyLog()
    log.handle(payload)
    assert log.total == 1


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.dictionaries(
            st.sampled_from(["Request", "RC", "Type", "Id", "Topic", "Message", "x"]),
            st.one_of(st.text(max_size=200), INT64, st.none(), st.lists(INT64)),
        ).map(orjson.dumps),
    )
)
def test_fuzzed_notify_messages_never_raise_and_log_one_line_each(payload: bytes) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("edged.notify")
    logger.addHandler(handler)
    try:
        NotifyLog().handle(payload)
    finally:
        logger.removeHandler(handler)
    assert len(records) <= 1
    for record in records:
        assert "\n" not in record.getMessage() and "\r" not in record.getMessage()
