"""Read the files a config names (the config itself, the token, the CA) as bounded regular files.

A path in a config may name anything: a FIFO (a plain ``open`` blocks until a writer comes),
``/dev/zero`` (an endless read), a directory, a multi-gigabyte file, or hold a NUL byte. Each
case is a :class:`FileProblem` with a message fit for ``check-config``, never a hang or a
traceback: the file is opened non-blocking, must be a regular file, and is read up to a limit.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileProblem(Exception):
    """A file could not be read; ``message`` says why in words for the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FileContent:
    """What was read, and the file's permission bits."""

    data: bytes
    mode: int


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a special file"


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"


def read_regular_file(path: str, limit: int) -> FileContent:
    """The content of the regular file ``path``, which must hold at most ``limit`` bytes.

    Raises :class:`FileProblem` for a path with a NUL byte, a file that cannot be opened, is not
    a regular file (opening never blocks, so a FIFO is refused, not waited on) or is too large.
    """
    if "\0" in path:
        raise FileProblem("the path contains a NUL character")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileProblem(exc.strerror or str(exc)) from exc
    except ValueError as exc:  # e.g. a path the file system encoding cannot represent
        raise FileProblem(f"unusable path: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(f"it is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileProblem(f"it is larger than {_size(limit)}")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileProblem(f"it is larger than {_size(limit)}")
        return FileContent(b"".join(chunks), stat.S_IMODE(info.st_mode))
    except OSError as exc:
        raise FileProblem(exc.strerror or str(exc)) from exc
    finally:
        os.close(fd)
