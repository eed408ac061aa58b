"""BTHome through the installed bthome-ble parser, unmocked (a canary for its interface)."""

from __future__ import annotations

import logging
import time

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from edged.adapters.ble.advert import Advert, AdvertDecoder, DecodeError
from edged.adapters.ble.config import DeviceConfig

pytestmark = pytest.mark.ble

UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
ADDRESS = "54:48:E6:8F:80:A5"
BINDKEY = "231d39c1d7cc1ab1aee224cd096db932"
# packet id 7, battery 93 %, temperature 21.5 C, humidity 48.25 %
MEASUREMENTS = bytes.fromhex("0007015d02660803d912")


def advert(service_data: bytes) -> Advert:
    return Advert(ADDRESS, "DIY-sensor", -60, {}, {UUID: service_data}, [UUID], time.monotonic())


def decoder(**bthome: object) -> AdvertDecoder:
    return AdvertDecoder(
        DeviceConfig.model_validate({"address": ADDRESS, "bthome": bthome or True})
    )


def encrypted(payload: bytes, counter: int, key: str = BINDKEY) -> bytes:
    """BTHome v2 encryption: AES-CCM, nonce = MAC + UUID16 + device info + counter, 4-byte MIC."""
    info = b"\x41"
    count = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(ADDRESS.replace(":", "")) + b"\xd2\xfc" + info + count
    sealed = AESCCM(bytes.fromhex(key), tag_length=4).encrypt(nonce, payload, None)
    return info + sealed[:-4] + count + sealed[-4:]


def test_plain_v2_values() -> None:
    decoded = decoder().decode(advert(b"\x40" + MEASUREMENTS))
    assert decoded is not None
    assert decoded.values == {"battery": 93, "temperature": 21.5, "humidity": 48.25}
    assert decoded.event is False


def test_encrypted_v2_with_the_bindkey() -> None:
    decoded = decoder(bindkey=BINDKEY).decode(advert(encrypted(MEASUREMENTS, 1)))
    assert decoded is not None
    assert decoded.values["temperature"] == 21.5


def test_encrypted_without_a_bindkey_says_so() -> None:
    with pytest.raises(
        DecodeError, match=r"BTHome: BTHome advert is encrypted: configure bthome\.bindkey"
    ):
        decoder().decode(advert(encrypted(MEASUREMENTS, 1)))


def test_wrong_bindkey_is_an_error_not_a_library_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = decoder(bindkey="00" * 16)
    with pytest.raises(DecodeError, match="Decryption failed"):
        wrong.decode(advert(encrypted(MEASUREMENTS, 1)))
    assert not [
        r
        for r in caplog.records
        if r.name.startswith("bthome_ble") and r.levelno >= logging.WARNING
    ]


def test_button_event_is_flagged() -> None:
    decoded = decoder().decode(advert(bytes.fromhex("40 00 08 3a 01")))
    assert decoded is not None
    assert decoded.values == {"button": "press"}
    assert decoded.event is True


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "could not be parsed"),
        (b"\xe0\x00\x01", "BTHome version 7"),
        (b"\x40\x00\x09\x80\x01", "no values the parser understands"),  # unknown object id
        (b"\x40\x00\x0a", "no values the parser understands"),
    ],
)
def test_bad_payloads(payload: bytes, message: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DecodeError, match=message):
        decoder().decode(advert(payload))
    assert not [
        r
        for r in caplog.records
        if r.name.startswith("bthome_ble") and r.levelno >= logging.WARNING
    ]


def test_adverts_without_bthome_data_are_not_errors() -> None:
    other = Advert(ADDRESS, None, -60, {0x59: b"\x01"}, {}, [], time.monotonic())
    assert decoder().decode(other) is None


def test_layout_sections_and_prefixes() -> None:
    config = DeviceConfig.model_validate(
        {
            "address": ADDRESS,
            "manufacturer_data": [
                {
                    "company_id": 0x0499,
                    "prefix": "05",
                    "fields": {"t": {"offset": 1, "type": "int16"}},
                },
                {"company_id": 0x004C, "fields": {"kind": {}}},
            ],
            "service_data": [{"uuid": "181a", "fields": {"h": {"type": "uint16", "scale": 0.01}}}],
        }
    )
    decode = AdvertDecoder(config).decode
    sensor = Advert(ADDRESS, None, -60, {0x0499: b"\x05\x10\x00"}, {}, [], 0.0)
    assert decode(sensor) is not None
    assert decode(sensor).values == {"t": 16}  # type: ignore[union-attr]
    assert decode(Advert(ADDRESS, None, -60, {0x0499: b"\x03\x10\x00"}, {}, [], 0.0)) is None
    both = Advert(
        ADDRESS,
        None,
        -60,
        {0x004C: b"\x02"},
        {"0000181a-0000-1000-8000-00805f9b34fb": b"\x10\x27"},
        [],
        0.0,
    )
    assert decode(both).values == {"kind": 2, "h": 100.0}  # type: ignore[union-attr]
    with pytest.raises(
        DecodeError, match=r"manufacturer data 0x0499: payload is 2 bytes.*data 0510"
    ):
        decode(Advert(ADDRESS, None, -60, {0x0499: b"\x05\x10"}, {}, [], 0.0))


def test_parser_warnings_do_not_reject_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    out_of_order = bytes.fromhex("40 00 0b 02 6608 01 5d")  # temperature before battery
    decoded = decoder().decode(advert(out_of_order))
    assert decoded is not None
    assert decoded.values == {"temperature": 21.5, "battery": 93}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("numerical order" in r.getMessage() for r in caplog.records)


def test_repeated_adverts_reuse_the_last_outcome() -> None:
    button = decoder()
    press = advert(bytes.fromhex("40 00 08 3a 01"))
    first = button.decode(press)
    again = button.decode(press)
    assert first is not None
    assert again is not None
    assert (first.event, again.event) == (True, False), "a repeated advert is not a second press"
    assert again.values == first.values
    broken = decoder()
    errors = []
    for _ in range(2):
        with pytest.raises(DecodeError, match="could not be parsed") as info:
            broken.decode(advert(b""))
        errors.append(info.value)
    assert errors[0] is not errors[1], (
        "a fresh error each time (a re-raised one grows its traceback)"
    )
