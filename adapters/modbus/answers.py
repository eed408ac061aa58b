"""Telling a request's own answer from a late one (pure; works on any pymodbus PDU).

After a request was given up on (it timed out), its answer can still arrive while the next
request waits. Over TCP the transaction id tells them apart. RTU frames carry no id, so an
answer is judged by what it must look like: the unit that was asked, the function asked for
(or its exception), and for reads the number of values asked for (bits in whole bytes), for
writes the echo of the address (and value or quantity) that was written.

What this cannot tell apart on RTU is a late answer to an earlier read of the same size from
the same unit; :class:`~.link.Link` keeps that case from arising (see ``_settle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_BIT_READS = frozenset({1, 2})
_REGISTER_READS = frozenset({3, 4})
_SINGLE_WRITES = frozenset({5, 6})
_MULTIPLE_WRITES = frozenset({15, 16})


@dataclass(frozen=True, slots=True)
class Request:
    """What was sent: unit, transaction id (0 on RTU), function code and the PDU's body."""

    unit: int
    transaction: int
    function: int
    body: bytes

    @classmethod
    def of(cls, pdu: Any) -> Request:
        """The request as pymodbus is about to send it."""
        return cls(
            int(pdu.dev_id), int(pdu.transaction_id), int(pdu.function_code), bytes(pdu.encode())
        )

    @property
    def count(self) -> int:
        """The quantity field (reads and multiple writes): bytes 2-3 of the body."""
        return int.from_bytes(self.body[2:4], "big")


def expected_size(request: Request) -> int | None:
    """The body size of the answer to a read, ``None`` for other functions."""
    if request.function in _REGISTER_READS:
        return 1 + 2 * request.count
    if request.function in _BIT_READS:
        return 1 + (request.count + 7) // 8
    return None


def answers(request: Request, response: Any) -> bool:
    """Whether ``response`` (a decoded PDU) can be the answer to ``request``."""
    transaction = int(response.transaction_id)
    function = int(response.function_code)
    if (
        int(response.dev_id) != request.unit
        or (request.transaction and transaction and transaction != request.transaction)
        or function & 0x7F != request.function
    ):
        return False
    if function & 0x80:  # an exception response: one code byte, nothing more to compare
        return True
    # Reads are judged by the values decoded (cheaper than encoding 125 registers again):
    # registers one each, bits padded to whole bytes, on every pymodbus release.
    if function in _REGISTER_READS:
        return len(response.registers) == request.count
    if function in _BIT_READS:
        return len(response.bits) == 8 * ((request.count + 7) // 8)
    return _echo_fits(request, bytes(response.encode()))


def _echo_fits(request: Request, body: bytes) -> bool:
    if request.function in _SINGLE_WRITES:
        return body == request.body[:4]
    if request.function in _MULTIPLE_WRITES:
        return body[:4] == request.body[:4]
    return True


def same_shape(one: Request, other: Request) -> bool:
    """Whether the answers to both requests would look alike (same unit, function and size)."""
    return (
        one.unit == other.unit
        and one.function == other.function
        and expected_size(one) == expected_size(other)
    )


class Unanswered:
    """Reads given up on whose answers may still arrive, each until a deadline (RTU lines).

    A late answer to one of them is indistinguishable from the answer to another read of the
    same shape; :meth:`blocking` says how long such a read should wait before it is sent.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[Request, float]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def gave_up(self, request: Request, until: float) -> None:
        """``request`` timed out; its answer may come until ``until``."""
        self._entries.append((request, until))

    def blocking(self, request: Request, now: float) -> float | None:
        """The deadline to wait for before sending ``request``, or ``None`` to send it now.

        Only a different read of the same shape waits: the answer to an identical read is as
        good as the read's own (both read the same values).
        """
        self._expire(now)
        deadlines = [
            until
            for pending, until in self._entries
            if same_shape(pending, request) and pending != request
        ]
        return max(deadlines) if deadlines else None

    def answered(self, request: Request, now: float, window: float) -> None:
        """``request`` got an answer; identical reads given up on stay due for ``window``.

        The answer taken may have been the earlier read's late one, so one answer is still
        owed: whichever it was, it arrives within the window of this read.
        """
        self._entries = [
            (pending, max(until, now + window) if pending == request else until)
            for pending, until in self._entries
        ]

    def stray(self, response: Any, now: float) -> bool:
        """A stray answer arrived: forget the oldest read it answers; whether there was one."""
        self._expire(now)
        for index, (pending, _) in enumerate(self._entries):
            if answers(pending, response):
                del self._entries[index]
                return True
        return False

    def _expire(self, now: float) -> None:
        self._entries = [(pending, until) for pending, until in self._entries if until > now]
