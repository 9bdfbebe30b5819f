"""The invariants of DESIGN.md, each checked against the real kernel."""

from __future__ import annotations

import gc

import pytest

from securemem import Arena, SecureBytes, SecureBytesClosedError
from securemem._kernel import NativeKernel
from tests.conftest import assert_locks_match_kernel, kernel_locked_pages, read_raw


class CountingKernel(NativeKernel):
    """The real kernel, with a tally of the lock and unlock calls the arena makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int, int]] = []

    def lock(self, address: int, length: int) -> None:
        super().lock(address, length)
        self.calls.append(("lock", address, length))

    def unlock(self, address: int, length: int) -> None:
        super().unlock(address, length)
        self.calls.append(("unlock", address, length))


def test_1_a_page_is_locked_exactly_while_its_count_is_positive(arena: Arena) -> None:
    secrets = [SecureBytes(size, arena=arena) for size in (16, 64, 64, 900, 3000, 5000, 70000)]
    assert_locks_match_kernel(arena)
    for page in arena.locked_pages():
        assert page in kernel_locked_pages(arena)
    for secret in secrets[::2]:
        secret.close()
        assert_locks_match_kernel(arena)
    for secret in secrets[1::2]:
        secret.close()
        assert_locks_match_kernel(arena)
    arena.release_reserve()
    assert arena.locked_pages() == {}
    assert arena.mapped_ranges() == []


def test_2_kernel_sees_one_lock_per_first_holder_and_one_unlock_per_last() -> None:
    kernel = CountingKernel()
    arena = Arena(kernel=kernel, reserve_pages=0)
    page = arena.page_size
    neighbours = [SecureBytes(64, arena=arena) for _ in range(page // 64)]  # one full slab
    assert [c[0] for c in kernel.calls] == ["lock"]
    for secret in neighbours[1:]:
        secret.close()
    assert [c[0] for c in kernel.calls] == ["lock"], "closing a neighbour unlocked the page"
    assert_locks_match_kernel(arena)
    neighbours[0].close()
    assert [c[0] for c in kernel.calls] == ["lock", "unlock"]
    run = SecureBytes(3 * page, arena=arena)
    assert kernel.calls[-1] == ("lock", run.address, 3 * page)  # one call for the whole run
    run.close()
    assert kernel.calls[-1] == ("unlock", kernel.calls[-2][1], 3 * page)
    locks = sum(1 for c in kernel.calls if c[0] == "lock")
    unlocks = sum(1 for c in kernel.calls if c[0] == "unlock")
    assert locks == unlocks == 2


def test_2_reserve_means_an_alloc_free_loop_makes_no_system_call() -> None:
    kernel = CountingKernel()
    arena = Arena(kernel=kernel, reserve_pages=1)
    SecureBytes(32, arena=arena).close()
    calls = len(kernel.calls)
    for _ in range(1000):
        SecureBytes(32, arena=arena).close()
    assert len(kernel.calls) == calls
    assert_locks_match_kernel(arena)


def test_3_handed_out_bytes_are_zero_and_released_bytes_are_zero_again(arena: Arena) -> None:
    keeper = SecureBytes(48, arena=arena)  # shares the slab page: keeps it mapped and locked
    secret = SecureBytes(48, arena=arena)
    address = secret.address
    secret.view()[:] = b"\xa5" * 48
    del secret  # the view went away with it: garbage collection releases at once
    gc.collect()
    assert read_raw(address, 48) == bytes(48)
    again = SecureBytes(48, arena=arena)
    assert again.address == address, "the slot should be reused once free"
    assert bytes(again.view()) == bytes(48)
    again.close()
    big = SecureBytes(10_000, arena=arena)
    big_address = big.address
    big.view()[:] = b"\x5a" * 10_000
    big.close()
    # the run's pages went to the reserve (still mapped): they must read zeros
    assert read_raw(big_address, 10_000) == bytes(10_000)
    keeper.close()


def test_4_slot_is_not_reused_while_a_view_of_the_old_owner_lives(arena: Arena) -> None:
    secret = SecureBytes(b"A" * 32, arena=arena)
    address = secret.address
    stale = secret.view()
    secret.close()
    assert bytes(stale) == bytes(32), "close must wipe at once, even with a view alive"
    others = [SecureBytes(b"B" * 32, arena=arena) for _ in range(200)]
    assert address not in {other.address for other in others}
    assert bytes(stale) == bytes(32), "a stale view must never see another secret"
    stale[0] = 1  # writing through a stale view is harmless: nobody owns the slot
    with pytest.raises(SecureBytesClosedError):
        secret.view()
    assert arena.stats().awaiting_views == 1
    stale.release()
    del stale
    assert arena.stats().awaiting_views == 0
    for other in others:
        other.close()


def test_4_views_keep_an_unclosed_secret_alive(arena: Arena) -> None:
    view = SecureBytes(b"kept", arena=arena).view()
    gc.collect()
    assert bytes(view) == b"kept"
    assert arena.stats().allocations == 1
    del view
    gc.collect()
    assert arena.stats().allocations == 0


def test_5_locked_pages_hold_secret_bytes_only(arena: Arena) -> None:
    """Bookkeeping (free lists, counts) must not live in locked memory."""
    secrets = [SecureBytes(bytes([i % 255 + 1]) * (i % 700 + 1), arena=arena) for i in range(300)]
    for secret in secrets[::3]:
        secret.close()
    live = [s for s in secrets if not s.closed]
    owned: set[int] = set()
    for secret in live:
        owned.update(range(secret.address, secret.address + len(secret)))
    for page in arena.locked_pages():
        content = read_raw(page, arena.page_size)
        stray = [page + i for i, byte in enumerate(content) if byte and page + i not in owned]
        assert stray == [], "locked memory holds bytes that belong to no secret"
    for secret in live:
        secret.close()


def test_6_failed_lock_leaves_no_partial_state() -> None:
    from tests.conftest import run_json

    result = run_json(
        """
        import json, securemem
        from securemem import SecureBytes, MemoryLockError, _procfs
        arena = securemem.Arena(reserve_pages=0)
        kept = [SecureBytes(b"k" * 64, arena=arena) for _ in range(64)]  # one page
        before = arena.stats(), arena.mapped_ranges(), _procfs.process_locked_bytes()
        try:
            SecureBytes(1 << 20, arena=arena)  # a run far above the 64 KiB limit
        except MemoryLockError as error:
            err = error.errno
        after = arena.stats(), arena.mapped_ranges(), _procfs.process_locked_bytes()
        print(json.dumps({"errno": err, "same": before == after,
                          "intact": all(k == b"k" * 64 for k in kept)}))
        """,
        memlock=65536,
    )
    assert result == {"errno": 12, "same": True, "intact": True}


def test_7_no_secret_reaches_repr_errors_or_pickle(arena: Arena) -> None:
    import pickle

    marker = b"SECRET-MARKER-7"
    secret = SecureBytes(marker, arena=arena)
    texts = [repr(secret), str(secret), repr([secret]), repr({"k": secret})]
    for action in (lambda: pickle.dumps(secret), lambda: hash(secret)):
        with pytest.raises(TypeError) as info:
            action()
        texts.append(str(info.value))
    secret.close()
    with pytest.raises(ValueError) as closed:
        len(secret)
    texts.append(str(closed.value))
    for text in texts:
        assert "MARKER" not in text
