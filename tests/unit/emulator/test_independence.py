"""The platform side is an independent oracle: it shares no code with the gateway it checks.

The platform side is the emulator and the application client it is built on (edged/emulator,
edged/appclient). Its topic grammar and limits are its own (edged/appclient/grammar.py,
edged/emulator/limits.py). If it used the gateway's (edged.topics, edged.codec), a mistake made
once in the gateway's topic builder and its parser, or in its payload limit, would pass every
end-to-end test. The emulator's and the application client's own tests build their input topics
as literals for the same reason.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edged.appclient
import edged.emulator

ROOT = Path(__file__).resolve().parents[3]
EMULATOR = Path(edged.emulator.__file__).parent
APPCLIENT = Path(edged.appclient.__file__).parent
PLATFORM_SIDE = (EMULATOR, APPCLIENT)
PLATFORM_TESTS = [
    ROOT / "tests" / kind / package
    for kind in ("unit", "integration")
    for package in ("emulator", "appclient")
]

ALLOWED = ("edged.emulator", "edged.appclient", "edged.model")
"""What of edged the platform side may use: itself, and the plain identity value."""

GATEWAY_MODULES = ("edged.topics", "edged.codec", "edged.bridge", "edged.uplink", "edged.app")
"""What the platform side's own tests may not use either (their topics are written out
literally; a test may still run the daemon as a process, which imports nothing)."""


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from edged import x`
    return found


def file_imports(path: Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    return imported_modules(path.read_text(encoding="utf-8"), package)


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def forbidden(modules: set[str]) -> list[str]:
    """The modules of edged outside :data:`ALLOWED`."""
    return sorted(
        name for name in modules if name.startswith("edged.") and not _within(name, ALLOWED)
    )


def python_files(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*.py"))


@pytest.mark.parametrize(
    "path", python_files(*PLATFORM_SIDE), ids=lambda p: str(p.relative_to(ROOT / "edged"))
)
def test_the_platform_side_imports_nothing_of_the_gateway(path: Path) -> None:
    assert forbidden(file_imports(path)) == [], (
        f"{path.relative_to(ROOT)} imports gateway code; the platform side (emulator and "
        f"application client) is the test oracle and may use only {', '.join(ALLOWED)} of edged"
    )


@pytest.mark.parametrize(
    "path",
    python_files(*(path for path in PLATFORM_TESTS if path.is_dir())),
    ids=lambda p: str(p.relative_to(ROOT / "tests")),
)
def test_its_tests_build_no_topic_with_gateway_code(path: Path) -> None:
    used = sorted(name for name in file_imports(path) if _within(name, GATEWAY_MODULES))
    assert used == [], f"{path.relative_to(ROOT)}: write the topics out instead of using {used}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from edged import topics", ["edged.topics"]),
        ("import edged.codec", ["edged.codec"]),
        ("from edged.uplink.driver import X", ["edged.uplink.driver", "edged.uplink.driver.X"]),
        ("from .. import bridge", ["edged.bridge"]),
        ("from ..topics import parse", ["edged.topics", "edged.topics.parse"]),
        ("if TYPE_CHECKING:\n    from edged.app import App", ["edged.app", "edged.app.App"]),
        ("def f():\n    from edged import codec", ["edged.codec"]),
        ("from edged.model import DeviceIdentity\nfrom . import grammar", []),
        ("from edged.emulator.rules import check_publication", []),
        ("from edged.appclient import grammar", []),
        ("from edged.appclient.connection import Connection", []),
        ("from edged.text import safe", ["edged.text", "edged.text.safe"]),
    ],
)
def test_the_scan_sees_every_form_of_import(source: str, expected: list[str]) -> None:
    # If the scan missed a form, the test above would pass while proving nothing.
    assert forbidden(imported_modules(source, "edged.emulator")) == expected


def test_loading_the_platform_side_loads_no_gateway_module() -> None:
    # Catches indirect imports too (a module the platform side uses that imports the gateway's).
    # (The daemon itself never loads it: edged/cli.py imports only the emulator's cli module and
    # edged.appcli, which load the rest when their command runs.)
    names = sorted(
        f"edged.{package.name}.{path.stem}"
        for package in PLATFORM_SIDE
        for path in package.glob("*.py")
        if path.stem != "__init__"
    )
    probe = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules\n"
        f"             if m.startswith('edged.') and not m.startswith({ALLOWED!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
