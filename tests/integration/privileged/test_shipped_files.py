"""The shipped helper unit and polkit rule: systemd's own checks, the rule's decisions run in a
JavaScript engine, and the package installing both where systemd and polkit look."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edged.privileged.names import install_unit

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "systemd" / "edged-install@.service"
RULE = REPO / "polkit" / "50-edged.rules"
ANALYZE = shutil.which("systemd-analyze")
NODE = shutil.which("node") or shutil.which("nodejs")

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")
needs_node = pytest.mark.skipif(NODE is None, reason="no JavaScript engine (node) here")

# polkit's own Result values (src/polkitbackend/init.js); NOT_HANDLED is null.
_HARNESS = """
const fs = require("fs"), vm = require("vm");
const rules = [];
const polkit = {
  Result: {NO: "no", YES: "yes", AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep",
           AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep", NOT_HANDLED: null},
  addRule: (rule) => rules.push(rule),
  log: () => {},
};
vm.runInNewContext(fs.readFileSync(process.argv[1], "utf8"), {polkit}, {filename: process.argv[1]});
const answers = JSON.parse(fs.readFileSync(0, "utf8")).map(([user, id, details]) => {
  const action = {id, lookup: (key) => details[key]};
  for (const rule of rules) {
    const answer = rule(action, {user, local: false, active: false});
    if (answer !== null && answer !== undefined) return answer;
  }
  return null;
});
console.log(JSON.stringify({rules: rules.length, answers}));
"""

MANAGE = "org.freedesktop.systemd1.manage-units"
SAMPLE_UNIT = install_unit("edged_0.2.0-1+b1~rc1_all.deb")


def _cases() -> list[tuple[str, str, dict[str, str], str | None]]:
    start = {"verb": "start"}
    return [
        ("edged", "org.freedesktop.login1.reboot", {}, "yes"),
        ("edged", "org.freedesktop.login1.reboot-multiple-sessions", {}, "yes"),
        ("edged", "org.freedesktop.login1.reboot-ignore-inhibit", {}, None),
        ("edged", "org.freedesktop.login1.power-off", {}, None),
        ("edged", "org.freedesktop.login1.set-wall-message", {}, None),
        ("mallory", "org.freedesktop.login1.reboot", {}, None),
        ("edged", MANAGE, {**start, "unit": SAMPLE_UNIT}, "yes"),
        ("edged", MANAGE, {**start, "unit": install_unit("image.deb")}, "yes"),
        ("mallory", MANAGE, {**start, "unit": SAMPLE_UNIT}, None),
        ("edged", MANAGE, {"verb": "stop", "unit": SAMPLE_UNIT}, None),
        ("edged", MANAGE, {"verb": "restart", "unit": SAMPLE_UNIT}, None),
        ("edged", MANAGE, {"verb": "kill", "unit": SAMPLE_UNIT}, None),
        ("edged", MANAGE, {"unit": SAMPLE_UNIT}, None),
        ("edged", MANAGE, start, None),
        ("edged", MANAGE, {**start, "unit": "edged.service"}, None),
        ("edged", MANAGE, {**start, "unit": "ssh.service"}, None),
        ("edged", MANAGE, {**start, "unit": "edged-install@.service"}, None),
        ("edged", MANAGE, {**start, "unit": "edged-install@a-b.deb.service"}, None),
        ("edged", MANAGE, {**start, "unit": "edged-install@a/b.service"}, None),
        ("edged", MANAGE, {**start, "unit": "xedged-install@a.service"}, None),
        ("edged", MANAGE, {**start, "unit": "edged-install@a.service.d"}, None),
        ("edged", MANAGE, {**start, "unit": "edged-install@a.socket"}, None),
        ("edged", "org.freedesktop.systemd1.manage-unit-files", {}, None),
        ("edged", "org.freedesktop.systemd1.reload-daemon", {}, None),
        ("edged", "org.freedesktop.systemd1.set-environment", {}, None),
        ("edged", "org.freedesktop.packagekit.package-install", {}, None),
    ]


@needs_node
def test_rule_grants_exactly_the_two_acts() -> None:
    assert NODE is not None
    cases = _cases()
    result = subprocess.run(
        [NODE, "-e", _HARNESS, str(RULE)],
        input=json.dumps([case[:3] for case in cases]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["rules"] == 1
    got = {
        (user, action, json.dumps(d)): a
        for (user, action, d, _), a in zip(cases, output["answers"], strict=True)
    }
    expected = {(user, action, json.dumps(d)): a for user, action, d, a in cases}
    assert got == expected


def test_rule_text() -> None:
    # Without a JavaScript engine at hand, at least what the rule may grant is pinned here.
    text = RULE.read_text()
    assert text.count("polkit.addRule(") == 1
    assert 'subject.user !== "edged"' in text
    assert text.count("polkit.Result.YES") == 2
    granted = {
        "org.freedesktop.login1.reboot",
        "org.freedesktop.login1.reboot-multiple-sessions",
        "org.freedesktop.systemd1.manage-units",
    }
    quoted = {part for part in text.split('"')[1::2] if part.startswith("org.freedesktop.")}
    assert quoted == granted
    assert 'action.lookup("verb") === "start"' in text
    assert "AUTH_" not in text and "polkit.spawn" not in text


@needs_analyze
def test_helper_unit_verifies(tmp_path: Path) -> None:
    assert ANALYZE is not None
    # verify wants ExecStart's program to exist here: the package's interpreter is python3.
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/usr/bin/python3 ", "/bin/true "))
    result = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(tmp_path / SAMPLE_UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # unknown keys are only warnings: fail on any


def test_helper_unit_runs_the_helper_with_the_unescaped_name() -> None:
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/python3 -I -m edged.privileged.installhelper %I\n" in text
    assert "Type=oneshot" in text
    assert "User=" not in text  # root: dpkg needs it
    assert "Condition" not in text.replace("No Condition*=", "")
    assert "[Install]" not in text  # started on request only, never enabled


def test_package_ships_both() -> None:
    install = (REPO / "debian" / "edged.install").read_text().splitlines()
    assert "systemd/edged-install@.service usr/lib/systemd/system/" in install
    assert "polkit/50-edged.rules usr/share/polkit-1/rules.d/" in install
    control = (REPO / "debian" / "control").read_text()
    assert "python3-dbus-fast" in control and "polkitd" in control
