"""The platform emulator's auto-registration API (PROTOCOL.md §3.1): injected failures, the
registration state of each device, pending counts, dropped publications and a wait.

A part of :class:`~edged.emulator.emulator.PlatformEmulator`, kept in its own module for size;
the model itself is :mod:`edged.emulator.autoreg`. Every method is thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from edged.emulator import notify
from edged.emulator.autoreg import AutoRegistration, RegistrationState
from edged.emulator.recorder import Recorder
from edged.emulator.records import DroppedPublication
from edged.model import DeviceIdentity


class RegistrationAPI:
    """The auto-registration methods of the emulator (a mixin: the emulator sets the state)."""

    gateway: DeviceIdentity | None
    _cond: threading.Condition
    _recorder: Recorder
    _autoreg: AutoRegistration | None

    def fail_registration(
        self,
        device: DeviceIdentity,
        message: str,
        *,
        window: float,
        times: int = 1,
        rc: int | str = notify.DEFAULT_RC,
    ) -> None:
        """Make the next ``times`` registration attempts of ``device`` fail with ``message`` (a
        text of :mod:`edged.emulator.notify`): the message that makes the attempt is dropped, the
        gateway is sent a notify, and for ``window`` seconds every further message for the device
        is dropped (with at most one notify a second).

        Raises:
            ValueError: auto-registration is off, or the device is the gateway or is already
                pending or registered.
        """
        with self._cond:
            self._registration().fail_registration(
                device, message, window=window, times=times, rc=rc
            )

    def registration_state(self, device: DeviceIdentity) -> RegistrationState:
        """``unknown``, ``pending``, ``registered``, or ``failed`` (during the failure window).

        With auto-registration off, a device is ``registered`` once the registry has seen it.
        """
        with self._cond:
            if self._autoreg is not None:
                return self._autoreg.state(device)
            seen = device == self.gateway or self._recorder.registry.get(device) is not None
            return "registered" if seen else "unknown"

    def wait_registered(self, devices: Iterable[DeviceIdentity], timeout: float = 10) -> None:
        """Block until every one of ``devices`` is registered.

        Raises:
            TimeoutError: not all within ``timeout`` seconds (the message names the others).
        """
        wanted = list(devices)

        def done() -> bool:
            return all(self.registration_state(device) == "registered" for device in wanted)

        try:
            self._recorder.wait_for(done, timeout, "registered")
        except TimeoutError:
            with self._cond:
                states = {str(d): self.registration_state(d) for d in wanted}
            left = {d: s for d, s in states.items() if s != "registered"}
            raise TimeoutError(f"not registered within {timeout:g} s: {left}") from None

    def pending_count(self, gateway: DeviceIdentity | None = None) -> int:
        """Registrations of ``gateway`` (default: the configured one) pending now."""
        with self._cond:
            autoreg = self._autoreg
            return autoreg.pending_count(gateway or autoreg.gateway) if autoreg else 0

    def max_pending_seen(self, gateway: DeviceIdentity | None = None) -> int:
        """The most registrations of ``gateway`` pending at once (since start or :meth:`clear`)."""
        with self._cond:
            autoreg = self._autoreg
            return autoreg.max_pending_seen(gateway or autoreg.gateway) if autoreg else 0

    def pending_history(self, gateway: DeviceIdentity | None = None) -> list[tuple[float, int]]:
        """``(time.monotonic(), pending count)`` at the start and after every change."""
        with self._cond:
            autoreg = self._autoreg
            return autoreg.pending_history(gateway or autoreg.gateway) if autoreg else []

    def dropped(self, device: DeviceIdentity | None = None) -> list[DroppedPublication]:
        """The publications dropped for failed registrations (of ``device``, if given)."""
        with self._cond:
            found = self._autoreg.dropped if self._autoreg is not None else []
            return [d for d in found if device is None or d.device == device]

    def _registration(self) -> AutoRegistration:
        if self._autoreg is None:
            raise ValueError("auto-registration is off: give registration_delay")
        return self._autoreg
