"""The memory scanner itself: it must find a marker wherever a copy went, and nowhere else."""

from __future__ import annotations

from securemem import SecureBytes
from tests.memscan import Marker


def test_a_fresh_marker_is_found_nowhere() -> None:
    with Marker() as marker:
        result = marker.scan()
        assert result.found == [], result.describe()
        assert result.scanned_bytes > 1 << 20  # it did read the process, not nothing


def test_a_marker_that_went_through_bytes_is_found() -> None:
    with Marker() as marker:
        leaked = bytes(marker.view())  # the copy every secret-handling path must avoid
        result = marker.scan()
        assert len(result.found) >= 1, "the scan cannot see a bytes copy: it proves nothing"
        assert leaked  # keep the copy alive until after the scan


def test_a_marker_straddling_two_read_chunks_is_found() -> None:
    # A tiny read chunk makes the marker cross chunk boundaries wherever it lies.
    with Marker(32, chunk=4096 + 7) as marker:
        leaked = bytearray(marker.view())
        assert len(marker.scan().found) >= 1
        leaked[:] = bytes(len(leaked))


def test_a_marker_in_an_open_securebytes_is_found_and_gone_after_close() -> None:
    with Marker() as marker:
        secret = SecureBytes(marker.view())
        found = marker.scan().found
        assert secret.address in found
        secret.close()
        result = marker.scan()
        assert result.found == [], result.describe()
