"""How the emulated DM server answers a gateway's own requests (manage, location, diag, notify).

By default every well-formed request gets rc 200 and a malformed one rc 400, as the platform
would. Tests override the answer per device, per suffix or both, including "no answer at all".
"""

from __future__ import annotations

from dataclasses import dataclass

from edged.model import DeviceIdentity

DEFAULT_RC = 200
BAD_REQUEST_RC = 400


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to send: ``rc`` ``None`` means send nothing."""

    rc: int | None
    message: str | None = None


class AnswerPolicy:
    """Chooses the answer to each gateway DM request.

    Precedence: a rule for (device, suffix), then (device, any suffix), then (any device, suffix);
    then rc 400 for a malformed request; then the default rule (any device, any suffix), which is
    rc 200 until changed.
    """

    def __init__(self) -> None:
        self._rules: dict[tuple[DeviceIdentity | None, str | None], Answer] = {}

    def set(self, device: DeviceIdentity | None, suffix: str | None, answer: Answer) -> None:
        """Answer requests matching ``device`` and ``suffix`` (``None``: any) with ``answer``."""
        self._rules[(device, suffix)] = answer

    def reset(self) -> None:
        """Back to the defaults: 200 for good requests, 400 for malformed ones."""
        self._rules.clear()

    def decide(self, device: DeviceIdentity, suffix: str, problem: str | None) -> Answer:
        """The answer to ``suffix`` from ``device``; ``problem`` describes a malformed request."""
        for key in ((device, suffix), (device, None), (None, suffix)):
            rule = self._rules.get(key)
            if rule is not None:
                return rule
        if problem is not None:
            return Answer(BAD_REQUEST_RC, problem)
        return self._rules.get((None, None), Answer(DEFAULT_RC))
