"""The root helper: install one checked .deb of edged from the firmware folder.

Run by ``edged-install@<name>.service`` as ``python3 -I -m edged.privileged.installhelper NAME``
(the unit's instance, unescaped), as root. What it trusts and why is in docs/privileged.md; in
short, the name and the file come from the unprivileged daemon, so both are checked here:

1. ``NAME`` is a plain file name (:func:`~edged.privileged.names.check_image_name`);
2. ``FIRMWARE_DIR/NAME`` is opened without following symlinks (neither the folder nor the file
   may be one), and is a regular file owned by the ``edged`` user;
3. it is copied into a private folder only root can write, and everything after this looks at
   the copy only, so the daemon cannot change the file between the checks and the install;
4. the copy's ``Package`` is exactly ``edged``; its ``Version`` equals the one in
   ``NAME.version`` when that file exists (same rules as the image) and the one in the name when
   the name is ``edged_<version>_<arch>.deb``;
5. the copy is installed with ``apt-get install`` (dependencies resolved from root's configured
   sources, no package ever removed, no downgrade, old conffiles kept).

Everything it does is written to stdout (the journal); every refusal is one line on stderr and
exit code 1 (the installer's failure: 2). It deletes only its own copy.
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from edged.privileged.names import FIRMWARE_DIR, VERSION_SUFFIX, check_image_name

PACKAGE = "edged"
USER = "edged"
MAX_IMAGE_BYTES = 4 << 30
MAX_VERSION_BYTES = 256

INSTALLER = (
    "/usr/bin/apt-get",
    "install",
    "--yes",
    "--no-remove",
    "--no-install-recommends",
    "-o",
    "DPkg::Lock::Timeout=300",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
)
"""The install command; the image's absolute path is appended."""

ENVIRONMENT = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}

_DEB_NAME_RE = re.compile(r"edged_([^_]+)_[^_]+\.deb")
# Debian versions: an optional epoch, then characters dpkg allows.
_VERSION_RE = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9.+~-]+")


class Refused(Exception):
    """The image is not installed; the message says why (one line)."""


def _open_in(
    dir_fd: int, name: str, owner: int, limit: int, *, missing_ok: bool = False
) -> int | None:
    """``name`` in the folder opened as ``dir_fd``: a regular file owned by ``owner``.

    None when it does not exist and ``missing_ok``.
    """
    try:
        # O_NONBLOCK: a FIFO put there must not hang the open.
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError as exc:
        if exc.errno == errno.ENOENT and missing_ok:
            return None
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise Refused(f"{name} is a symbolic link") from None
        raise Refused(f"cannot open {name}: {exc.strerror}") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"{name} is not a regular file"
    elif info.st_uid != owner:
        problem = f"{name} is owned by uid {info.st_uid}, not by {USER} (uid {owner})"
    elif info.st_size > limit:
        problem = f"{name} is larger than {limit} bytes"
    if problem is not None:
        os.close(fd)
        raise Refused(problem)
    return fd


def _fields(path: str) -> tuple[str, str]:
    result = subprocess.run(
        ["/usr/bin/dpkg-deb", "--show", "--showformat=${Package}\\t${Version}\\n", path],
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise Refused(f"not a readable .deb: {last}")
    package, _, version = result.stdout.rstrip("\n").partition("\t")
    return package, version


def _upstream(version: str) -> str:
    return version.split(":", 1)[1] if ":" in version else version


def install(
    name: str,
    *,
    firmware_dir: str = FIRMWARE_DIR,
    owner: int | None = None,
    installer: Sequence[str] = INSTALLER,
) -> int:
    """Check and install image ``name``; the installer's exit code (0: installed).

    ``owner`` is the uid the files must belong to (default: the ``edged`` user's). Raises
    :class:`Refused` when a check fails; nothing has been installed then.
    """
    check_image_name_or_refuse(name)
    if owner is None:
        try:
            owner = pwd.getpwnam(USER).pw_uid
        except KeyError:
            raise Refused(f"there is no user {USER}") from None
    try:
        dir_fd = os.open(firmware_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"cannot open the firmware folder {firmware_dir}: {exc.strerror}") from None
    try:
        expected = None
        sidecar = name + VERSION_SUFFIX
        fd = _open_in(dir_fd, sidecar, owner, MAX_VERSION_BYTES, missing_ok=True)
        if fd is not None:
            with os.fdopen(fd, "rb") as file:
                expected = file.read(MAX_VERSION_BYTES).decode("ascii", "replace").strip()
            if _VERSION_RE.fullmatch(expected) is None:
                raise Refused(f"{sidecar} does not hold a Debian version")
        image_fd = _open_in(dir_fd, name, owner, MAX_IMAGE_BYTES)
        assert image_fd is not None
    finally:
        os.close(dir_fd)
    with tempfile.TemporaryDirectory(prefix="edged-install-") as private:
        copy = os.path.join(private, name)
        with os.fdopen(image_fd, "rb") as source, open(copy, "xb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        package, version = _fields(copy)
        if package != PACKAGE:
            raise Refused(f"{name} is package {package!r}, not {PACKAGE!r}")
        if expected is not None and version != expected:
            raise Refused(f"{name} has version {version!r}, {sidecar} says {expected!r}")
        named = _DEB_NAME_RE.fullmatch(name)
        if named is not None and named.group(1) != _upstream(version):
            raise Refused(f"{name} has version {version!r}, its name says {named.group(1)!r}")
        argv = [*installer, copy]
        print(
            f"installing {name}: package {package} version {version}: {' '.join(argv)}", flush=True
        )
        # The installer's output goes straight to ours: the journal.
        return subprocess.run(
            argv, env=ENVIRONMENT, stdin=subprocess.DEVNULL, check=False
        ).returncode


def check_image_name_or_refuse(name: str) -> None:
    """:func:`~edged.privileged.names.check_image_name` raising :class:`Refused`."""
    try:
        check_image_name(name)
    except ValueError as exc:
        raise Refused(f"refused name {name!r}: {exc}") from None


def main(
    argv: Sequence[str] | None = None,
    *,
    firmware_dir: str = FIRMWARE_DIR,
    owner: int | None = None,
    installer: Sequence[str] = INSTALLER,
) -> int:
    """``installhelper NAME``: 0 installed, 1 refused (nothing done), 2 the installer failed.

    The keyword arguments go to :func:`install`; only tests pass them (the unit's command line
    cannot: it gives the name only).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python3 -m edged.privileged.installhelper NAME", file=sys.stderr)
        return 1
    try:
        code = install(args[0], firmware_dir=firmware_dir, owner=owner, installer=installer)
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    if code != 0:
        print(f"failed: the installer exited with {code}", file=sys.stderr)
        return 2
    print(f"installed {args[0]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
