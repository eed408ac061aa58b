"""The exception hierarchy. Messages tell the operator what happened and what to do."""

from __future__ import annotations


class EdgedError(Exception):
    """Base of every error edged raises on purpose."""


class ConfigError(EdgedError):
    """The configuration is invalid; ``problems`` lists every ``FILE:LINE: path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class AdapterError(EdgedError):
    """An adapter could not do its job."""


class TransientAdapterError(AdapterError):
    """Worth retrying soon: a timeout, a device unplugged, a link that dropped."""


class PermanentAdapterError(AdapterError):
    """Retrying soon will not help (missing library, bad hardware setup); retried slowly."""


class CommandError(EdgedError):
    """Base of command failures; the subclass decides the result status."""


class CommandRejected(CommandError):
    """The command's input is invalid; nothing was done."""


class CommandFailed(CommandError):
    """The command was attempted and the hardware or adapter failed."""


class CommandUnsupported(CommandError):
    """The target does not support this command."""


class PayloadTooLarge(EdgedError):
    """A publication exceeds the platform's 131072-byte payload limit; it is never sent."""


class PublishRejected(EdgedError):
    """The broker acknowledged a QoS 1 publication with a failure reason (MQTT 5 PUBACK).

    The broker will not take this message; sending it again cannot help.
    """

    def __init__(self, reason_code: int, reason_name: str) -> None:
        super().__init__(f"the broker rejected the publication: {reason_name} ({reason_code})")
        self.reason_code = reason_code
        self.reason_name = reason_name
