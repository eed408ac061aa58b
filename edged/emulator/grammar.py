"""The platform side's grammar, kept under its old name: see :mod:`edged.appclient.grammar`."""

from edged.appclient.grammar import *  # noqa: F403
from edged.appclient.grammar import __all__  # noqa: F401
