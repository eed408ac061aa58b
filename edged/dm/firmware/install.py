"""How an install's outcome becomes ``mgmt.firmware.updateStatus``, now or after a restart.

The install runs the target's ``firmware.install`` action with the image's path
(:meth:`edged.dm.actions.ActionRunner.run` with ``image=``). Its failures map as follows
(PROTOCOL.md 4.11 offers only 2 and 5 for a failed update):

* :class:`~edged.dm.actions.ActionError` with rc 400 or 501 (the action refused the image:
  a bad package, a command the device rejected or does not support) -> 5 Unsupported Image;
* any other failure (the program failed or timed out, the adapter failed) -> 2, read as
  "the device could not complete the update".

The gateway's ``builtin: install-package`` upgrades edged itself, and the upgrade restarts the
daemon: that install is complete only when the restarted daemon runs the new version. At the
next start (:func:`after_restart`) it succeeded when the running version is the requested
``mgmt.firmware.version`` (or, when none was given, differs from the one that started the
install), else it is 5 (the package did not bring the version asked for). Any other install
interrupted by a restart (the daemon stopped while it ran) is 2: whether it completed is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

from edged.config.management import ActionConfig
from edged.dm import codes
from edged.dm.actions import ActionError
from edged.dm.firmware.state import Firmware, Status


def failure_status(error: ActionError) -> Status:
    """The updateStatus of a failed install."""
    if error.rc in (codes.BAD_REQUEST, codes.NOT_IMPLEMENTED):
        return Status.UNSUPPORTED_IMAGE
    return Status.OUT_OF_MEMORY


def completes_at_restart(is_gateway: bool, action: ActionConfig | None) -> bool:
    """Whether this install ends with the daemon's restart (edged upgrading itself)."""
    return is_gateway and action is not None and action.builtin == "install-package"


def after_restart(
    firmware: Firmware, job: Mapping[str, object], running: str, *, at_restart: bool
) -> Status:
    """The outcome of an install that was in progress when the daemon stopped."""
    if not at_restart:
        return Status.OUT_OF_MEMORY
    if firmware.version:
        ok = running == firmware.version
    else:
        ok = isinstance(job.get("from"), str) and running != job.get("from")
    return Status.SUCCESS if ok else Status.UNSUPPORTED_IMAGE
