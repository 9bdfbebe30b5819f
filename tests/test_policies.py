"""on_lock_failure as documented, as users run it: no CAP_IPC_LOCK, a small RLIMIT_MEMLOCK."""

from __future__ import annotations

import pytest

from tests.conftest import run_json

FILL = """
import json, warnings
from securemem import Arena, MemoryLockError, SecureBytes, _procfs

def fill(arena, count):
    stored, error = [], None
    try:
        for i in range(count):
            stored.append(SecureBytes(i.to_bytes(8, "little") * 8, arena=arena))
    except MemoryLockError as exc:
        error = exc.errno
    return stored, error

out = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    first = Arena(on_lock_failure=POLICY)
    stored, error = fill(first, 3000)  # 64 KiB holds at most 1024 of them
    second = Arena(on_lock_failure=POLICY)
    more, error2 = fill(second, 100)
out["warnings"] = [(w.category.__name__, w.filename, w.lineno) for w in caught]
out["errors"] = [error, error2]
out["stored"] = [len(stored), len(more)]
out["intact"] = all(s == i.to_bytes(8, "little") * 8 for i, s in enumerate(stored))
stats = [first.stats(), second.stats()]
out["locked"] = sum(s.locked_bytes for s in stats)
out["unlocked"] = [s.unlocked_bytes for s in stats]
out["vmlck"] = _procfs.process_locked_bytes()
for s in stored + more:
    s.close()
out["unlocked_after"] = [first.stats().unlocked_bytes, second.stats().unlocked_bytes]
print(json.dumps(out))
"""


@pytest.mark.parametrize("policy", ["raise", "warn", "allow"])
def test_each_policy_under_a_64_kib_limit(policy: str) -> None:
    out = run_json(FILL.replace("POLICY", repr(policy)), memlock=65536)
    errors, stored, unlocked = out["errors"], out["stored"], out["unlocked"]
    assert isinstance(errors, list) and isinstance(stored, list) and isinstance(unlocked, list)
    assert out["intact"]
    # Whatever the policy, what stats call locked is exactly what the kernel has locked.
    assert out["vmlck"] == out["locked"]
    if policy == "raise":
        assert errors[0] in (11, 12) and errors[1] in (11, 12)  # EAGAIN / ENOMEM
        assert 900 <= stored[0] <= 1024 and stored[1] == 0
        assert unlocked == [0, 0] and out["warnings"] == []
    else:
        assert errors == [None, None] and stored == [3000, 100]
        assert unlocked[0] > 0 and unlocked[1] > 0
        # 3000 secrets of 64 bytes need 47 pages: those past the limit are unlocked
        assert out["locked"] + unlocked[0] + unlocked[1] >= 47 * 4096
        if policy == "warn":
            # one warning per arena, never a flood, pointing at the user's own line
            assert len(out["warnings"]) == 2
            for category, filename, _ in out["warnings"]:
                assert (category, filename) == ("RuntimeWarning", "<string>")
        else:
            assert out["warnings"] == []
    assert out["unlocked_after"] == [0, 0]


def test_secretmem_past_the_limit_raises_whatever_the_policy() -> None:
    from securemem._secretmem import secretmem_available

    available, reason = secretmem_available()
    if not available:
        pytest.skip(reason)
    out = run_json(
        """
        import json
        from securemem import Arena, MemoryLockError, SecureBytes
        out = {}
        for policy in ("raise", "warn", "allow"):
            arena = Arena(backend="secretmem", on_lock_failure=policy)  # 66-page regions
            try:
                SecureBytes(16, arena=arena)
                out[policy] = "stored"
            except MemoryLockError as exc:
                message = str(exc)
                out[policy] = [exc.errno, "RLIMIT_MEMLOCK is 65536" in message
                               and "region_pages" in message]
        small = Arena(backend="secretmem", region_pages=4)  # 6 pages fit in 16
        out["small_regions"] = SecureBytes(b"fits", arena=small) == b"fits"
        print(json.dumps(out))
        """,
        memlock=65536,
    )
    assert out == {
        "raise": [11, True],
        "warn": [11, True],
        "allow": [11, True],
        "small_regions": True,
    }
