"""Cutting a serial byte stream into frames: delimited lines, fixed-length, start/end markers.

Pure code with no I/O. A framer is fed chunks as they arrive and returns the frames completed by
each chunk. Every framer keeps at most ``max_length`` (plus a marker) bytes of an unfinished
frame, so a stream of garbage cannot grow memory; what it throws away is counted.
"""

from __future__ import annotations

import abc


class Framer(abc.ABC):
    """Turns chunks of bytes into complete frames.

    ``overlong`` counts frames dropped for exceeding ``max_length``; ``discarded`` counts every
    byte thrown away, and ``garbage`` the part of those that belonged to no over-long frame
    (bytes outside markers, truncated frames).
    """

    def __init__(self, max_length: int) -> None:
        if max_length < 1:
            raise ValueError("max_length must be at least 1")
        self.max_length = max_length
        self.overlong = 0
        self.discarded = 0
        self.garbage = 0

    @abc.abstractmethod
    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the frames it completed, oldest first."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget any unfinished frame (after the port was reopened)."""

    @property
    @abc.abstractmethod
    def pending(self) -> int:
        """Bytes held for an unfinished frame."""


class LineFramer(Framer):
    """Frames separated by ``delimiter`` (not included in the frame).

    With ``strip``, surrounding whitespace is removed (so ``\\r\\n`` endings work with the
    default ``\\n`` delimiter) and frames left empty are skipped. A frame longer than
    ``max_length`` is dropped whole: once the limit is passed, bytes are discarded until the
    next delimiter.
    """

    def __init__(
        self, delimiter: bytes = b"\n", max_length: int = 4096, strip: bool = True
    ) -> None:
        super().__init__(max_length)
        if not delimiter:
            raise ValueError("the delimiter cannot be empty")
        self.delimiter = delimiter
        self.strip = strip
        self._buf = b""
        self._skipping = False  # inside an over-long frame, waiting for its delimiter

    def feed(self, data: bytes) -> list[bytes]:
        if self._buf:
            data = self._buf + data
        frames = data.split(self.delimiter)
        rest = frames.pop()
        limit = self.max_length
        if self._skipping:
            if not frames:
                self.discarded += len(rest)
                self._buf = b""
                return frames
            self.discarded += len(frames[0]) + len(self.delimiter)
            del frames[0]
            self._skipping = False
        if len(rest) > limit:
            self.overlong += 1
            self.discarded += len(rest)
            rest = b""
            self._skipping = True
        self._buf = rest
        if frames and max(map(len, frames)) > limit:
            kept = [frame for frame in frames if len(frame) <= limit]
            dropped = len(frames) - len(kept)
            self.overlong += dropped
            self.discarded += sum(len(frame) for frame in frames) - sum(map(len, kept))
            frames = kept
        if self.strip:
            return [frame for frame in map(bytes.strip, frames) if frame]
        return frames

    def reset(self) -> None:
        self._buf = b""
        self._skipping = False

    @property
    def pending(self) -> int:
        return len(self._buf)


class FixedFramer(Framer):
    """Frames of exactly ``length`` bytes, back to back."""

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._buf:
            data = self._buf + data
        size = self.length
        end = len(data) - len(data) % size
        self._buf = data[end:]
        return [data[start : start + size] for start in range(0, end, size)]

    def reset(self) -> None:
        self._buf = b""

    @property
    def pending(self) -> int:
        return len(self._buf)


class MarkerFramer(Framer):
    """Frames that begin with ``start`` and end with ``end`` (markers not included).

    Bytes outside a frame are discarded. If a new ``start`` appears before the ``end`` of the
    current frame, the current frame was truncated: it is discarded and framing resynchronises
    on the new start. A frame whose content exceeds ``max_length`` is dropped.
    """

    def __init__(self, start: bytes, end: bytes, max_length: int = 4096) -> None:
        super().__init__(max_length)
        if not start or not end:
            raise ValueError("start and end markers cannot be empty")
        self.start = start
        self.end = end
        self._buf = b""
        self._in_frame = False  # _buf holds frame content (after the start marker)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        start, end, limit = self.start, self.end, self.max_length
        frames: list[bytes] = []
        pos = 0
        while True:
            if not self._in_frame:
                found = buf.find(start, pos)
                if found < 0:
                    # Keep a possible partial start marker at the very end of the chunk.
                    keep_from = max(pos, len(buf) - len(start) + 1)
                    self.discarded += keep_from - pos
                    self.garbage += keep_from - pos
                    self._buf = buf[keep_from:]
                    return frames
                self.discarded += found - pos
                self.garbage += found - pos
                pos = found + len(start)
                self._in_frame = True
            stop = buf.find(end, pos)
            scan_to = stop if stop >= 0 else len(buf)
            restart = buf.rfind(start, pos, scan_to) if start != end else -1
            if restart >= 0:
                self.discarded += restart - pos + len(start)
                self.garbage += restart - pos + len(start)
                pos = restart + len(start)
            if stop < 0:
                if len(buf) - pos > limit + len(end) - 1:
                    self.overlong += 1
                    self.discarded += len(buf) - pos
                    self._in_frame = False
                    self._buf = b""
                    return frames
                self._buf = buf[pos:]
                return frames
            if stop - pos > limit:
                self.overlong += 1
                self.discarded += stop - pos
            else:
                frames.append(buf[pos:stop])
            pos = stop + len(end)
            self._in_frame = False

    def reset(self) -> None:
        self._buf = b""
        self._in_frame = False

    @property
    def pending(self) -> int:
        return len(self._buf)
