"""A serial device's state, from what its config says the device does.

The rule (docs/serial.md, "Device states"):

* **down** while the port is not open, and after a reopen in a failure episode until the port
  has proved itself: something was received, or it stayed open ``stable_after`` seconds. A
  port that opens and vanishes at once therefore stays down instead of flipping.
* With the port open, the config names the signs of life to watch:

  - ``queries``: the last poll got an answer to at least one query;
  - ``idle_timeout``: something was received within ``idle_timeout``.

  The device is **online** while at least one configured sign is present and **offline**
  when every configured sign is absent. With no sign configured (a device that only prints,
  without ``idle_timeout``), it is online while the port is open. Bytes received do not
  count as an answer to a query, so a device that streams but ignores its queries does not
  flip at every poll.
* At each open the signs start present: a device is assumed alive until a poll goes
  unanswered or it stays silent for ``idle_timeout``.
"""

from __future__ import annotations

from edged.model import DeviceState


class Liveness:
    """The signs of life of one device on an open port; :meth:`state` combines them."""

    def __init__(self, *, polled: bool, idle_timeout: float | None, stable_after: float) -> None:
        self.polled = polled
        self.idle_timeout = idle_timeout
        self.stable_after = stable_after
        self.confirmed = True
        """False after a reopen in a failure episode until the port proved itself."""
        self.answering: bool | None = True if polled else None
        """Whether the last poll was answered; None when the device has no queries."""
        self.receiving: bool | None = True if idle_timeout is not None else None
        """Whether something came within ``idle_timeout``; None without one."""
        self._answer_detail = ""

    def opened(self, *, confirmed: bool) -> None:
        """The port was (re)opened; ``confirmed`` False if it must prove itself first."""
        self.confirmed = confirmed
        self.answering = True if self.polled else None
        self.receiving = True if self.idle_timeout is not None else None
        self._answer_detail = ""

    def received(self) -> bool:
        """Something was received; True if that changed a sign (the state may have changed)."""
        if self.confirmed and self.receiving is not False:
            return False
        self.confirmed = True
        if self.receiving is not None:
            self.receiving = True
        return True

    def confirm(self) -> None:
        """The port stayed open long enough to count as back."""
        self.confirmed = True

    def silent(self) -> None:
        """Nothing was received for ``idle_timeout``."""
        if self.receiving is not None:
            self.receiving = False

    def poll_done(self, answered: bool, detail: str = "") -> None:
        """A poll finished; ``detail`` says why it was not answered."""
        self.answering = answered
        self._answer_detail = "" if answered else detail

    def state(self) -> tuple[DeviceState, str]:
        """The state and its detail for an open port."""
        if not self.confirmed:
            return (
                DeviceState.DOWN,
                f"port open after failures; waiting for data or {self.stable_after:g} s "
                "without a loss",
            )
        signs = [sign for sign in (self.answering, self.receiving) if sign is not None]
        if not signs or any(signs):
            return DeviceState.ONLINE, ""
        details = [self._answer_detail] if self.answering is False else []
        if self.receiving is False:
            details.append(f"nothing received for {self.idle_timeout:g} s")
        return DeviceState.OFFLINE, "; ".join(detail for detail in details if detail)
