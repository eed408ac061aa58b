"""fetch() against a real HTTPS server on loopback with a test CA: every outcome and its status."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.config.management import FirmwareConfig
from edged.devbroker import LocalCA
from edged.dm.firmware import download
from edged.dm.firmware.download import Downloader, Outcome, fetch, meta_path, part_path
from edged.dm.firmware.state import Status
from edged.dm.firmware.uri import parse_uri
from edged.dm.firmware.verify import parse_verifier
from tests.unit.dm.firmware.server import (
    CHUNKED,
    CUT_ONCE,
    NO_RANGE,
    TRUNCATED,
    Served,
    image_server,
)

IMAGE = bytes(range(256)) * 800  # 200 KiB: several reads
SHA = hashlib.sha256(IMAGE).hexdigest()


@pytest.fixture
def served() -> Served:
    return Served(files={"/fw.bin": IMAGE})


@pytest.fixture
def base(ca: LocalCA, served: Served) -> Iterator[str]:
    with image_server(ca, served) as url:
        yield url


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "RETRY_PAUSE", 0.01)


def config(ca: LocalCA, **overrides: object) -> FirmwareConfig:
    values: dict[str, object] = {"ca_file": str(ca.ca_file), "connect_timeout": 5, **overrides}
    return FirmwareConfig.model_validate(values)


def get(
    url: str, tmp_path: Path, settings: FirmwareConfig, verifier: str | None = SHA
) -> tuple[Outcome, Path]:
    path = tmp_path / "firmware" / "gw+GW1.img"
    outcome = fetch(
        parse_uri(url), parse_verifier(verifier), str(path), settings, threading.Event()
    )
    return outcome, path


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def test_full_download_verified_and_renamed(ca: LocalCA, base: str, tmp_path: Path) -> None:
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca))
    assert outcome == Outcome(Status.SUCCESS, f"{len(IMAGE)} bytes", len(IMAGE))
    assert path.read_bytes() == IMAGE
    assert leftovers(path) == [path.name]  # no .part, no .part.json


def test_md5_verifier_and_no_verifier(ca: LocalCA, base: str, tmp_path: Path) -> None:
    md5 = hashlib.md5(IMAGE, usedforsecurity=False).hexdigest()
    assert get(f"{base}/fw.bin", tmp_path, config(ca), md5.upper())[0].status == Status.SUCCESS
    assert get(f"{base}/fw.bin", tmp_path, config(ca), None)[0].status == Status.SUCCESS


def test_chunked_body_without_length(
    ca: LocalCA, base: str, served: Served, tmp_path: Path
) -> None:
    served.modes["/fw.bin"] = {CHUNKED}
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca))
    assert outcome.status == Status.SUCCESS and path.read_bytes() == IMAGE


def test_cut_is_resumed_with_range(ca: LocalCA, base: str, served: Served, tmp_path: Path) -> None:
    served.modes["/fw.bin"] = {CUT_ONCE}
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca))
    assert outcome.status == Status.SUCCESS and path.read_bytes() == IMAGE
    half = len(IMAGE) // 2
    assert served.requests == [("/fw.bin", None), ("/fw.bin", f"bytes={half}-")]


def test_cut_restarts_from_zero_without_ranges(
    ca: LocalCA, base: str, served: Served, tmp_path: Path
) -> None:
    served.modes["/fw.bin"] = {CUT_ONCE, NO_RANGE}
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca))
    assert outcome.status == Status.SUCCESS and path.read_bytes() == IMAGE
    assert len(served.requests) == 2  # asked for a range, got 200: written from 0 again


def test_truncated_every_time_is_connection_lost_with_partial_kept(
    ca: LocalCA, base: str, served: Served, tmp_path: Path
) -> None:
    served.modes["/fw.bin"] = {TRUNCATED}
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca))
    assert outcome.status == Status.CONNECTION_LOST, outcome
    assert len(served.requests) == download.ATTEMPTS
    assert not path.exists()
    partial = Path(part_path(str(path)))
    assert 0 < partial.stat().st_size < len(IMAGE)
    assert IMAGE.startswith(partial.read_bytes())
    # The next download of the same URI resumes where this one stopped.
    served.modes["/fw.bin"] = set()
    size = partial.stat().st_size
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca))
    assert outcome.status == Status.SUCCESS and path.read_bytes() == IMAGE
    assert served.requests[-1] == ("/fw.bin", f"bytes={size}-")


def test_partial_of_another_uri_is_not_resumed(
    ca: LocalCA, base: str, served: Served, tmp_path: Path
) -> None:
    served.files["/other.bin"] = IMAGE
    served.modes["/fw.bin"] = {TRUNCATED}
    assert get(f"{base}/fw.bin", tmp_path, config(ca))[0].status == Status.CONNECTION_LOST
    outcome, path = get(f"{base}/other.bin", tmp_path, config(ca))
    assert outcome.status == Status.SUCCESS and path.read_bytes() == IMAGE
    assert served.requests[-1] == ("/other.bin", None)


def test_announced_length_above_the_limit_is_refused_before_reading(
    ca: LocalCA, base: str, served: Served, tmp_path: Path
) -> None:
    served.announce["/huge.bin"] = 10 * 1024 * 1024 * 1024
    outcome, path = get(f"{base}/huge.bin", tmp_path, config(ca))
    assert outcome.status == Status.OUT_OF_MEMORY and "max_bytes" in outcome.message
    assert leftovers(path) == []


def test_body_beyond_the_limit_is_stopped_and_deleted(
    ca: LocalCA, base: str, served: Served, tmp_path: Path
) -> None:
    served.modes["/fw.bin"] = {CHUNKED}  # no length announced: stopped while reading
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca, max_bytes="100 KiB"))
    assert outcome.status == Status.OUT_OF_MEMORY, outcome
    assert leftovers(path) == []


def test_announced_length_above_the_limit_with_content_length(
    ca: LocalCA, base: str, tmp_path: Path
) -> None:
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca, max_bytes="100 KiB"))
    assert outcome.status == Status.OUT_OF_MEMORY
    assert leftovers(path) == []


def test_not_found_is_invalid_uri(ca: LocalCA, base: str, tmp_path: Path) -> None:
    outcome, _ = get(f"{base}/missing.bin", tmp_path, config(ca))
    assert outcome.status == Status.INVALID_URI and "404" in outcome.message


def test_wrong_ca_is_invalid_uri(ca: LocalCA, base: str, tmp_path: Path) -> None:
    settings = config(ca, ca_file=str(ca.other_ca_file))
    outcome, path = get(f"{base}/fw.bin", tmp_path, settings)
    assert outcome.status == Status.INVALID_URI and "TLS verification failed" in outcome.message
    assert leftovers(path) == []


def test_unresolvable_host_and_refused_port_are_invalid_uri(ca: LocalCA, tmp_path: Path) -> None:
    outcome, _ = get("https://firmware.invalid/fw.bin", tmp_path, config(ca))
    assert outcome.status == Status.INVALID_URI and "resolve" in outcome.message
    outcome, _ = get("https://localhost:1/fw.bin", tmp_path, config(ca))
    assert outcome.status == Status.INVALID_URI and "cannot connect" in outcome.message


def test_verifier_mismatch_deletes_the_file(ca: LocalCA, base: str, tmp_path: Path) -> None:
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca), "0" * 64)
    assert outcome.status == Status.VERIFICATION_FAILED
    assert leftovers(path) == []


def test_redirect_followed_and_downgrade_refused(
    ca: LocalCA, base: str, served: Served, tmp_path: Path
) -> None:
    served.redirects["/latest"] = "/fw.bin"
    outcome, path = get(f"{base}/latest", tmp_path, config(ca))
    assert outcome.status == Status.SUCCESS and path.read_bytes() == IMAGE
    served.redirects["/plain"] = "http://localhost:1/fw.bin"
    outcome, _ = get(f"{base}/plain", tmp_path, config(ca))
    assert outcome.status == Status.INVALID_URI and "allow_http" in outcome.message


def test_plain_http_only_when_allowed(served: Served, ca: LocalCA, tmp_path: Path) -> None:
    with image_server(None, served) as url:
        outcome, path = get(f"{url}/fw.bin", tmp_path, config(ca, allow_http=True))
    assert outcome.status == Status.SUCCESS and path.read_bytes() == IMAGE


def test_credentials_sent_as_basic_and_never_in_messages(
    ca: LocalCA, base: str, tmp_path: Path
) -> None:
    outcome, _ = get(
        base.replace("https://", "https://user:s3cret@") + "/missing?token=t0ken",
        tmp_path,
        config(ca),
    )
    assert outcome.status == Status.INVALID_URI
    assert "s3cret" not in outcome.message and "t0ken" not in outcome.message


def test_disk_full_is_out_of_memory_and_nothing_left(
    ca: LocalCA, base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No tiny filesystem can be mounted here: the write that fills the disk is simulated.
    written = 0
    real_write_all = download._write_all

    def write_all(descriptor: int, data: bytes) -> None:
        nonlocal written
        if written > 50_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(descriptor, data)
        written += len(data)

    monkeypatch.setattr(download, "_write_all", write_all)
    outcome, path = get(f"{base}/fw.bin", tmp_path, config(ca))
    assert outcome.status == Status.OUT_OF_MEMORY and outcome.message == "the disk is full"
    assert leftovers(path) == []


def test_overall_timeout_is_connection_lost(ca: LocalCA, base: str, tmp_path: Path) -> None:
    clock = iter([0.0, 0.0, 5000.0, 5000.0, 5000.0])
    path = tmp_path / "firmware" / "x.img"
    outcome = fetch(
        parse_uri(f"{base}/fw.bin"),
        None,
        str(path),
        config(ca, timeout=60),
        threading.Event(),
        clock=lambda: next(clock, 5000.0),
    )
    assert outcome.status == Status.CONNECTION_LOST and "longer than 60 s" in outcome.message


async def test_downloader_runs_off_the_loop_and_stops_when_cancelled(
    ca: LocalCA, base: str, served: Served, tmp_path: Path
) -> None:
    path = tmp_path / "firmware" / "gw+GW1.img"
    downloader = Downloader()
    outcome = await downloader.download(
        parse_uri(f"{base}/fw.bin"), parse_verifier(SHA), str(path), config(ca)
    )
    assert outcome.status == Status.SUCCESS
    served.announce["/slow.bin"] = 1000  # headers, then nothing until released
    served.hold.clear()
    task = asyncio.create_task(
        downloader.download(parse_uri(f"{base}/slow.bin"), None, str(path), config(ca))
    )
    await asyncio.sleep(0.3)
    task.cancel()
    served.hold.set()  # the server closes: the thread's read returns and it sees the stop
    with pytest.raises(asyncio.CancelledError):
        await task
    assert Path(meta_path(str(path))).exists()  # noqa: ASYNC240 - kept for a resume
