"""Image names and the helper unit's name: the rules both sides of the install path share."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edged.privileged.names import (
    MAX_NAME_LENGTH,
    check_image_name,
    install_unit,
    systemd_escape,
)


@pytest.mark.parametrize(
    "name", ["edged_0.2.0-1_all.deb", "edged_1.0+b1~rc2_arm64.deb", "x.deb", "9.deb", "A_b.deb"]
)
def test_good_names(name: str) -> None:
    assert check_image_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".deb",
        ".hidden.deb",
        "../x.deb",
        "a/b.deb",
        "-x.deb",
        "_x.deb",
        "x.txt",
        "x.deb.txt",
        "x.DEB",
        "a b.deb",
        "a\n.deb",
        "x.deb\n",
        "a:b.deb",
        "ä.deb",
        "x" * (MAX_NAME_LENGTH - 3) + ".deb",
    ],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="image name"):
        check_image_name(name)


def test_escape_matches_systemd_escape() -> None:
    tool = shutil.which("systemd-escape")
    assert tool is not None, "systemd-escape is part of systemd, installed with systemd-analyze"
    for text in ["edged_0.2.0-1+b1~rc1_all.deb", "a:b_c.d", ".x", "a\\b", "ä/é x", "plain"]:
        expected = subprocess.run([tool, "--", text], capture_output=True, text=True, check=True)
        assert systemd_escape(text) == expected.stdout.strip(), text


def test_install_unit() -> None:
    assert (
        install_unit("edged_0.2.0-1_all.deb") == "edged-install@edged_0.2.0\\x2d1_all.deb.service"
    )
    with pytest.raises(ValueError, match="image name"):
        install_unit("../x.deb")
    longest = "a" + "-" * (MAX_NAME_LENGTH - 5) + ".deb"
    with pytest.raises(ValueError, match="too long for a unit name"):
        install_unit(longest)
    assert len(install_unit("a" * (MAX_NAME_LENGTH - 4) + ".deb")) <= 255
