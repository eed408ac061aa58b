"""What both sides of the install path agree on: the firmware folder, image names, unit names.

Standard library only: the root helper (:mod:`edged.privileged.installhelper`) imports it.
"""

from __future__ import annotations

import re

FIRMWARE_DIR = "/var/lib/edged/firmware"
"""Where images to install must lie: edged's state directory (``StateDirectory=edged``)."""

INSTALL_UNIT_TEMPLATE = "edged-install@.service"
VERSION_SUFFIX = ".version"
"""``<image>.version`` next to an image holds the version the package must have."""

MAX_NAME_LENGTH = 100

# A leading letter or digit (no dot files, no option look-alikes), a small alphabet without
# "/" or whitespace, and the .deb suffix. Debian file names (edged_1.2.0+b1~rc1_all.deb) fit.
_IMAGE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+~-]*\.deb")
# Characters systemd leaves as they are in an escaped unit name (unit_name_escape()).
_UNIT_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.")
_UNIT_NAME_MAX = 255


def check_image_name(name: str) -> str:
    """``name`` if it is an acceptable image file name, else :class:`ValueError` saying why."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"the image name must be 1-{MAX_NAME_LENGTH} characters")
    if _IMAGE_NAME_RE.fullmatch(name) is None:
        raise ValueError(
            "the image name must start with a letter or digit, use only A-Z a-z 0-9 _ . + ~ - "
            "and end in .deb"
        )
    return name


def systemd_escape(text: str) -> str:
    """``text`` escaped as ``systemd-escape`` does for a unit instance (not in path mode)."""
    out = []
    for index, char in enumerate(text):
        if char in _UNIT_SAFE and not (index == 0 and char == "."):
            out.append(char)
        elif char == "/":
            out.append("-")
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(out)


def install_unit(name: str) -> str:
    """The helper unit that installs image ``name``: ``edged-install@<escaped name>.service``.

    Raises :class:`ValueError` for a name :func:`check_image_name` refuses or whose unit name
    would be longer than systemd allows.
    """
    prefix, suffix = INSTALL_UNIT_TEMPLATE.split("@")
    unit = f"{prefix}@{systemd_escape(check_image_name(name))}{suffix}"
    if len(unit) > _UNIT_NAME_MAX:
        raise ValueError("the image name is too long for a unit name once escaped")
    return unit
