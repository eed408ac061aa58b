"""NMEA 0183: checksums, GGA/RMC/GSA/VTG/GLL decoding and assembling fixes per epoch."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.adapters.serial import nmea

pytestmark = pytest.mark.serial

# The textbook example sentences (their checksums are part of the published examples).
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
GSA = b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39"


def test_checksums_of_known_sentences() -> None:
    for sentence in (GGA, RMC, GSA):
        body, given_sum = sentence[1:].split(b"*")
        assert nmea.checksum(body) == int(given_sum, 16)
    assert (
        nmea.build_sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
        == GGA.decode()
    )


def test_parse_sentence_splits_address_and_fields() -> None:
    sentence = nmea.parse_sentence(GGA + b"\r\n")
    assert (sentence.talker, sentence.kind) == ("GP", "GGA")
    assert sentence.fields[0] == "123519"
    proprietary = nmea.parse_sentence(nmea.build_sentence("PUBX,00,1").encode())
    assert (proprietary.talker, proprietary.kind) == ("P", "UBX")


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (GGA[:-2] + b"48", nmea.ChecksumError),
        (GGA[:-3], nmea.ChecksumError),  # no checksum at all
        (GGA[:-2] + b"4G", nmea.ChecksumError),
        (GGA[:-2] + b"+4", nmea.ChecksumError),
        (GGA[:-2] + b"477", nmea.ChecksumError),
        (b"GPGGA,1,2*00", nmea.NmeaError),
        (b"$", nmea.NmeaError),
        (nmea.build_sentence("G*A,1").encode(), nmea.NmeaError),
        (b"$GPGGA,\xff\xfe*" + b"%02X" % nmea.checksum(b"GPGGA,\xff\xfe"), nmea.NmeaError),
    ],
)
def test_parse_sentence_rejects_bad_sentences(frame: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        nmea.parse_sentence(frame)


def test_missing_checksum_accepted_only_when_not_required() -> None:
    sentence = nmea.parse_sentence(GGA[:-3], require_checksum=False)
    assert sentence.kind == "GGA"
    with pytest.raises(nmea.ChecksumError):
        nmea.parse_sentence(GGA[:-2] + b"00", require_checksum=False)


def test_decode_gga() -> None:
    values = nmea.decode(nmea.parse_sentence(GGA))
    assert values == {
        "utc_seconds": 12 * 3600 + 35 * 60 + 19,
        "latitude": pytest.approx(48 + 7.038 / 60),
        "longitude": pytest.approx(11 + 31.0 / 60),
        "fix_quality": 1,
        "satellites": 8,
        "hdop": 0.9,
        "altitude": 545.4,
        "geoid_separation": 46.9,
    }


def test_decode_rmc_converts_knots_and_reads_the_date() -> None:
    values = nmea.decode(nmea.parse_sentence(RMC))
    assert values["status_valid"] is True
    assert values["speed"] == pytest.approx(22.4 * 1852 / 3600, abs=1e-3)
    assert values["course"] == 84.4
    assert values["date"] == (1994, 3, 23)


def test_decode_gsa() -> None:
    assert nmea.decode(nmea.parse_sentence(GSA)) == {
        "fix_mode": 3,
        "satellites_used": 5,
        "pdop": 2.5,
        "hdop": 1.3,
        "vdop": 2.1,
    }


def test_decode_vtg_and_gll() -> None:
    vtg = nmea.parse_sentence(nmea.build_sentence("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K").encode())
    assert nmea.decode(vtg) == {"course": 54.7, "speed": pytest.approx(10.2 / 3.6, abs=1e-3)}
    gll = nmea.parse_sentence(nmea.build_sentence("GPGLL,4916.45,N,12311.12,W,225444,A").encode())
    values = nmea.decode(gll)
    assert values["latitude"] == pytest.approx(49 + 16.45 / 60)
    assert values["longitude"] == pytest.approx(-(123 + 11.12 / 60))
    assert values["status_valid"] is True


def test_southern_and_western_hemispheres_are_negative() -> None:
    sentence = nmea.build_sentence("GNGGA,010203.00,3351.000,S,15112.000,W,1,05,1.0,10.0,M,,M,,")
    values = nmea.decode(nmea.parse_sentence(sentence.encode()))
    assert values["latitude"] == pytest.approx(-(33 + 51 / 60))
    assert values["longitude"] == pytest.approx(-(151 + 12 / 60))


def test_gga_without_fix_has_no_position() -> None:
    values = nmea.decode(
        nmea.parse_sentence(nmea.build_sentence("GPGGA,,,,,,0,00,99.99,,,,,,").encode())
    )
    assert values == {"fix_quality": 0, "satellites": 0, "hdop": 99.99}


@pytest.mark.parametrize(
    "body",
    [
        "GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # latitude > 90
        "GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # bad hemisphere
        "GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # 67 minutes
        "GPGGA,253519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # hour 25
        "GPGGA,123519,4807.038,N,01131.000,E,x,08,0.9,545.4,M,46.9,M,,",  # quality
        "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,nan,M,46.9,M,,",  # altitude
        "GPGGA,123519,4807.038,N",  # too short
        "GPRMC,123519,Q,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",  # status
        "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,310294,003.1,W",  # 31 Feb
        "GPGSA,A,7,04,05,,09,12,,,24,,,,,2.5,1.3,2.1",  # fix mode 7
    ],
)
def test_decode_rejects_impossible_values(body: str) -> None:
    with pytest.raises(nmea.NmeaError):
        nmea.decode(nmea.parse_sentence(nmea.build_sentence(body).encode()))


def test_decode_rejects_unknown_kinds() -> None:
    with pytest.raises(nmea.NmeaError, match="unsupported"):
        nmea.decode(nmea.parse_sentence(nmea.build_sentence("GPGSV,1,1,00").encode()))


@settings(max_examples=300, deadline=None)
@given(position=st.integers(1, len(GGA) - 4), replacement=st.integers(32, 126))
def test_any_single_character_change_is_caught(position: int, replacement: int) -> None:
    corrupted = bytearray(GGA)
    if corrupted[position] == replacement or replacement == ord("*"):
        return
    corrupted[position] = replacement
    with pytest.raises(nmea.NmeaError):
        nmea.parse_sentence(bytes(corrupted))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_garbage_raises_only_nmea_errors(data: bytes) -> None:
    for frame in (data, b"$" + data, nmea.build_sentence("GPGGA," + data.hex()).encode()):
        try:
            sentence = nmea.parse_sentence(frame, require_checksum=False)
            nmea.decode(sentence)
        except nmea.NmeaError:
            pass


# --- fixes ---------------------------------------------------------------------------------


def gga(time: str, lat: str = "4807.038", quality: str = "1") -> dict[str, object]:
    body = f"GPGGA,{time},{lat},N,01131.000,E,{quality},08,0.9,545.4,M,46.9,M,,"
    return nmea.decode(nmea.parse_sentence(nmea.build_sentence(body).encode()))


def rmc(time: str, status: str = "A", date: str = "230394") -> dict[str, object]:
    body = f"GPRMC,{time},{status},4807.038,N,01131.000,E,022.4,084.4,{date},003.1,W"
    return nmea.decode(nmea.parse_sentence(nmea.build_sentence(body).encode()))


def gsa() -> dict[str, object]:
    return nmea.decode(nmea.parse_sentence(GSA))


def test_fix_is_emitted_when_the_epoch_is_complete() -> None:
    tracker = nmea.FixTracker()
    first = tracker.update("GGA", gga("123519"))
    assert len(first) == 1  # only GGA seen so far: complete at once
    assert tracker.update("GSA", gsa()) == []
    assert tracker.update("RMC", rmc("123519")) == []  # same epoch, already emitted
    assert tracker.update("GGA", gga("123520")) == []  # now waits for RMC too
    (fix,) = tracker.update("RMC", rmc("123520"))
    assert fix.valid
    assert fix.fix_quality == 1
    assert fix.satellites == 8
    assert fix.pdop == 2.5  # sticky from GSA
    assert fix.speed == pytest.approx(11.5236)
    assert fix.epoch == calendar.timegm((1994, 3, 23, 12, 35, 20))
    values = fix.values()
    assert values["time"] == "1994-03-23T12:35:20.000Z"
    assert values["valid"] is True
    assert values["altitude"] == 545.4


def test_incomplete_epoch_is_flushed_when_time_moves_on() -> None:
    tracker = nmea.FixTracker()
    tracker.update("RMC", rmc("000001"))
    tracker.update("GGA", gga("000001"))  # kinds seen: RMC, GGA
    tracker.update("GGA", gga("000002"))  # RMC for 000002 never comes
    (flushed,) = tracker.update("GGA", gga("000003"))
    assert flushed.utc_seconds == 2
    assert flushed.date == (1994, 3, 23)  # the date sticks from the last RMC


def test_fix_without_position_or_with_void_status_is_invalid() -> None:
    tracker = nmea.FixTracker()
    (no_fix,) = tracker.update("GGA", gga("000001", lat="", quality="0"))
    assert not no_fix.valid
    assert no_fix.values() == {
        "valid": False,
        "longitude": pytest.approx(11 + 31 / 60),
        "fix_quality": 0,
        "satellites": 8,
        "hdop": 0.9,
        "altitude": 545.4,
        "time": "00:00:01.000",
    }
    tracker = nmea.FixTracker()
    (void,) = tracker.update("RMC", rmc("000001", status="V"))
    assert not void.valid


def test_receivers_without_time_still_produce_one_fix_per_epoch() -> None:
    tracker = nmea.FixTracker()
    fixes = []
    for _ in range(3):
        fixes += tracker.update("GGA", gga("", lat="", quality="0"))
        fixes += tracker.update("RMC", rmc("", status="V", date=""))
    assert len(fixes) == 3
