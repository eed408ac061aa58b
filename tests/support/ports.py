"""Free loopback ports for test servers (re-exported from edged.netutil)."""

from edged.netutil import free_port, wait_for_port

__all__ = ["free_port", "wait_for_port"]
