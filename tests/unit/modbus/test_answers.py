"""Telling a request's own answer from a late one, and the RTU bookkeeping of unanswered reads.

The answers are decoded by the installed pymodbus from bytes built here, as on the wire.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU

from edged.adapters.modbus.answers import Request, Unanswered, answers, expected_size

pytestmark = pytest.mark.modbus


def answer(unit: int, pdu: bytes, transaction: int = 0) -> Any:
    """The client-side decoding of ``pdu`` (function code first) from ``unit``."""
    framer: Any = FramerSocket(DecodePDU(False))
    frame = framer.encode(pdu, unit, transaction)
    if hasattr(framer, "handleFrame"):
        used, response = framer.handleFrame(frame, 0, 0)
    else:  # pymodbus 3.8
        used, response = framer.processIncomingFrame(frame)
    assert used == len(frame) and response is not None
    return response


def read(unit: int, function: int, address: int, count: int, transaction: int = 0) -> Request:
    return Request(
        unit, transaction, function, address.to_bytes(2, "big") + count.to_bytes(2, "big")
    )


def registers(*values: int) -> bytes:
    return bytes([3, 2 * len(values)]) + b"".join(v.to_bytes(2, "big") for v in values)


def test_a_read_is_answered_by_its_own_size_unit_and_function() -> None:
    request = read(1, 3, 100, 2)
    assert expected_size(request) == 5
    assert answers(request, answer(1, registers(7, 8)))
    assert not answers(request, answer(1, registers(7)))  # a late answer to a 1-register read
    assert not answers(request, answer(1, registers(7, 8, 9)))
    assert not answers(request, answer(2, registers(7, 8)))  # another unit
    assert not answers(request, answer(1, bytes([4, 4, 0, 7, 0, 8])))  # input registers
    assert answers(request, answer(1, bytes([0x83, 2])))  # its exception
    assert not answers(request, answer(1, bytes([0x84, 2])))  # another function's exception


def test_bit_reads_count_bytes_not_bits() -> None:
    request = read(1, 1, 0, 10)  # 10 coils: 2 bytes
    assert expected_size(request) == 3
    assert answers(request, answer(1, bytes([1, 2, 0xFF, 0x03])))
    assert not answers(request, answer(1, bytes([1, 1, 0xFF])))


def test_tcp_answers_must_carry_the_request_transaction_id() -> None:
    request = read(1, 3, 0, 1, transaction=8)
    assert answers(request, answer(1, registers(5), transaction=8))
    assert not answers(request, answer(1, registers(5), transaction=7))


def test_writes_are_answered_by_their_echo() -> None:
    single = Request(1, 0, 6, bytes([0, 10, 0, 42]))
    assert answers(single, answer(1, bytes([6, 0, 10, 0, 42])))
    assert not answers(single, answer(1, bytes([6, 0, 10, 0, 41])))  # another value's echo
    multiple = Request(1, 0, 16, bytes([0, 10, 0, 2, 4, 0, 1, 0, 2]))
    assert answers(multiple, answer(1, bytes([16, 0, 10, 0, 2])))
    assert not answers(multiple, answer(1, bytes([16, 0, 11, 0, 2])))


def test_a_different_read_of_the_same_shape_waits_for_the_late_answer() -> None:
    pending = Unanswered()
    first = read(1, 3, 0, 2)
    pending.gave_up(first, until=10.0)
    assert pending.blocking(read(1, 3, 100, 2), now=9.0) == 10.0  # same shape: wait
    assert pending.blocking(first, now=9.0) is None  # its retry: the answer is as good
    assert pending.blocking(read(1, 3, 100, 1), now=9.0) is None  # another size: told apart
    assert pending.blocking(read(2, 3, 100, 2), now=9.0) is None  # another unit
    assert pending.blocking(read(1, 3, 100, 2), now=10.0) is None  # expired
    assert len(pending) == 0


def test_a_stray_answer_settles_the_oldest_read_it_answers() -> None:
    pending = Unanswered()
    pending.gave_up(read(1, 3, 0, 2), until=10.0)
    pending.gave_up(read(1, 3, 50, 1), until=10.0)
    assert not pending.stray(answer(1, registers(1, 2, 3)), now=5.0)  # answers neither
    assert pending.stray(answer(1, registers(1)), now=5.0)
    assert pending.blocking(read(1, 3, 60, 1), now=5.0) is None
    assert pending.blocking(read(1, 3, 100, 2), now=5.0) == 10.0
    assert pending.stray(answer(1, registers(1, 2)), now=5.0)
    assert len(pending) == 0


def test_an_answered_retry_keeps_one_answer_owed_for_its_own_window() -> None:
    """The retry may have taken the first attempt's late answer: its own is still due."""
    pending = Unanswered()
    first = read(1, 3, 0, 2)
    pending.gave_up(first, until=10.0)
    pending.answered(first, now=9.5, window=2.0)
    assert pending.blocking(read(1, 3, 100, 2), now=11.0) == 11.5
    pending.answered(read(1, 3, 100, 2), now=11.0, window=2.0)  # not identical: no change
    assert pending.blocking(read(1, 3, 100, 2), now=11.0) == 11.5
