"""A forked child inherits no secrets, and locks its own afresh. Real fork, in a subprocess."""

from __future__ import annotations

import os

import pytest

import securemem
from securemem import SecureBytes
from securemem._secretmem import secretmem_available
from tests.conftest import run_json

FORK = """
import json, os
import securemem
from securemem import Arena, SecureBytes, SecureBytesClosedError, _procfs
from securemem._native import ffi

def raw(address, length):
    return bytes(ffi.buffer(ffi.cast("char *", address), length))

arena = Arena(backend=BACKEND) if BACKEND != "anonymous" else securemem.default_arena()
small = SecureBytes(b"small secret 123", arena=arena)
large = SecureBytes(b"L" * 9000, arena=arena)
guarded = SecureBytes(b"guarded secret", arena=arena, guarded=True)
view = small.view()
addresses = (small.address, large.address)
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    child = {
        "view": bytes(view) == bytes(16),
        "raw_small": raw(addresses[0], 16) == bytes(16),
        "raw_large": raw(addresses[1], 9000) == bytes(9000),
        "closed": [small.closed, large.closed, guarded.closed],
        "repr": repr(small),
    }
    try:
        len(small)
        child["len"] = "no error"
    except SecureBytesClosedError as exc:
        child["len"] = str(exc)
    fresh = [SecureBytes(i.to_bytes(4, "little") * 8, arena=arena) for i in range(200)]
    fresh_large = SecureBytes(b"C" * 9000, arena=arena)
    fresh_guarded = SecureBytes(b"child guarded", guarded=True)
    child["fresh_flags"] = [
        sorted(_procfs.mapping_at(s.address).flags & {"lo", "dd", "wf", "dc"})
        for s in (fresh[0], fresh[-1], fresh_large, fresh_guarded)
    ]
    child["fresh_intact"] = all(s == i.to_bytes(4, "little") * 8 for i, s in enumerate(fresh))
    stats = arena.stats()
    child["allocations"] = stats.allocations
    child["vmlck"] = _procfs.process_locked_bytes()
    child["locked"] = securemem.stats().locked_bytes  # the default arena: guarded one too
    small.close(); large.close(); guarded.close()  # inherited: closing touches nothing
    del view
    for s in fresh:
        s.close()
    child["after_close"] = arena.stats().allocations
    os.write(write_end, json.dumps(child).encode())
    os._exit(0)
os.close(write_end)
child = json.loads(os.read(read_end, 1 << 16))
_, status = os.waitpid(pid, 0)
print(json.dumps({
    "child": child, "status": status,
    "parent_intact": [small == b"small secret 123", large == b"L" * 9000,
                      guarded == b"guarded secret", bytes(view) == b"small secret 123"],
    "parent_allocations": arena.stats().allocations,
}))
"""


@pytest.mark.parametrize("backend", ["anonymous", "secretmem"])
def test_child_reads_zeros_reports_closed_and_locks_its_own(backend: str) -> None:
    if backend == "secretmem":
        available, reason = secretmem_available()
        if not available:
            pytest.skip(reason)
    # As users run it (no CAP_IPC_LOCK): locks in the child are real locks under a real limit.
    result = run_json(FORK.replace("BACKEND", repr(backend)), memlock=1 << 20)
    child = result["child"]
    assert isinstance(child, dict)
    assert result["status"] == 0
    assert child["view"] and child["raw_small"] and child["raw_large"]
    assert child["closed"] == [True, True, True]
    assert child["repr"] == "<SecureBytes size=16 closed>"
    assert "parent of this forked process" in child["len"]
    expected = {"lo", "dd", "dc"} if backend == "secretmem" else {"lo", "dd", "wf"}
    for flags in child["fresh_flags"][:3]:
        assert set(flags) == expected
    assert set(child["fresh_flags"][3]) == {"lo", "dd", "wf"}  # default arena, guarded
    assert child["fresh_intact"]
    # the child's own (200 small, a large one, and in the default arena the guarded
    # one), none of the parent's
    own = 201 + (backend == "anonymous")
    assert child["allocations"] == own
    if backend == "anonymous":
        # every lock the child holds is one it took itself, and stats say so
        assert child["vmlck"] == child["locked"] > 0
    assert child["after_close"] == own - 200
    assert result["parent_intact"] == [True, True, True, True]
    assert result["parent_allocations"] == 3


def test_fork_in_the_test_process_leaves_the_parent_arena_consistent() -> None:
    # The hook runs only in children; the parent's bookkeeping must not move.
    before = securemem.stats()
    secret = SecureBytes(b"stays")
    pid = os.fork()
    if pid == 0:
        os._exit(0 if secret.closed else 1)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert not secret.closed and secret == b"stays"
    secret.close()
    assert securemem.stats().allocations == before.allocations


def test_without_wipe_on_fork_the_child_wipes_inherited_pages_itself() -> None:
    # A real kernel that lacks MADV_WIPEONFORK (as before Linux 4.14): the
    # inherited pages hold the parent's bytes until the at-fork hook wipes them.
    result = run_json(
        """
        import json, os
        from securemem import Arena, SecureBytes
        from securemem._kernel import NativeKernel
        from securemem._native import ffi

        class NoWipeOnFork(NativeKernel):
            def advise(self, address, length, advice):
                return False if advice == "wipeonfork" else super().advise(address, length, advice)

        arena = Arena(kernel=NoWipeOnFork())
        small = SecureBytes(b"s" * 16, arena=arena)
        large = SecureBytes(b"L" * 9000, arena=arena)
        # Guarded secrets have mappings of their own; one the parent made unreadable.
        guarded = SecureBytes(b"g" * 40, arena=arena, guarded=True)
        hidden = SecureBytes(b"h" * 40, arena=arena, guarded=True)
        hidden.protect("noaccess")
        spots = [(small.address, 16), (large.address, 9000), (guarded.address, 40),
                 (hidden.address, 40)]
        pid = os.fork()
        if pid == 0:
            # (the child's hook opened `hidden` for its wipe, so reading it cannot fault)
            zero = all(bytes(ffi.buffer(ffi.cast("char *", a), n)) == bytes(n) for a, n in spots)
            os._exit(0 if zero and small.closed and guarded.closed else 1)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": status, "parent": small == b"s" * 16}))
        """
    )
    assert result == {"status": 0, "parent": True}
