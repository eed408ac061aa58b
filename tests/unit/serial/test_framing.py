"""Framers: lines, fixed-length frames and start/end markers, fed in arbitrary chunks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.adapters.serial.framing import FixedFramer, Framer, LineFramer, MarkerFramer

pytestmark = pytest.mark.serial


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks, last = [], 0
    for point in points:
        chunks.append(data[last:point])
        last = point
    chunks.append(data[last:])
    return chunks


# --- lines ---------------------------------------------------------------------------------


def test_line_framer_splits_lines_across_chunks() -> None:
    framer = LineFramer()
    assert framer.feed(b"T=21.5\r\nH=4") == [b"T=21.5"]
    assert framer.pending == 3
    assert framer.feed(b"0\r\n\r\n\nP=1013\n") == [b"H=40", b"P=1013"]
    assert framer.pending == 0


def test_line_framer_custom_delimiter_without_strip() -> None:
    framer = LineFramer(delimiter=b"\r", strip=False)
    assert framer.feed(b" a \r\rb\r") == [b" a ", b"", b"b"]


def test_line_framer_drops_overlong_line_and_resumes_at_next_delimiter() -> None:
    framer = LineFramer(max_length=8)
    assert framer.feed(b"ok\n" + b"x" * 5) == [b"ok"]
    assert framer.feed(b"x" * 5) == []  # now 10 pending > 8: dropped, skipping
    assert framer.overlong == 1
    assert framer.pending == 0
    assert framer.feed(b"x" * 100) == []
    assert framer.pending == 0
    assert framer.feed(b"xx\nnext\n") == [b"next"]
    assert framer.overlong == 1
    assert framer.discarded == 10 + 100 + 3
    assert framer.garbage == 0


def test_line_framer_drops_overlong_line_inside_one_chunk() -> None:
    framer = LineFramer(max_length=4)
    assert framer.feed(b"a\n123456789\nb\n") == [b"a", b"b"]
    assert framer.overlong == 1
    assert framer.discarded == 9


def test_line_framer_reset_forgets_partial_line() -> None:
    framer = LineFramer()
    framer.feed(b"partial")
    framer.reset()
    assert framer.feed(b"line\n") == [b"line"]


def test_framers_reject_bad_arguments() -> None:
    with pytest.raises(ValueError):
        LineFramer(delimiter=b"")
    with pytest.raises(ValueError):
        LineFramer(max_length=0)
    with pytest.raises(ValueError):
        MarkerFramer(b"", b"\x03")


line_body = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").strip())


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(line_body, max_size=30), cuts=st.lists(st.integers(0, 1500), max_size=20))
def test_line_framer_returns_every_line_whatever_the_chunking(
    frames: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(frame + b"\r\n" for frame in frames)
    framer = LineFramer(delimiter=b"\n", max_length=64)
    assert feed_all(framer, split_at(data, cuts)) == [frame for frame in frames if frame]
    assert framer.overlong == 0


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=30))
def test_line_framer_memory_is_bounded_for_any_input(data: bytes, cuts: list[int]) -> None:
    framer = LineFramer(max_length=32)
    for chunk in split_at(data, cuts):
        for frame in framer.feed(chunk):
            assert len(frame) <= 32
        assert framer.pending <= 32


@settings(max_examples=100, deadline=None)
@given(
    frames=st.lists(st.tuples(line_body, st.booleans()), max_size=20),
    cuts=st.lists(st.integers(0, 3000), max_size=20),
)
def test_line_framer_keeps_good_lines_between_overlong_ones(
    frames: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
    limit = 40
    parts = [b"Z" * (limit + 1 + len(body)) if long else body for body, long in frames]
    data = b"".join(part + b"\n" for part in parts)
    framer = LineFramer(max_length=limit)
    expected = [part for part, (_, long) in zip(parts, frames, strict=True) if not long and part]
    assert feed_all(framer, split_at(data, cuts)) == expected
    assert framer.overlong == sum(long for _, long in frames)


# --- fixed ---------------------------------------------------------------------------------


def test_fixed_framer_cuts_exact_lengths() -> None:
    framer = FixedFramer(4)
    assert framer.feed(b"abcdef") == [b"abcd"]
    assert framer.feed(b"gh") == [b"efgh"]
    assert framer.feed(b"123456789") == [b"1234", b"5678"]
    assert framer.pending == 1


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=500), cuts=st.lists(st.integers(0, 500), max_size=20))
def test_fixed_framer_is_chunking_independent(data: bytes, cuts: list[int]) -> None:
    framer = FixedFramer(7)
    frames = feed_all(framer, split_at(data, cuts))
    assert b"".join(frames) == data[: len(data) - len(data) % 7]
    assert all(len(frame) == 7 for frame in frames)


# --- markers -------------------------------------------------------------------------------


def test_marker_framer_discards_bytes_outside_frames() -> None:
    framer = MarkerFramer(b"\x02", b"\x03")
    assert framer.feed(b"noise\x02W 12.5 kg\x03more\x02") == [b"W 12.5 kg"]
    assert framer.feed(b"W 1") == []
    assert framer.feed(b"3.0 kg\x03") == [b"W 13.0 kg"]
    assert framer.discarded == len(b"noise") + len(b"more")
    assert framer.garbage == framer.discarded


def test_marker_framer_multibyte_markers_split_across_chunks() -> None:
    framer = MarkerFramer(b"<<", b">>")
    assert framer.feed(b"xx<") == []
    assert framer.feed(b"<abc>") == []
    assert framer.feed(b"> <<d>>") == [b"abc", b"d"]


def test_marker_framer_resynchronises_on_a_new_start() -> None:
    framer = MarkerFramer(b"\x02", b"\x03")
    assert framer.feed(b"\x02trunc") == []
    assert framer.feed(b"ated\x02good\x03") == [b"good"]


def test_marker_framer_drops_overlong_frames() -> None:
    framer = MarkerFramer(b"[", b"]", max_length=5)
    assert framer.feed(b"[123456]") == []
    assert framer.feed(b"[12") == []
    assert framer.feed(b"3456789") == []
    assert framer.overlong == 2
    assert framer.feed(b"][ok]") == [b"ok"]
    assert framer.pending == 0
    assert framer.garbage == 1  # the stray "]"; the rest was over-long frames


marker_body = st.binary(max_size=30).map(lambda b: b.replace(b"\x02", b"").replace(b"\x03", b""))


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.tuples(st.binary(max_size=10).map(lambda b: b.replace(b"\x02", b"")), marker_body),
        max_size=20,
    ),
    cuts=st.lists(st.integers(0, 1000), max_size=20),
)
def test_marker_framer_finds_frames_among_garbage(
    frames: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    data = b"".join(garbage + b"\x02" + body + b"\x03" for garbage, body in frames)
    framer = MarkerFramer(b"\x02", b"\x03", max_length=64)
    assert feed_all(framer, split_at(data, cuts)) == [body for _, body in frames]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=30))
def test_marker_framer_memory_is_bounded_for_any_input(data: bytes, cuts: list[int]) -> None:
    framer = MarkerFramer(b"<<", b">>", max_length=16)
    for chunk in split_at(data, cuts):
        for frame in framer.feed(chunk):
            assert len(frame) <= 16
        assert framer.pending <= 16 + 1
