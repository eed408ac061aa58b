"""Canaries against the installed bleak: the parts of its interface the adapter bridges."""

from __future__ import annotations

import warnings

import pytest

from edged.adapters.ble.errors import (
    ERROR_BLUETOOTHD_MISSING,
    ERROR_CONTROLLER_MISSING,
    BleUnavailableError,
    ScannerFailedError,
    classify,
    describe,
)
from edged.adapters.ble.scanner import scanner_kwargs

pytestmark = pytest.mark.ble


def test_scanner_gets_the_controller_without_deprecation_warnings() -> None:
    from bleak import BleakScanner

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scanner = BleakScanner(lambda device, data: None, **scanner_kwargs("hci3"))
    assert scanner._backend._adapter == "hci3"  # type: ignore[attr-defined]


def test_bluez_errors_are_classified() -> None:
    from bleak.exc import BleakDBusError, BleakError

    busy = classify(
        BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"]), "hci0"
    )
    assert isinstance(busy, ScannerFailedError)
    assert "org.bluez.Error.InProgress" in str(busy)

    gone = classify(BleakError("adapter 'hci1' not found"), "hci1")
    assert isinstance(gone, BleUnavailableError)
    assert gone.error_code == ERROR_CONTROLLER_MISSING

    no_daemon = classify(
        BleakDBusError(
            "org.freedesktop.DBus.Error.ServiceUnknown", ["The name is not activatable"]
        ),
        "hci0",
    )
    assert isinstance(no_daemon, BleUnavailableError)
    assert no_daemon.error_code == ERROR_BLUETOOTHD_MISSING

    no_bus = classify(FileNotFoundError(2, "No such file or directory"), "hci0")
    assert isinstance(no_bus, BleUnavailableError)
    assert "cannot reach the D-Bus system bus" in str(no_bus)


def test_describe_names_the_bluez_error() -> None:
    from bleak.exc import BleakDBusError

    assert describe(BleakDBusError("org.bluez.Error.NotPermitted", ["Write not permitted"])) == (
        "[org.bluez.Error.NotPermitted] Write not permitted"
    )
    assert describe(TimeoutError()) == "timed out"
    assert describe(RuntimeError()) == "RuntimeError"


def test_bluetooth_not_available_reasons_of_newer_bleak() -> None:
    import bleak.exc as exc_module

    reasons = getattr(exc_module, "BleakBluetoothNotAvailableReason", None)
    if reasons is None:  # bleak 0.22 (Debian 13) has no such error; covered by the cases above
        return
    error = exc_module.BleakBluetoothNotAvailableError(
        "No Bluetooth adapters found.", reasons.NO_BLUETOOTH
    )
    assert classify(error, "hci0").error_code == ERROR_CONTROLLER_MISSING
    denied = exc_module.BleakBluetoothNotAvailableError("denied", reasons.DENIED_BY_SYSTEM)
    assert "'bluetooth' group" in str(classify(denied, "hci0"))
