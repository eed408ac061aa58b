"""The daemon's two privileged acts, each through one narrow path (docs/privileged.md).

* rebooting the machine: logind's ``Reboot`` on the system bus, allowed for the ``edged`` user
  by the shipped polkit rule (:func:`edged.privileged.client.logind_reboot`);
* installing a package: starting the root helper unit ``edged-install@<name>.service``, which
  checks and installs a .deb of edged from the firmware folder
  (:func:`edged.privileged.client.start_install`, :mod:`edged.privileged.installhelper`).

This package's ``__init__`` and :mod:`edged.privileged.names` import the standard library only:
the root helper imports them and nothing else of edged.
"""


class PrivilegedError(Exception):
    """A privileged act was refused or failed; the message is safe to log and to report."""
