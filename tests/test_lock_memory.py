"""lock_memory(): per-page counts for memory securemem did not allocate.

The matrix follows Monero's mlocker tests: distinct, identical, overlapping,
multi-page, cross-page and repeated ranges, checking after every lock and
unlock which pages the kernel itself reports locked (smaps on the real kernel,
the simulation's own table elsewhere).
"""

from __future__ import annotations

import errno
import gc
import mmap
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from securemem._native import ffi

from securemem import LockedMemory, MemoryLockError, SecureBytes, _procfs, lock_memory
from securemem._kernel import Kernel
from securemem._lockmemory import locked_pages
from securemem.testing import SimulatedKernel
from tests.conftest import run_json
from tests.simulated import KERNELS, make_kernel

PAGE = 4096
BUFFER_PAGES = 8


def address_of(buffer: object) -> int:
    return int(ffi.cast("uintptr_t", ffi.from_buffer(buffer)))


class Harness:
    """One fresh mapping, a kernel, the model of counts, and the kernel's own view."""

    def __init__(self, kernel_name: str) -> None:
        self.kernel: Kernel | None = None if kernel_name == "native" else make_kernel(kernel_name)
        self.buffer = mmap.mmap(-1, BUFFER_PAGES * PAGE)
        self.base = address_of(self.buffer)
        self.handles: dict[str, LockedMemory] = {}
        self.model: Counter[int] = Counter()

    def pages_of(self, offset: int, length: int) -> list[int]:
        first = (self.base + offset) // PAGE * PAGE
        return list(range(first, self.base + offset + length, PAGE)) if length else []

    def lock(self, name: str, offset: int, length: int) -> None:
        view = memoryview(self.buffer)[offset : offset + length]
        self.handles[name] = lock_memory(view, kernel=self.kernel)
        view.release()
        self.model.update(self.pages_of(offset, length))
        self.check()

    def unlock(self, name: str) -> None:
        handle = self.handles.pop(name)
        offset = handle.address - self.base
        handle.release()
        self.model.subtract(self.pages_of(offset, handle.nbytes))
        self.check()

    def kernel_locked(self) -> set[int]:
        pages = range(self.base, self.base + BUFFER_PAGES * PAGE, PAGE)
        if isinstance(self.kernel, SimulatedKernel):
            depth = self.kernel.locked_pages()
            # one kernel lock per page, however many handles: nothing nests
            assert all(depth[page] == 1 for page in pages if page in depth)
            return {page for page in pages if page in depth}
        maps = _procfs.mappings()  # one read of smaps per check
        assert maps is not None
        return {page for page in pages if any(m.start <= page < m.end and m.locked for m in maps)}

    def check(self) -> None:
        expected = {page for page, count in self.model.items() if count > 0}
        assert self.kernel_locked() == expected
        table = locked_pages(self.kernel)
        assert {page: table[page] for page in expected} == {
            page: self.model[page] for page in expected
        }

    def close(self) -> None:
        for name in list(self.handles):
            self.unlock(name)
        assert self.kernel_locked() == set()
        self.buffer.close()


@pytest.fixture(params=KERNELS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(request.param)
    yield h
    h.close()


H = PAGE // 2  # half a page

MATRIX: dict[str, list[tuple[str | int, ...]]] = {
    "distinct": [("lock", "a", 0, 100), ("lock", "b", 2 * PAGE, 100), ("unlock", "a"),
                 ("unlock", "b")],
    "identical": [("lock", "a", 10, 100), ("lock", "b", 10, 100), ("unlock", "a"),
                  ("unlock", "b")],
    "same_page": [("lock", "a", 0, 64), ("lock", "b", 1000, 64), ("unlock", "b"),
                  ("unlock", "a")],
    "overlapping": [("lock", "a", 0, PAGE + H), ("lock", "b", PAGE, PAGE + H),
                    ("unlock", "a"), ("unlock", "b")],
    "multi_page": [("lock", "a", 0, 5 * PAGE), ("lock", "b", 2 * PAGE, 10), ("unlock", "a"),
                   ("unlock", "b")],
    "cross_page": [("lock", "a", PAGE - 8, 16), ("lock", "b", PAGE - 1, 2), ("unlock", "b"),
                   ("lock", "c", 2 * PAGE - 1, 2), ("unlock", "a"), ("unlock", "c")],
    "repeated": [("lock", "a", 0, PAGE), ("lock", "b", 0, PAGE), ("lock", "c", 0, PAGE),
                 ("unlock", "b"), ("unlock", "a"), ("lock", "d", 0, PAGE), ("unlock", "c"),
                 ("unlock", "d")],
    "nested_inside": [("lock", "a", 0, 4 * PAGE), ("lock", "b", PAGE + 5, PAGE),
                      ("unlock", "a"), ("lock", "c", 3 * PAGE, PAGE), ("unlock", "b"),
                      ("unlock", "c")],
    "adjacent": [("lock", "a", 0, PAGE), ("lock", "b", PAGE, PAGE), ("unlock", "a"),
                 ("unlock", "b")],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_matrix(harness: Harness, case: str) -> None:
    for step in MATRIX[case]:
        if step[0] == "lock":
            harness.lock(str(step[1]), int(step[2]), int(step[3]))
        else:
            harness.unlock(str(step[1]))
    assert harness.model.total() == 0


@pytest.mark.parametrize("kernel_name", ["native", "linux", "openbsd"])
@settings(max_examples=15, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, BUFFER_PAGES * PAGE - 1),
            st.integers(0, 3 * PAGE),
        ),
        max_size=12,
    )
)
def test_random_ranges(kernel_name: str, ops: list[tuple[bool, int, int]]) -> None:
    harness = Harness(kernel_name)
    try:
        for index, (release, offset, length) in enumerate(ops):
            if release and harness.handles:
                harness.unlock(next(iter(harness.handles)))
            else:
                harness.lock(str(index), offset, min(length, BUFFER_PAGES * PAGE - offset))
    finally:
        harness.close()


def test_handle_is_a_context_manager_and_release_is_idempotent() -> None:
    data = bytearray(3 * PAGE)
    with lock_memory(data) as handle:
        assert not handle.released
        assert len(handle.pages) in (3, 4)
        assert all(page in locked_pages() for page in handle.pages)
        with pytest.raises(BufferError):
            data.extend(b"x")  # the memory cannot move while it is locked
        assert "bytes" in repr(handle) and "held" in repr(handle)
    assert handle.released
    handle.release()
    assert not any(page in locked_pages() for page in handle.pages)
    data.extend(b"x")


def test_a_forgotten_handle_is_released_by_garbage_collection() -> None:
    buffer = mmap.mmap(-1, PAGE)
    handle = lock_memory(buffer)
    page = handle.pages[0]
    mapping = _procfs.mapping_at(page)
    assert mapping is not None and mapping.locked
    del handle
    gc.collect()
    mapping = _procfs.mapping_at(page)
    assert mapping is not None and not mapping.locked
    buffer.close()


def test_numpy_array() -> None:
    numpy = pytest.importorskip("numpy")
    array = numpy.zeros((64, 256), dtype=numpy.float64)  # 128 KiB, 2-D
    with lock_memory(array) as handle:
        assert handle.nbytes == array.nbytes
        assert all(_procfs.mapping_at(page).locked for page in handle.pages)  # type: ignore[union-attr]


def test_refusals_are_explained() -> None:
    with pytest.raises(TypeError, match="buffer protocol"):
        lock_memory(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="C-contiguous"):
        lock_memory(memoryview(bytearray(100))[::2])
    with SecureBytes(32) as secret, pytest.raises(ValueError, match="locked already"):
        lock_memory(secret.view())
    empty = lock_memory(b"")
    assert empty.pages == ()
    empty.release()


@pytest.mark.parametrize("system", ["openbsd", "qnx"])  # Linux: the real test below
def test_refused_lock_changes_no_count(system: str) -> None:
    kernel = SimulatedKernel(system, memlock_limit=2 * PAGE)
    buffer = mmap.mmap(-1, 4 * PAGE)
    if system == "qnx":  # without superuser nothing can be locked
        with pytest.raises(MemoryLockError) as info:
            lock_memory(buffer, kernel=kernel)
        assert info.value.errno == errno.EPERM
        return
    first = lock_memory(memoryview(buffer)[:PAGE], kernel=kernel)
    with pytest.raises(MemoryLockError) as info:
        lock_memory(buffer, kernel=kernel)
    assert info.value.errno == (errno.EAGAIN if system == "openbsd" else errno.ENOMEM)
    assert locked_pages(kernel) == {first.address: 1}
    assert list(kernel.locked_pages()) == [first.address]
    first.release()
    assert kernel.locked_pages() == {}


def test_real_limit_for_an_unprivileged_user() -> None:
    """A refused lock changes no count: neither the kernel's (VmLck) nor the handles' table."""
    result = run_json(
        """
        import json, mmap, securemem
        from securemem import lock_memory, MemoryLockError, _procfs
        from securemem._lockmemory import locked_pages
        buffer = mmap.mmap(-1, 1 << 20)
        small = lock_memory(memoryview(buffer)[: 32 << 10])
        locked = _procfs.process_locked_bytes()
        counts = locked_pages() == {page: 1 for page in small.pages}
        try:
            lock_memory(buffer)
            err = 0
        except MemoryLockError as error:
            err = error.errno
        same = _procfs.process_locked_bytes() == locked
        counts = counts and locked_pages() == {page: 1 for page in small.pages}
        small.release()
        print(json.dumps({"errno": err, "same": same, "counts": counts, "locked": locked,
                          "after": _procfs.process_locked_bytes(), "table": locked_pages()}))
        """,
        memlock=65536,
    )
    assert result == {
        "errno": errno.ENOMEM,
        "same": True,
        "counts": True,
        "locked": 32 << 10,
        "after": 0,
        "table": {},
    }


def test_lock_memory_refuses_a_guarded_secrets_own_mapping() -> None:
    with SecureBytes(64, guarded=True) as guarded:
        view = guarded.view()
        with pytest.raises(ValueError, match="securemem arena"):
            lock_memory(view)
        view.release()


# In the parent: a handle on two pages. In a forked child (which inherits the handle but
# not the lock): its own lock on the same pages, then the inherited handle is released and
# another is collected; the child's lock must stay, and its own release must work.
INHERITED_AFTER_FORK = """
import gc, json, mmap, os
from securemem import lock_memory, _procfs
buffer = mmap.mmap(-1, 2 * mmap.PAGESIZE)
other = mmap.mmap(-1, 2 * mmap.PAGESIZE)
held, collected = lock_memory(buffer), lock_memory(other)
addresses = {id(buffer): held.address, id(other): collected.address}
def locked(pages):  # the kernel's word: VmFlags "lo" on the buffer's mapping
    return _procfs.mapping_at(addresses[id(pages)]).locked
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    report = {"inherited_released": held.released, "child_before": locked(buffer)}
    own, own_other = lock_memory(buffer), lock_memory(other)
    report["child_locked"] = [locked(buffer), locked(other)]
    report["child_vmlck"] = _procfs.process_locked_bytes()
    held.release()
    del collected
    gc.collect()
    report["after_inherited_went"] = [locked(buffer), locked(other)]
    report["child_vmlck_after"] = _procfs.process_locked_bytes()
    try:
        own.release()
        own_other.release()
        report["own_release"] = "ok"
    except Exception as error:
        report["own_release"] = type(error).__name__
    report["after_own_release"] = [locked(buffer), locked(other)]
    os.write(write, json.dumps(report).encode())
    os._exit(0)
os.close(write)
with os.fdopen(read) as pipe:
    text = pipe.read()
_, status = os.waitpid(pid, 0)
child = json.loads(text) if text else {"child_failed": status}
child["parent_after"] = [locked(buffer), locked(other)]
held.release()
collected.release()
print(json.dumps(child))
"""


def test_handles_inherited_across_fork_are_inert_in_the_child() -> None:
    result = run_json(INHERITED_AFTER_FORK)
    assert result["inherited_released"], "the child never held the parent's lock"
    assert result["child_before"] is False  # locks are not inherited: the premise
    assert result["child_locked"] == [True, True]
    assert result["after_inherited_went"] == [True, True], (
        "releasing or collecting an inherited handle unlocked the child's own lock"
    )
    assert result["child_vmlck_after"] == result["child_vmlck"]
    assert result["child_vmlck"] >= 4 * mmap.PAGESIZE  # both buffers: 16 kB on 4 kB pages
    assert result["own_release"] == "ok"
    assert result["after_own_release"] == [False, False]
    assert result["parent_after"] == [True, True], "the parent keeps its lock"
