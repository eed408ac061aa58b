"""BLE failures as edged errors, with advice for the operator and a device-management error code.

The supervisor restarts a runner that raises these, slowly for the permanent ones. Each carries
``error_code`` for the gateway's iotdm-1 ``diag/errorCodes`` (see docs/ble.md).
"""

from __future__ import annotations

from edged.errors import PermanentAdapterError, TransientAdapterError

ERROR_CONTROLLER_WEDGED = 5101
"""Discovery or connections kept failing after restarting discovery and power-cycling."""
ERROR_CONTROLLER_MISSING = 5102
"""The configured Bluetooth controller (hciN) does not exist."""
ERROR_BLUETOOTHD_MISSING = 5103
"""bluetoothd is not on the system bus, or the system bus cannot be reached or refuses us."""
ERROR_SCANNER_FAILED = 5104
"""Discovery could not be started for another reason."""


class BleUnavailableError(PermanentAdapterError):
    """Bluetooth is not usable on this machine as configured."""

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class ControllerWedgedError(PermanentAdapterError):
    """Self-healing did not bring the controller back."""

    error_code = ERROR_CONTROLLER_WEDGED


class ScannerFailedError(TransientAdapterError):
    """Starting discovery failed in a way self-healing may fix."""

    error_code = ERROR_SCANNER_FAILED


_NO_BLUEZ = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
)
_DENIED = ("org.freedesktop.DBus.Error.AccessDenied", "org.freedesktop.DBus.Error.AuthFailed")


def classify(exc: BaseException, controller: str) -> BleUnavailableError | ScannerFailedError:
    """Map an error from starting discovery to what it means for the operator.

    Works on bleak's exceptions by their attributes and messages, so it needs no bleak import
    (and holds across bleak versions, whose exception types moved).
    """
    dbus_error = str(getattr(exc, "dbus_error", "") or "")
    text = str(exc)
    reason = str(getattr(exc, "reason", "") or "")  # bleak >= 2: BleakBluetoothNotAvailableError
    if dbus_error in _NO_BLUEZ or any(name in text for name in _NO_BLUEZ):
        return BleUnavailableError(
            "bluetoothd is not running (nobody owns org.bluez on the system bus): "
            "install bluez and start bluetooth.service",
            ERROR_BLUETOOTHD_MISSING,
        )
    if dbus_error in _DENIED or "AuthError" in type(exc).__name__ or "DENIED" in reason:
        return BleUnavailableError(
            f"the system bus refused access to BlueZ ({text}): the service user needs the "
            "'bluetooth' group (Debian's BlueZ D-Bus policy)",
            ERROR_BLUETOOTHD_MISSING,
        )
    if isinstance(exc, OSError) and not dbus_error:
        return BleUnavailableError(
            f"cannot reach the D-Bus system bus ({exc}): is dbus running?", ERROR_BLUETOOTHD_MISSING
        )
    if f"'{controller}' not found" in text or "NO_BLUETOOTH" in reason:
        return BleUnavailableError(
            f"Bluetooth controller {controller} not found: check `bluetoothctl list`, rfkill, and "
            "the adapter: key of the device",
            ERROR_CONTROLLER_MISSING,
        )
    return ScannerFailedError(
        f"starting discovery on {controller} failed: {dbus_error or type(exc).__name__}: {text}"
    )


def describe(exc: BaseException) -> str:
    """A one-line account of ``exc`` for logs and state details (BlueZ's error name included)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    dbus_error = getattr(exc, "dbus_error", None)
    text = str(exc) or type(exc).__name__
    return f"{dbus_error}: {text}" if dbus_error and dbus_error not in text else text
