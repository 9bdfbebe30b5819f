"""As users run it: no CAP_IPC_LOCK and a small RLIMIT_MEMLOCK, in a real subprocess."""

from __future__ import annotations

from tests.conftest import run_json


def test_past_the_limit_raises_memory_lock_error_and_stored_secrets_survive() -> None:
    result = run_json(
        """
        import json, resource
        import securemem
        from securemem import SecureBytes, MemoryLockError
        stored, error = [], None
        try:
            for i in range(100_000):
                stored.append(SecureBytes(i.to_bytes(8, "little") * 8))
        except MemoryLockError as exc:
            error = exc
        intact = all(s == i.to_bytes(8, "little") * 8 for i, s in enumerate(stored))
        for s in stored[: len(stored) // 2]:
            s.close()
        again = SecureBytes(b"after frees" * 5)
        print(json.dumps({
            "stored": len(stored), "intact": intact, "errno": error.errno,
            "message": str(error), "again_ok": again == b"after frees" * 5,
            "memlock_limit": securemem.stats().memlock_limit,
        }))
        """,
        memlock=65536,
    )
    assert result["intact"] and result["again_ok"]
    assert result["errno"] in (11, 12)  # EAGAIN or ENOMEM, as mlock(2) says
    assert result["memlock_limit"] == 65536
    # 64 KiB is 16 pages of 64 one-page slots each; the doctor's own count
    assert 900 <= result["stored"] <= 16 * 64
    message = str(result["message"])
    assert "could not lock 4096 bytes" in message
    assert "RLIMIT_MEMLOCK is 65536 bytes (64 KiB)" in message
    assert "already holds" in message and "ulimit -l" in message


def test_ten_thousand_64_byte_secrets_fit_under_8_mib() -> None:
    result = run_json(
        """
        import json, securemem
        from securemem import SecureBytes, _procfs
        secrets = [SecureBytes(64) for _ in range(10_000)]
        print(json.dumps({"locked": securemem.stats().locked_bytes,
                          "vmlck": _procfs.process_locked_bytes(),
                          "count": len(secrets)}))
        """,
        memlock=8 << 20,
    )
    assert result["count"] == 10_000
    assert result["vmlck"] == result["locked"]
    assert result["locked"] <= 700 * 1024  # 157 pages of 64-byte slots, plus one


def test_zero_limit_gives_eperm_with_advice() -> None:
    result = run_json(
        """
        import json
        from securemem import SecureBytes, MemoryLockError
        try:
            SecureBytes(16)
        except MemoryLockError as exc:
            print(json.dumps({"errno": exc.errno, "message": str(exc)}))
        """,
        memlock=0,
    )
    assert result["errno"] == 1
    assert "CAP_IPC_LOCK" in str(result["message"])


def test_at_the_limit_idle_reserve_pages_are_given_back_before_failing() -> None:
    """A full reserve must not cost a secret its lock: 15 of 16 pages sit idle in it."""
    result = run_json(
        """
        import json
        from securemem import Arena, SecureBytes, MemoryLockError
        arena = Arena(region_pages=1, reserve_pages=15)
        small = [SecureBytes(2048, arena=arena) for _ in range(30)]  # 15 one-page slabs
        for secret in small:
            secret.close()  # all 15 pages stay locked, idle, in the reserve
        reserve_before = arena.stats().reserve_bytes
        try:
            big = SecureBytes(15 * 4096, arena=arena)  # a 15-page run, in a new region
            ok = big == bytes(15 * 4096)
        except MemoryLockError as error:
            ok = str(error)
        print(json.dumps({"reserve_before": reserve_before, "ok": ok,
                          "reserve_after": arena.stats().reserve_bytes}))
        """,
        memlock=65536,
    )
    assert result["reserve_before"] == 15 * 4096
    assert result["ok"] is True
    assert result["reserve_after"] < result["reserve_before"]
