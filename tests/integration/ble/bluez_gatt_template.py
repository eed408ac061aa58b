# mypy: disable-error-code="untyped-decorator"
# (dbus-python ships no type hints; its method decorator is untyped)
"""A python-dbusmock template that plays BlueZ for edged's BLE tests.

Load it with ``python -m dbusmock --system --template <this file>`` on a private bus (see
``bluez.py`` beside it). It serves the parts of BlueZ's D-Bus API that bleak uses: the object
manager at ``/``, ``Adapter1`` objects, ``Device1`` objects that advertise while discovery runs,
and ``GattService1`` / ``GattCharacteristic1`` objects with read, write and notify.

It does not build on dbusmock's stock ``bluez5`` template: that one has no GATT, types empty
advertisement data wrongly (bleak's scanner then finds nothing), never re-announces devices, never
sets ``ServicesResolved`` and cannot reconnect after a peripheral-side disconnect.

Tests steer it through ``org.bluez.Mock`` methods on ``/``; faults they can inject:

* ``FailDiscovery(adapter, error, count)``: the next ``count`` StartDiscovery calls fail with
  ``error`` (count -1: until the adapter is powered off);
* ``SilenceAdapter(adapter, until)``: discovery "runs" but no adverts arrive, until discovery is
  restarted (``until="restart"``), the adapter is power-cycled (``until="power"``) or never;
* ``SetConnectError`` / ``SetReadError`` / ``SetWriteError``: BlueZ errors for one object;
* ``DisconnectDevice``: link loss from the peripheral side; ``RemoveGattCharacteristic``.

``GetStats(adapter)`` counts discovery starts and stops and power-offs, so a test can see which
recovery step the daemon took. Object paths follow BlueZ (``.../dev_AA_BB/service000c/char000d``):
bleak takes a characteristic's handle from the last four hex digits of its path.
"""

from __future__ import annotations

import ctypes
from typing import Any

import dbus
import dbus.lowlevel
from dbusmock import OBJECT_MANAGER_IFACE, mockobject

BUS_NAME = "org.bluez"
MAIN_OBJ = "/"
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

MOCK_IFACE = "org.bluez.Mock"
ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
SERVICE_IFACE = "org.bluez.GattService1"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
AGENT_MANAGER_IFACE = "org.bluez.AgentManager1"

_ADVERTISED = ("RSSI", "ManufacturerData", "ServiceData", "UUIDs")

# GLib's main loop already runs in the mock process; a ctypes timeout avoids needing PyGObject.
_glib = ctypes.cdll.LoadLibrary("libglib-2.0.so.0")
_SOURCE_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_ticker: dict[str, Any] = {"interval_ms": 100, "callback": None, "generation": 0}


def _bluez_error(name: str, message: str = "") -> dbus.exceptions.DBusException:
    return dbus.exceptions.DBusException(message or name, name=f"org.bluez.Error.{name}")


def _changed(obj: Any, iface: str, changes: dict[str, Any]) -> None:
    """Store property values and send PropertiesChanged without dbusmock's per-signal logging."""
    obj.props[iface].update(changes)
    signal = dbus.lowlevel.SignalMessage(obj.path, dbus.PROPERTIES_IFACE, "PropertiesChanged")
    signal.append(
        iface,
        dbus.Dictionary(changes, signature="sv"),
        dbus.Array([], signature="s"),
        signature="sa{sv}as",
    )
    for location in obj.locations:
        location[0].send_message(signal)


def _announce(path: str, iface: str, props: dict[str, Any]) -> None:
    mockobject.objects["/"].EmitSignal(
        OBJECT_MANAGER_IFACE,
        "InterfacesAdded",
        "oa{sa{sv}}",
        [dbus.ObjectPath(path), {iface: props}],
    )


def _withdraw(path: str, ifaces: list[str]) -> None:
    mockobject.objects["/"].EmitSignal(
        OBJECT_MANAGER_IFACE, "InterfacesRemoved", "oas", [dbus.ObjectPath(path), ifaces]
    )


def _adapters() -> list[Any]:
    return [obj for path, obj in list(mockobject.objects.items()) if ADAPTER_IFACE in obj.props]


def _devices_of(adapter: Any) -> list[Any]:
    prefix = adapter.path + "/dev_"
    return [
        obj
        for path, obj in list(mockobject.objects.items())
        if path.startswith(prefix) and DEVICE_IFACE in obj.props
    ]


def _device_path(adapter_name: str, address: str) -> str:
    return f"/org/bluez/{adapter_name}/dev_" + address.upper().replace(":", "_")


# -- the advertising clock ------------------------------------------------------------------


def _tick(_data: Any) -> int:
    """Every interval: notice power-offs, and let each advertising device be 'heard' again."""
    for adapter in _adapters():
        powered = bool(adapter.props[ADAPTER_IFACE]["Powered"])
        if not powered and adapter.was_powered:
            _powered_off(adapter)
        adapter.was_powered = powered
        discovering = adapter.props[ADAPTER_IFACE]["Discovering"]
        if not powered or not discovering or adapter.silent:
            continue
        for device in _devices_of(adapter):
            if device.advertising and not device.connected:
                props = device.props[DEVICE_IFACE]
                _changed(device, DEVICE_IFACE, {key: props[key] for key in _ADVERTISED})
    return 1  # G_SOURCE_CONTINUE


def _start_ticker() -> None:
    _ticker["generation"] += 1
    generation = _ticker["generation"]

    def tick(data: Any) -> int:
        if generation != _ticker["generation"]:
            return 0  # G_SOURCE_REMOVE: replaced by a ticker with another interval
        return _tick(data)

    _ticker["callback"] = _SOURCE_FUNC(tick)  # keep a reference or ctypes frees it
    _glib.g_timeout_add(ctypes.c_uint(_ticker["interval_ms"]), _ticker["callback"], None)


def _powered_off(adapter: Any) -> None:
    """What a real controller does when powered down: discovery stops and every fault clears."""
    adapter.stats["power_off"] += 1
    if adapter.silent != "never":
        adapter.silent = ""
    adapter.discovery_failures = ("", 0)
    for device in _devices_of(adapter):
        if device.connected:
            _drop_link(device)
    if adapter.props[ADAPTER_IFACE]["Discovering"]:
        _changed(adapter, ADAPTER_IFACE, {"Discovering": dbus.Boolean(False)})


# -- Adapter1 ------------------------------------------------------------------------------


def _start_discovery(adapter: Any) -> None:
    adapter.stats["start_discovery"] += 1
    if not adapter.props[ADAPTER_IFACE]["Powered"]:
        raise _bluez_error("NotReady", "Resource Not Ready")
    error, remaining = adapter.discovery_failures
    if remaining:
        adapter.discovery_failures = (error, remaining - 1 if remaining > 0 else remaining)
        raise _bluez_error(error)
    if adapter.silent == "restart":
        adapter.silent = ""
    _changed(adapter, ADAPTER_IFACE, {"Discovering": dbus.Boolean(True)})


def _stop_discovery(adapter: Any) -> None:
    adapter.stats["stop_discovery"] += 1
    if not adapter.props[ADAPTER_IFACE]["Discovering"]:
        raise _bluez_error("Failed", "No discovery started")
    _changed(adapter, ADAPTER_IFACE, {"Discovering": dbus.Boolean(False)})


def _set_discovery_filter(adapter: Any, _filter: Any) -> None:
    if not adapter.props[ADAPTER_IFACE]["Powered"]:
        raise _bluez_error("NotReady", "Resource Not Ready")


def _remove_device(adapter: Any, path: str) -> None:
    if path not in mockobject.objects:
        raise _bluez_error("DoesNotExist", "Does Not Exist")
    _remove_tree(str(path))


def _remove_tree(root: str) -> None:
    for path in sorted(
        (p for p in mockobject.objects if p == root or p.startswith(root + "/")), reverse=True
    ):
        ifaces = [
            iface for iface in mockobject.objects[path].props if iface.startswith("org.bluez.")
        ]
        mockobject.objects["/"].RemoveObject(path)
        _withdraw(path, ifaces)


@dbus.service.method(MOCK_IFACE, in_signature="ss", out_signature="o")
def AddAdapter(self: Any, name: str, alias: str) -> str:
    """Add a powered controller ``name`` (e.g. hci0); returns its object path."""
    path = f"/org/bluez/{name}"
    index = int(name[3:]) if name[3:].isdigit() else 0
    props = {
        "Address": dbus.String(f"00:00:00:00:5A:{index:02X}"),
        "AddressType": dbus.String("public"),
        "Name": dbus.String(alias),
        "Alias": dbus.String(alias),
        "Class": dbus.UInt32(0),
        "Powered": dbus.Boolean(True),
        "Discoverable": dbus.Boolean(False),
        "Discovering": dbus.Boolean(False),
        "Pairable": dbus.Boolean(False),
        "DiscoverableTimeout": dbus.UInt32(180),
        "PairableTimeout": dbus.UInt32(0),
        "UUIDs": dbus.Array([], signature="s"),
        "Modalias": dbus.String("usb:v1D6Bp0246d0540"),
        "Roles": dbus.Array(["central", "peripheral"], signature="s"),
    }
    self.AddObject(
        path,
        ADAPTER_IFACE,
        props,
        [
            ("StartDiscovery", "", "", _start_discovery),
            ("StopDiscovery", "", "", _stop_discovery),
            ("SetDiscoveryFilter", "a{sv}", "", _set_discovery_filter),
            ("RemoveDevice", "o", "", _remove_device),
            ("GetDiscoveryFilters", "", "as", lambda _self: ["UUIDs", "RSSI", "Transport"]),
        ],
    )
    adapter = mockobject.objects[path]
    adapter.was_powered = True
    adapter.silent = ""
    adapter.discovery_failures = ("", 0)
    adapter.stats = {"start_discovery": 0, "stop_discovery": 0, "power_off": 0}
    _announce(path, ADAPTER_IFACE, props)
    return path


@dbus.service.method(MOCK_IFACE, in_signature="s", out_signature="")
def RemoveAdapter(self: Any, name: str) -> None:
    """Unplug controller ``name`` together with its devices."""
    _remove_tree(f"/org/bluez/{name}")


@dbus.service.method(MOCK_IFACE, in_signature="ssi", out_signature="")
def FailDiscovery(self: Any, name: str, error: str, count: int) -> None:
    """Fail the next ``count`` StartDiscovery calls with org.bluez.Error.<error> (-1: until
    the controller is powered off)."""
    mockobject.objects[f"/org/bluez/{name}"].discovery_failures = (error, count)


@dbus.service.method(MOCK_IFACE, in_signature="ss", out_signature="")
def SilenceAdapter(self: Any, name: str, until: str) -> None:
    """Deliver no adverts until discovery restarts (``restart``), a power cycle (``power``),
    or ever again (``never``: a dead radio)."""
    if until not in ("restart", "power", "never"):
        raise dbus.exceptions.DBusException(
            "until must be restart, power or never", name=MOCK_IFACE + ".Invalid"
        )
    mockobject.objects[f"/org/bluez/{name}"].silent = until


@dbus.service.method(MOCK_IFACE, in_signature="s", out_signature="a{si}")
def GetStats(self: Any, name: str) -> Any:
    """Counters of StartDiscovery, StopDiscovery and power-off events on controller ``name``."""
    stats: dict[str, int] = mockobject.objects[f"/org/bluez/{name}"].stats
    return dbus.Dictionary(stats, signature="si")


@dbus.service.method(MOCK_IFACE, in_signature="u", out_signature="")
def SetAdvertInterval(self: Any, milliseconds: int) -> None:
    """How often every advertising device is heard while discovery runs (default 100 ms)."""
    _ticker["interval_ms"] = max(1, int(milliseconds))
    _start_ticker()


# -- Device1 -------------------------------------------------------------------------------


def _connect(device: Any) -> None:
    adapter = mockobject.objects[str(device.props[DEVICE_IFACE]["Adapter"])]
    if not adapter.props[ADAPTER_IFACE]["Powered"]:
        raise _bluez_error("NotReady", "Resource Not Ready")
    if device.connect_error:
        raise _bluez_error(device.connect_error)
    if device.connected:
        raise _bluez_error("AlreadyConnected", "Already Connected")
    device.connected = True
    _changed(device, DEVICE_IFACE, {"Connected": dbus.Boolean(True)})
    _changed(device, DEVICE_IFACE, {"ServicesResolved": dbus.Boolean(True)})


def _drop_link(device: Any) -> None:
    device.connected = False
    for path, obj in list(mockobject.objects.items()):
        if path.startswith(device.path + "/") and CHAR_IFACE in obj.props and obj.notifying:
            obj.notifying = False
            obj.props[CHAR_IFACE]["Notifying"] = dbus.Boolean(False)
    _changed(
        device,
        DEVICE_IFACE,
        {"ServicesResolved": dbus.Boolean(False), "Connected": dbus.Boolean(False)},
    )


def _disconnect(device: Any) -> None:
    if not device.connected:
        raise _bluez_error("NotConnected", "Not Connected")
    _drop_link(device)


def _pair(device: Any) -> None:
    _changed(device, DEVICE_IFACE, {"Paired": dbus.Boolean(True)})


@dbus.service.method(MOCK_IFACE, in_signature="sss", out_signature="o")
def AddDevice(self: Any, adapter_name: str, address: str, name: str) -> str:
    """Add a peripheral that advertises (with no data yet) while discovery runs."""
    adapter_path = f"/org/bluez/{adapter_name}"
    if adapter_path not in mockobject.objects:
        raise dbus.exceptions.DBusException(
            f"no adapter {adapter_name}", name=MOCK_IFACE + ".NoSuchAdapter"
        )
    path = _device_path(adapter_name, address)
    props = {
        "Address": dbus.String(address.upper()),
        "AddressType": dbus.String("public"),
        "Name": dbus.String(name),
        "Alias": dbus.String(name or address.upper().replace(":", "-")),
        "Adapter": dbus.ObjectPath(adapter_path),
        "Paired": dbus.Boolean(False),
        "Bonded": dbus.Boolean(False),
        "Trusted": dbus.Boolean(False),
        "Blocked": dbus.Boolean(False),
        "LegacyPairing": dbus.Boolean(False),
        "Connected": dbus.Boolean(False),
        "ServicesResolved": dbus.Boolean(False),
        "RSSI": dbus.Int16(-70),
        "TxPower": dbus.Int16(0),
        "UUIDs": dbus.Array([], signature="s"),
        "ManufacturerData": dbus.Dictionary({}, signature="qv"),
        "ServiceData": dbus.Dictionary({}, signature="sv"),
    }
    if not name:
        del props["Name"]
    self.AddObject(
        path,
        DEVICE_IFACE,
        props,
        [
            ("Connect", "", "", _connect),
            ("Disconnect", "", "", _disconnect),
            ("Pair", "", "", _pair),
            ("CancelPairing", "", "", ""),
            ("ConnectProfile", "s", "", ""),
            ("DisconnectProfile", "s", "", ""),
        ],
    )
    device = mockobject.objects[path]
    device.connected = False
    device.advertising = True
    device.connect_error = ""
    _announce(path, DEVICE_IFACE, props)
    return path


@dbus.service.method(MOCK_IFACE, in_signature="oa{qay}a{say}n", out_signature="")
def SetAdvertisement(
    self: Any, device_path: str, manufacturer_data: Any, service_data: Any, rssi: int
) -> None:
    """Replace what the device advertises; it is heard at once and then on every tick."""
    device = mockobject.objects[device_path]
    manufacturer = dbus.Dictionary(
        {
            dbus.UInt16(k): dbus.Array(v, signature="y", variant_level=1)
            for k, v in manufacturer_data.items()
        },
        signature="qv",
    )
    services = dbus.Dictionary(
        {
            dbus.String(k): dbus.Array(v, signature="y", variant_level=1)
            for k, v in service_data.items()
        },
        signature="sv",
    )
    _changed(
        device,
        DEVICE_IFACE,
        {
            "ManufacturerData": manufacturer,
            "ServiceData": services,
            "RSSI": dbus.Int16(rssi),
            "UUIDs": dbus.Array([str(k) for k in service_data], signature="s"),
        },
    )


@dbus.service.method(MOCK_IFACE, in_signature="ob", out_signature="")
def SetAdvertising(self: Any, device_path: str, advertising: bool) -> None:
    """Switch a device's advertising off (out of range, battery out) or on again."""
    mockobject.objects[device_path].advertising = bool(advertising)


@dbus.service.method(MOCK_IFACE, in_signature="os", out_signature="")
def SetConnectError(self: Any, device_path: str, error: str) -> None:
    """Make Device1.Connect fail with org.bluez.Error.<error> ('' to connect normally)."""
    mockobject.objects[device_path].connect_error = error


@dbus.service.method(MOCK_IFACE, in_signature="o", out_signature="")
def DisconnectDevice(self: Any, device_path: str) -> None:
    """The peripheral drops the link (out of range, reset)."""
    device = mockobject.objects[device_path]
    if device.connected:
        _drop_link(device)


# -- GATT ----------------------------------------------------------------------------------


def _require_link(char: Any) -> None:
    device = mockobject.objects[str(char.device_path)]
    if not device.connected:
        raise _bluez_error("Failed", "Not connected")


def _read_value(char: Any, _options: Any) -> Any:
    _require_link(char)
    if char.read_error:
        raise _bluez_error(char.read_error)
    return dbus.Array(char.props[CHAR_IFACE]["Value"], signature="y")


def _write_value(char: Any, value: Any, options: Any) -> None:
    _require_link(char)
    if char.write_error:
        raise _bluez_error(char.write_error)
    char.writes.append((bytes(value), str(options.get("type", "request"))))
    _store_value(char, value)


def _store_value(char: Any, value: Any) -> None:
    as_array = dbus.Array(bytes(value), signature="y")
    if char.notifying:
        _changed(char, CHAR_IFACE, {"Value": as_array})
    else:
        char.props[CHAR_IFACE]["Value"] = as_array


def _start_notify(char: Any) -> None:
    _require_link(char)
    char.notifying = True
    _changed(char, CHAR_IFACE, {"Notifying": dbus.Boolean(True)})


def _stop_notify(char: Any) -> None:
    char.notifying = False
    _changed(char, CHAR_IFACE, {"Notifying": dbus.Boolean(False)})


@dbus.service.method(MOCK_IFACE, in_signature="oqs", out_signature="o")
def AddGattService(self: Any, device_path: str, handle: int, uuid: str) -> str:
    """Add a primary service to a device; returns its path."""
    path = f"{device_path}/service{handle:04x}"
    props = {
        "UUID": dbus.String(uuid),
        "Primary": dbus.Boolean(True),
        "Device": dbus.ObjectPath(device_path),
        "Includes": dbus.Array([], signature="o"),
        "Handle": dbus.UInt16(handle),
    }
    self.AddObject(path, SERVICE_IFACE, props, [])
    _announce(path, SERVICE_IFACE, props)
    return path


@dbus.service.method(MOCK_IFACE, in_signature="oqsasay", out_signature="o")
def AddGattCharacteristic(
    self: Any, service_path: str, handle: int, uuid: str, flags: Any, value: Any
) -> str:
    """Add a characteristic with BlueZ ``flags`` (read, write, write-without-response, notify)."""
    path = f"{service_path}/char{handle:04x}"
    props = {
        "UUID": dbus.String(uuid),
        "Service": dbus.ObjectPath(service_path),
        "Value": dbus.Array(bytes(value), signature="y"),
        "Notifying": dbus.Boolean(False),
        "Flags": dbus.Array([str(f) for f in flags], signature="s"),
        "MTU": dbus.UInt16(247),
        "Handle": dbus.UInt16(handle),
    }
    self.AddObject(
        path,
        CHAR_IFACE,
        props,
        [
            ("ReadValue", "a{sv}", "ay", _read_value),
            ("WriteValue", "aya{sv}", "", _write_value),
            ("StartNotify", "", "", _start_notify),
            ("StopNotify", "", "", _stop_notify),
        ],
    )
    char = mockobject.objects[path]
    char.device_path = mockobject.objects[service_path].props[SERVICE_IFACE]["Device"]
    char.notifying = False
    char.writes = []
    char.read_error = ""
    char.write_error = ""
    _announce(path, CHAR_IFACE, props)
    return path


@dbus.service.method(MOCK_IFACE, in_signature="o", out_signature="")
def RemoveGattCharacteristic(self: Any, char_path: str) -> None:
    """The characteristic vanishes (firmware update, service change)."""
    _remove_tree(str(char_path))


@dbus.service.method(MOCK_IFACE, in_signature="oay", out_signature="")
def SetValue(self: Any, char_path: str, value: Any) -> None:
    """Change a characteristic's value; subscribers get a notification."""
    _store_value(mockobject.objects[char_path], value)


@dbus.service.method(MOCK_IFACE, in_signature="os", out_signature="")
def SetReadError(self: Any, char_path: str, error: str) -> None:
    """Make ReadValue fail with org.bluez.Error.<error> ('' to read normally)."""
    mockobject.objects[char_path].read_error = error


@dbus.service.method(MOCK_IFACE, in_signature="os", out_signature="")
def SetWriteError(self: Any, char_path: str, error: str) -> None:
    """Make WriteValue fail with org.bluez.Error.<error> ('' to accept writes)."""
    mockobject.objects[char_path].write_error = error


@dbus.service.method(MOCK_IFACE, in_signature="o", out_signature="a(ays)")
def GetWrites(self: Any, char_path: str) -> Any:
    """Every accepted write as (value, "request" | "command")."""
    return dbus.Array(
        [
            dbus.Struct((dbus.ByteArray(v), kind))
            for v, kind in mockobject.objects[char_path].writes
        ],
        signature="(ays)",
    )


def load(mock: Any, parameters: dict[str, Any]) -> None:
    """Create the BlueZ root objects and start the advertising clock."""
    mock.AddObject(
        "/org/bluez",
        AGENT_MANAGER_IFACE,
        {},
        [
            ("RegisterAgent", "os", "", ""),
            ("RequestDefaultAgent", "o", "", ""),
            ("UnregisterAgent", "o", "", ""),
        ],
    )
    _ticker["interval_ms"] = int(parameters.get("advert_interval_ms", 100))
    _start_ticker()
