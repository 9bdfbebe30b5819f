"""Guarded secrets: guard pages that really fault, protection that really holds, a canary."""

from __future__ import annotations

import signal
import sys

import pytest
from securemem._native import ffi

import securemem
from securemem import Arena, CanaryError, SecureBytes, _procfs
from tests.conftest import read_raw, run_json, run_python

SETUP = """
import sys
from securemem import SecureBytes
from securemem._native import ffi
secret = SecureBytes(b"0123456789abcdef", guarded=True)
byte = ffi.cast("unsigned char *", secret.address)
"""


def crash(code: str) -> tuple[int, str]:
    result = run_python(SETUP + code)
    return result.returncode, result.stdout


@pytest.mark.parametrize(
    ("action", "reached"),
    [
        # the last byte is fine, one past it is in the trailing guard page
        ("byte[15] = 1; print('last byte ok', flush=True); byte[16] = 1", "last byte ok"),
        ("secret.protect('noaccess'); print('protected', flush=True); secret[0]", "protected"),
        (
            "secret.protect('readonly'); print(secret[0], flush=True); secret[0] = 1",
            str(ord("0")),
        ),
        (
            "secret.protect('noaccess')\n"
            "with secret.accessible('readonly'): print(secret == b'0123456789abcdef', flush=True)\n"
            "secret[0]",
            "True",
        ),
    ],
    ids=["one-byte-past-the-end", "read-noaccess", "write-readonly", "noaccess-after-block"],
)
def test_access_outside_what_is_allowed_kills_with_sigsegv(action: str, reached: str) -> None:
    returncode, stdout = crash(action)
    assert stdout.strip().splitlines() == [reached]  # everything allowed really worked
    assert returncode == -signal.SIGSEGV


def test_data_is_right_aligned_against_the_guard_with_a_canary_in_front(arena: Arena) -> None:
    secret = SecureBytes(b"x" * 100, arena=arena, guarded=True)
    page = arena.page_size
    assert (secret.address + 100) % page == 0
    data = _procfs.mapping_at(secret.address)
    guard = _procfs.mapping_at(secret.address + 100)
    assert data is not None and guard is not None
    assert {"lo", "dd", "wf"} <= data.flags
    assert guard.start == secret.address + 100 and "rd" not in guard.flags  # PROT_NONE
    before = arena.stats()
    assert before.allocations == 1 and before.in_use_bytes == 100
    assert before.locked_bytes == page and before.mapped_bytes == 3 * page
    secret.close()
    assert arena.stats().allocations == 0 and arena.stats().locked_bytes == 0
    assert arena.stats().mapped_bytes == 0
    assert _procfs.mapping_at(secret._address) is None  # the whole mapping is gone


def test_corrupted_canary_is_reported_after_wiping(arena: Arena) -> None:
    secret = SecureBytes(b"k" * 40, arena=arena, guarded=True)
    view = secret.view()  # keeps the wiped mapping readable after close
    ffi.cast("unsigned char *", secret.address)[-1] ^= 0xFF  # an underrun by one byte
    with pytest.raises(CanaryError, match="underrun") as caught:
        secret.close()
    assert "k" * 4 not in str(caught.value)
    assert secret.closed
    assert bytes(view) == bytes(40)  # wiped before the error was raised
    assert arena.stats().allocations == 0
    del view


def test_intact_canary_closes_quietly_even_when_protected(arena: Arena) -> None:
    secret = SecureBytes.random(64, arena=arena, guarded=True)
    secret.protect("noaccess")
    secret.close()  # opens the pages to wipe them: no crash, no error
    assert secret.closed


def test_canary_corruption_found_by_garbage_collection_is_not_swallowed(arena: Arena) -> None:
    seen: list[BaseException | None] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: seen.append(info.exc_value)
    try:
        secret = SecureBytes(16, arena=arena, guarded=True)
        # Flipped, not set to a constant: the canary is random, and a constant equals its
        # byte there one time in 256 (then nothing was corrupted and nothing is reported).
        ffi.cast("unsigned char *", secret.address)[-3] ^= 0xFF
        del secret
    finally:
        sys.unraisablehook = previous
    assert len(seen) == 1 and isinstance(seen[0], CanaryError)


def test_wipe_and_protection_round_trip(arena: Arena) -> None:
    secret = SecureBytes(b"abc", arena=arena, guarded=True)
    initial: str = secret.protection  # (a local: mypy would narrow the property for good)
    assert initial == "readwrite"
    secret.protect("readonly")
    secret.wipe()  # works through the protection, and restores it
    assert secret.protection == "readonly"
    assert read_raw(secret.address, 3) == bytes(3)
    with secret.accessible("readwrite"):
        secret[0:3] = b"xyz"
    assert secret.protection == "readonly" and secret == b"xyz"
    with pytest.raises(ValueError, match="protection must be"):
        secret.protect("everything")  # type: ignore[arg-type]
    secret.close()


def test_protect_on_a_packed_secret_is_a_clear_error(arena: Arena) -> None:
    secret = SecureBytes(16, arena=arena)
    with pytest.raises(ValueError, match=r"guarded=True"):
        secret.protect("noaccess")
    with pytest.raises(ValueError, match=r"guarded=True"), secret.accessible():
        pass
    secret.close()


def test_guarded_lock_failure_follows_the_arena_policy() -> None:
    out = run_json(
        """
        import json, warnings
        from securemem import Arena, MemoryLockError, SecureBytes
        out = {}
        try:
            SecureBytes(32, guarded=True, arena=Arena(on_lock_failure="raise"))
        except MemoryLockError as exc:
            out["raise"] = exc.errno
        arena = Arena(on_lock_failure="warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kept = [SecureBytes(b"s" * 32, guarded=True, arena=arena) for _ in range(3)]
        out["warnings"] = [(w.category.__name__, w.filename) for w in caught]
        stats = arena.stats()
        out["unlocked"] = stats.unlocked_bytes
        out["locked"] = stats.locked_bytes
        out["intact"] = all(s == b"s" * 32 for s in kept)
        for s in kept:
            s.close()
        out["after"] = arena.stats().unlocked_bytes
        print(json.dumps(out))
        """,
        memlock=0,
    )
    assert out["raise"] == 1  # EPERM
    assert out["warnings"] == [["RuntimeWarning", "<string>"]]  # once, at the user's line
    assert out["unlocked"] == 3 * 4096 and out["locked"] == 0
    assert out["intact"] and out["after"] == 0


def test_default_arena_counts_guarded_secrets() -> None:
    before = securemem.stats()
    with SecureBytes(10, guarded=True):
        during = securemem.stats()
    assert during.allocations == before.allocations + 1
    assert during.locked_bytes == before.locked_bytes + 4096
    assert securemem.stats().allocations == before.allocations
