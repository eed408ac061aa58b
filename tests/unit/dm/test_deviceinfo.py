"""deviceInfo: read from a fake system tree (device tree, cpuinfo, DMI), overridden by config."""

from __future__ import annotations

from pathlib import Path

from edged.config.management import DeviceInfoConfig
from edged.dm.deviceinfo import (
    DEVICE_INFO_KEYS,
    MAX_VALUE,
    device_info,
    gateway_device_info,
    system_device_info,
)

PI_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid

Hardware\t: BCM2835
Revision\t: d03114
Serial\t\t: 10000000abcdef01
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def test_empty_system_tells_nothing(tmp_path: Path) -> None:
    assert system_device_info(str(tmp_path)) == {}
    assert system_device_info(str(tmp_path / "missing")) == {}


def test_raspberry_pi_from_device_tree(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\0")
    write(tmp_path, "proc/device-tree/serial-number", b"10000000abcdef01\0")
    write(tmp_path, "proc/cpuinfo", PI_CPUINFO.replace("abcdef01", "00000000"))
    assert system_device_info(str(tmp_path)) == {
        "serialNumber": "10000000abcdef01",
        "model": "Raspberry Pi 4 Model B Rev 1.4",
        "manufacturer": "Raspberry Pi Ltd",
    }


def test_serial_from_cpuinfo_without_device_tree_serial(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 3 Model B Plus Rev 1.3\0")
    write(tmp_path, "proc/cpuinfo", PI_CPUINFO)
    assert system_device_info(str(tmp_path))["serialNumber"] == "10000000abcdef01"


def test_x86_from_dmi(tmp_path: Path) -> None:
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Intel(R) Atom(TM)\n")
    write(tmp_path, "sys/class/dmi/id/product_serial", "  SN-4711  \n")
    write(tmp_path, "sys/class/dmi/id/product_name", "NUC7CJYH\n")
    write(tmp_path, "sys/class/dmi/id/sys_vendor", "Intel Corporation\n")
    assert system_device_info(str(tmp_path)) == {
        "serialNumber": "SN-4711",
        "model": "NUC7CJYH",
        "manufacturer": "Intel Corporation",
    }


def test_unreadable_entries_are_skipped(tmp_path: Path) -> None:
    # product_serial is often root-only; a directory where a file is expected cannot be read
    # even by root (the tests run as root in CI).
    (tmp_path / "sys/class/dmi/id/product_serial").mkdir(parents=True)
    write(tmp_path, "sys/class/dmi/id/product_name", "NUC7CJYH\n")
    assert system_device_info(str(tmp_path)) == {"model": "NUC7CJYH"}


def test_placeholders_and_zeros_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "sys/class/dmi/id/product_serial", "To Be Filled By O.E.M.\n")
    write(tmp_path, "sys/class/dmi/id/product_name", "Default string\n")
    write(tmp_path, "sys/class/dmi/id/sys_vendor", " \n")
    write(tmp_path, "proc/device-tree/serial-number", b"0000000000000000\0")
    assert system_device_info(str(tmp_path)) == {}


def test_values_are_bounded_and_binary_is_harmless(tmp_path: Path) -> None:
    write(tmp_path, "sys/class/dmi/id/product_name", "M" * 5000)
    write(tmp_path, "sys/class/dmi/id/sys_vendor", b"\xff\xfeACME\0\0")
    info = system_device_info(str(tmp_path))
    assert info["model"] == "M" * MAX_VALUE
    assert info["manufacturer"] == "\ufffd\ufffdACME"


def test_gateway_info_system_then_version_then_overrides(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\0")
    write(tmp_path, "proc/device-tree/serial-number", b"10000000abcdef01\0")
    plain = gateway_device_info(DeviceInfoConfig(), "1.2.3", str(tmp_path))
    assert plain == {
        "serialNumber": "10000000abcdef01",
        "manufacturer": "Raspberry Pi Ltd",
        "model": "Raspberry Pi 4 Model B Rev 1.4",
        "deviceClass": "gateway",
        "fwVersion": "1.2.3",
    }
    assert list(plain) == [key for key in DEVICE_INFO_KEYS if key in plain]
    overrides = DeviceInfoConfig(
        serialNumber="GW-0001", fwVersion="custom", description="roof", deviceClass=""
    )
    info = gateway_device_info(overrides, "1.2.3", str(tmp_path))
    assert info["serialNumber"] == "GW-0001"
    assert info["fwVersion"] == "custom"
    assert info["description"] == "roof"
    assert info["deviceClass"] == ""  # configured, even empty, wins
    assert info["model"] == "Raspberry Pi 4 Model B Rev 1.4"


def test_attached_device_info() -> None:
    assert device_info(DeviceInfoConfig()) == {}
    reported = {"model": "LYWSD03MMC", "fwVersion": "1.0.0_0130", "rssi": "-70"}
    assert device_info(DeviceInfoConfig(), reported) == {
        "model": "LYWSD03MMC",
        "fwVersion": "1.0.0_0130",
    }
    overrides = DeviceInfoConfig(model="Thermometer", descriptiveLocation="Hall")
    assert device_info(overrides, reported) == {
        "model": "Thermometer",
        "fwVersion": "1.0.0_0130",
        "descriptiveLocation": "Hall",
    }


def test_reported_values_are_bounded_and_must_be_strings() -> None:
    reported: dict[str, object] = {"model": "x" * 1000, "description": "d" * 5000, "hwVersion": 3}
    info = device_info(DeviceInfoConfig(), reported)  # type: ignore[arg-type]
    assert info == {"model": "x" * 256, "description": "d" * 1024}
