"""The root helper as a process: what it refuses (nothing run), what it installs and how.

Real files in tmp_path and real .debs built with ``dpkg-deb --build``; the installer is a
recording script in place of apt-get (installing packages on this machine is not a test: see
docs/privileged.md for where the real install is proven). The folder, owner and installer are
passed to ``main`` the way only a test can; the unit's command line gives the name alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

GOOD = "edged_0.2.0-1_all.deb"

RECORDER = """#!/bin/sh
# Records its argv and what the file it was given holds, then exits with $EXIT_CODE.
{python} - "$@" <<'PY'
import hashlib, json, os, stat, sys
path = sys.argv[-1]
info = os.stat(os.path.dirname(path))
record = {{
    "argv": sys.argv[1:],
    "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
    "folder_mode": stat.S_IMODE(info.st_mode),
    "env": {{k: v for k, v in os.environ.items() if k in ("DEBIAN_FRONTEND", "PATH", "LANG")}},
}}
open({record!r}, "w").write(json.dumps(record))
PY
exit {code}
"""


def build_deb(tmp_path: Path, package: str = "edged", version: str = "0.2.0-1") -> bytes:
    root = tmp_path / f"build-{package}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: edged tests <tests@example.invalid>\nDescription: test package\n"
    )
    out = tmp_path / f"{package}-{version}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


class Helper:
    def __init__(self, tmp_path: Path) -> None:
        self.firmware = tmp_path / "firmware"
        self.firmware.mkdir()
        self.record = tmp_path / "installer.json"
        self.tmp_path = tmp_path
        self.owner = os.getuid()

    def installer(self, code: int = 0) -> str:
        script = self.tmp_path / f"installer-{code}.sh"
        script.write_text(
            RECORDER.format(python=sys.executable, record=str(self.record), code=code)
        )
        script.chmod(0o755)
        return str(script)

    def run(
        self, name: str, *, code: int = 0, firmware: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        program = (
            "import sys\n"
            "from edged.privileged.installhelper import main\n"
            "folder, owner, installer, *args = sys.argv[1:]\n"
            "sys.exit(main(args, firmware_dir=folder, owner=int(owner), installer=(installer,)))\n"
        )
        argv = [sys.executable, "-c", program, str(firmware or self.firmware), str(self.owner)]
        argv += [self.installer(code), name]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def installed(self) -> dict[str, object] | None:
        return json.loads(self.record.read_text()) if self.record.exists() else None


@pytest.fixture
def helper(tmp_path: Path) -> Helper:
    return Helper(tmp_path)


def test_installs_a_checked_copy(helper: Helper, tmp_path: Path) -> None:
    content = build_deb(tmp_path)
    image = helper.firmware / GOOD
    image.write_bytes(content)
    (helper.firmware / f"{GOOD}.version").write_text("0.2.0-1\n")
    result = helper.run(GOOD)
    assert result.returncode == 0, result.stderr
    record = helper.installed()
    assert record is not None
    argv = record["argv"]
    assert isinstance(argv, list)
    copy = Path(argv[-1])
    assert copy.name == GOOD
    assert copy.parent != helper.firmware  # a private copy, not the daemon's file
    assert record["folder_mode"] == 0o700
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    assert record["env"] == {
        "DEBIAN_FRONTEND": "noninteractive",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    }
    assert not copy.parent.exists()  # its own copy removed ...
    assert image.read_bytes() == content  # ... and nothing else
    assert sorted(p.name for p in helper.firmware.iterdir()) == [GOOD, f"{GOOD}.version"]
    assert f"installing {GOOD}: package edged version 0.2.0-1" in result.stdout
    assert f"installed {GOOD}" in result.stdout


def test_any_name_without_a_version_in_it(helper: Helper, tmp_path: Path) -> None:
    (helper.firmware / "image.deb").write_bytes(build_deb(tmp_path, version="1:3.0"))
    result = helper.run("image.deb")
    assert result.returncode == 0, result.stderr


def test_installer_failure_is_exit_2(helper: Helper, tmp_path: Path) -> None:
    (helper.firmware / GOOD).write_bytes(build_deb(tmp_path))
    result = helper.run(GOOD, code=100)
    assert result.returncode == 2
    assert "failed: the installer exited with 100" in result.stderr
    assert helper.installed() is not None


@pytest.mark.parametrize(
    "name", ["../x.deb", "sub/x.deb", ".hidden.deb", "x.txt", "-x.deb", "a b.deb", "x.deb\n", ""]
)
def test_refused_names(helper: Helper, name: str) -> None:
    result = helper.run(name)
    assert result.returncode == 1
    assert "refused: refused name" in result.stderr
    assert helper.installed() is None


def refused(helper: Helper, name: str, expected: str) -> None:
    result = helper.run(name)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("refused: ")
    assert expected in result.stderr
    assert helper.installed() is None


def test_symlink_refused(helper: Helper, tmp_path: Path) -> None:
    target = tmp_path / "real.deb"
    target.write_bytes(build_deb(tmp_path))
    (helper.firmware / GOOD).symlink_to(target)
    refused(helper, GOOD, f"{GOOD} is a symbolic link")


def test_symlinked_folder_refused(helper: Helper, tmp_path: Path) -> None:
    (helper.firmware / GOOD).write_bytes(build_deb(tmp_path))
    link = tmp_path / "linked"
    link.symlink_to(helper.firmware)
    result = helper.run(GOOD, firmware=link)
    assert result.returncode == 1
    assert "cannot open the firmware folder" in result.stderr
    assert helper.installed() is None


def test_not_a_regular_file(helper: Helper) -> None:
    os.mkfifo(helper.firmware / GOOD)  # must not hang the open
    refused(helper, GOOD, "is not a regular file")
    (helper.firmware / "dir.deb").mkdir()
    refused(helper, "dir.deb", "is not a regular file")


def test_missing_image(helper: Helper) -> None:
    refused(helper, GOOD, "cannot open")


def test_wrong_owner(helper: Helper, tmp_path: Path) -> None:
    (helper.firmware / GOOD).write_bytes(build_deb(tmp_path))
    helper.owner = os.getuid() + 4242
    refused(helper, GOOD, "is owned by uid")


def test_other_package_refused(helper: Helper, tmp_path: Path) -> None:
    (helper.firmware / "x.deb").write_bytes(build_deb(tmp_path, package="openssh-server"))
    refused(helper, "x.deb", "is package 'openssh-server', not 'edged'")
    (helper.firmware / "y.deb").write_bytes(build_deb(tmp_path, package="edged-extra"))
    refused(helper, "y.deb", "is package 'edged-extra'")


def test_not_a_deb(helper: Helper) -> None:
    (helper.firmware / GOOD).write_bytes(b"!<arch>\nnot really\n")
    refused(helper, GOOD, "not a readable .deb")


def test_sidecar_version_mismatch(helper: Helper, tmp_path: Path) -> None:
    (helper.firmware / "image.deb").write_bytes(build_deb(tmp_path))
    sidecar = helper.firmware / "image.deb.version"
    sidecar.write_text("0.3.0\n")
    refused(helper, "image.deb", "has version '0.2.0-1', image.deb.version says '0.3.0'")
    sidecar.write_text("0.2.0-1; rm -rf /\n")
    refused(helper, "image.deb", "does not hold a Debian version")
    sidecar.unlink()
    sidecar.symlink_to(tmp_path / "elsewhere")
    refused(helper, "image.deb", "image.deb.version is a symbolic link")


def test_name_version_mismatch(helper: Helper, tmp_path: Path) -> None:
    (helper.firmware / "edged_9.9_all.deb").write_bytes(build_deb(tmp_path))
    refused(helper, "edged_9.9_all.deb", "its name says '9.9'")


def test_production_entry_point_refuses_before_touching_anything() -> None:
    # The command line the unit runs: the name only, isolated mode (no cwd, no PYTHON* env).
    argv = [sys.executable, "-I", "-m", "edged.privileged.installhelper"]
    for args, expected in [
        (["../x.deb"], "refused: refused name"),
        ([], "usage:"),
        (["a.deb", "b.deb"], "usage:"),
    ]:
        result = subprocess.run(argv + args, capture_output=True, text=True, check=False)
        assert result.returncode == 1
        assert expected in result.stderr
