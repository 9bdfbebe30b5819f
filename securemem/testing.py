"""Test helpers for code that uses securemem: a kernel that follows another system's manual.

:class:`SimulatedKernel` implements the kernel interface the arena uses
(``securemem._kernel.Kernel``) with the locking rules of POSIX, Linux, OpenBSD,
FreeBSD or QNX, as their manuals state them (the manuals securemem is built
from). Its pages are backed by real, unlocked memory, so an
``Arena(kernel=SimulatedKernel(...))`` and the ``SecureBytes`` allocated from
it work exactly as on the real kernel; only the *locking* is simulated. That
lets you run your own code under a 64 KiB memlock limit, without superuser, or
under OpenBSD's nesting ``mlock``, on any Linux machine and without root.

What each system does (and what this simulation does):

=========  ========  ===============  =====================  ==============
system     nesting   unaligned addr   over the limit         privilege
=========  ========  ===============  =====================  ==============
linux      no        rounded down     ENOMEM (EPERM if 0)    superuser: no limit
posix      no        EINVAL           ENOMEM                 not required
openbsd    yes       EINVAL           EAGAIN                 not required
freebsd    no        rounded down     ENOMEM; ``aio_mlock``  not required
qnx        no        EINVAL           ENOMEM                 superuser (EPERM)
=========  ========  ===============  =====================  ==============

POSIX allows an implementation to refuse an unaligned address; the ``posix``
simulation does refuse it (the strictest reading), so code that passes it
passes everywhere. ``munmap`` drops the locks of the pages it unmaps, on every
system. Memory the simulated kernel did not map itself (a ``bytearray`` given
to :func:`securemem.lock_memory`) counts as mapped when the process really has
it mapped (``/proc/self/maps``).
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import threading
from dataclasses import dataclass
from typing import Literal

from securemem import _procfs
from securemem._binding import ffi
from securemem._errors import KernelError, SecureMemoryError, errno_name
from securemem._hardening import holds_cap_ipc_lock
from securemem._kernel import Advice, NativeKernel, Protection, kernel_failure
from securemem._pagelocks import coalesce_runs

__all__ = ["SYSTEMS", "AioRequest", "SimulatedCall", "SimulatedKernel", "unprivileged_command"]

System = Literal["linux", "posix", "openbsd", "freebsd", "qnx"]
SYSTEMS: tuple[System, ...] = ("linux", "posix", "openbsd", "freebsd", "qnx")

# The advice each system can give, and how: Linux madvise; FreeBSD MAP_NOCORE
# and minherit(INHERIT_ZERO/NONE); OpenBSD MAP_CONCEAL and minherit. Plain
# POSIX and QNX have none of them.
_ADVICE: dict[str, frozenset[str]] = {
    "linux": frozenset({"dontdump", "wipeonfork", "dontfork"}),
    "freebsd": frozenset({"dontdump", "wipeonfork", "dontfork"}),
    "openbsd": frozenset({"dontdump", "wipeonfork", "dontfork"}),
    "posix": frozenset(),
    "qnx": frozenset(),
}


@dataclass(frozen=True)
class SimulatedCall:
    """One system call the simulated kernel received. ``errno`` is 0 on success."""

    name: str
    address: int
    length: int
    errno: int


class AioRequest:
    """One queued ``aio_mlock`` (FreeBSD): the simulated iocb.

    ``state`` is ``"queued"`` until the kernel completes, fails or cancels it;
    ``error`` is then what ``aio_error`` reports (0, an mlock errno, ECANCELED).
    """

    __slots__ = ("address", "error", "fingerprint", "length", "polls", "returned", "state")

    def __init__(self, address: int, length: int, fingerprint: bytes) -> None:
        self.address: int = address
        self.length: int = length
        self.fingerprint: bytes = fingerprint  # the range's content at enqueue
        self.state: Literal["queued", "done"] = "queued"
        self.error: int = errno.EINPROGRESS
        self.polls: int = 0
        self.returned: bool = False  # aio_return was called: the iocb is spent

    def __repr__(self) -> str:
        return (
            f"<AioRequest {self.address:#x}+{self.length} {self.state} "
            f"{errno_name(self.error) if self.error else 'ok'}>"
        )


class _Backing:
    """Real memory behind one simulated mapping."""

    __slots__ = ("pages", "real_base", "real_length")

    def __init__(self, real_base: int, real_length: int, pages: set[int]) -> None:
        self.real_base = real_base
        self.real_length = real_length
        self.pages = pages  # simulated pages of this backing still mapped


class SimulatedKernel:
    """A kernel with the locking rules of ``system``, on real but never-locked memory.

    ``memlock_limit`` is RLIMIT_MEMLOCK in bytes (None: unlimited);
    ``superuser`` says whether the process is privileged (Linux: the limit does
    not apply; QNX: locking is allowed at all).

    Inspect it with :meth:`locked_pages` ({page: nest depth}),
    :meth:`mapped_ranges`, :attr:`calls` (every call, with its errno) and, on
    FreeBSD, the ``aio_mlock`` queue (:meth:`aio_requests`). Drive that queue
    with :meth:`aio_complete`, :meth:`aio_fail` and :meth:`aio_refuse`, or set
    :attr:`aio_complete_after_polls` to let requests complete by themselves
    after that many ``aio_error`` polls. A write to a range whose lock is still
    queued breaks the manual's rules: it is recorded in :attr:`violations`.
    """

    def __init__(
        self,
        system: str,
        *,
        page_size: int = 4096,
        memlock_limit: int | None = None,
        superuser: bool = False,
    ) -> None:
        if system not in SYSTEMS:
            raise ValueError(f"system must be one of {', '.join(SYSTEMS)}; got {system!r}")
        self._real = NativeKernel()
        real_page = self._real.page_size
        if page_size < real_page or page_size % real_page or page_size & (page_size - 1):
            raise ValueError(
                f"page_size must be a power of two and a multiple of this machine's "
                f"{real_page}-byte page (the simulated pages are backed by real ones); "
                f"got {page_size}"
            )
        if memlock_limit is not None and memlock_limit < 0:
            raise ValueError(f"memlock_limit cannot be negative, got {memlock_limit}")
        self._system: System = system
        self._page_size = page_size
        self._limit = memlock_limit
        self.superuser = superuser
        self._mutex = threading.RLock()  # the prefetch thread calls in too
        self._mapped: set[int] = set()
        self._backings: dict[int, _Backing] = {}
        self._depth: dict[int, int] = {}
        self._advice: dict[int, set[str]] = {}
        self.calls: list[SimulatedCall] = []
        """Every call received, in order, with its errno (0 on success)."""
        self._requests: list[AioRequest] = []
        self._refuse = 0
        self.aio_complete_after_polls: int | None = None
        """None: queued locks complete only through the hooks; n: after n polls."""
        self.violations: list[str] = []
        """Breaches of the manual by the caller (e.g. writing to a range being locked)."""

    # -- the Kernel interface -------------------------------------------------

    @property
    def page_size(self) -> int:
        return self._page_size

    @property
    def system(self) -> str:
        return self._system

    def _log(self, name: str, address: int, length: int, number: int = 0) -> None:
        self.calls.append(SimulatedCall(name, address, length, number))

    def _fail(self, name: str, address: int, length: int, number: int) -> SecureMemoryError:
        self._log(name, address, length, number)
        return kernel_failure(name, number, length, self)

    def _pages(self, address: int, length: int) -> range:
        size = self._page_size
        first = address - address % size
        return range(first, address + length, size) if length > 0 else range(0)

    def _aligned_required(self) -> bool:
        return self._system in ("posix", "openbsd", "qnx")

    def _is_mapped(self, pages: range) -> bool:
        foreign = [page for page in pages if page not in self._mapped]
        if not foreign:
            return True
        real = _procfs.address_ranges()
        if real is None:
            return True  # no way to tell: assume the caller's memory exists
        size = self._page_size
        return all(
            any(start <= page and page + size <= end for start, end in real) for page in foreign
        )

    def map(self, length: int) -> int:
        with self._mutex:
            size = self._page_size
            if length <= 0:
                raise self._fail("mmap", 0, length, errno.EINVAL)
            length = -(-length // size) * size
            # Over-map by one simulated page less one real page, so a simulated
            # page larger than the real one can be aligned inside.
            slack = size - self._real.page_size
            real_base = self._real.map(length + slack)
            base = -(-real_base // size) * size
            # Test secrets are still secrets: keep them out of core dumps for real.
            self._real.advise(real_base, length + slack, "dontdump")
            pages = set(range(base, base + length, size))
            self._backings[base] = _Backing(real_base, length + slack, pages)
            self._mapped.update(pages)
            self._log("mmap", base, length)
            return base

    def unmap(self, address: int, length: int) -> None:
        with self._mutex:
            if address % self._page_size or length <= 0:
                raise self._fail("munmap", address, length, errno.EINVAL)
            pages = self._pages(address, length)
            self._check_pending_overlap("munmap", pages)
            for page in pages:  # munmap removes locks too (POSIX, OpenBSD)
                self._depth.pop(page, None)
                self._advice.pop(page, None)
                self._mapped.discard(page)
            for base, backing in list(self._backings.items()):
                backing.pages.difference_update(pages)
                if not backing.pages:
                    del self._backings[base]
                    self._real.unmap(backing.real_base, backing.real_length)
            self._log("munmap", address, length)

    def lock(self, address: int, length: int) -> None:
        with self._mutex:
            number = self._lock_error(address, length)
            if number:
                raise self._fail("mlock", address, length, number)
            self._apply_lock(self._pages(address, length))
            self._log("mlock", address, length)

    def _lock_error(self, address: int, length: int) -> int:
        """The errno mlock(address, length) fails with on this system, 0 if it succeeds."""
        if self._system == "qnx" and not self.superuser:
            return errno.EPERM
        if address % self._page_size and self._aligned_required():
            return errno.EINVAL
        if length < 0:
            return errno.EINVAL
        pages = self._pages(address, length)
        if not self._is_mapped(pages):
            return errno.ENOMEM
        if self._system == "linux" and self.superuser:
            return 0  # CAP_IPC_LOCK: RLIMIT_MEMLOCK does not apply
        if self._limit is not None:
            if self._system == "linux" and self._limit == 0:
                return errno.EPERM  # Linux 2.6.9+: unprivileged and a zero limit
            fresh = sum(1 for page in pages if page not in self._depth)
            if (len(self._depth) + fresh) * self._page_size > self._limit:
                return errno.EAGAIN if self._system == "openbsd" else errno.ENOMEM
        return 0

    def _apply_lock(self, pages: range) -> None:
        nests = self._system == "openbsd"
        for page in pages:
            self._depth[page] = self._depth.get(page, 0) + 1 if nests else 1

    def unlock(self, address: int, length: int) -> None:
        with self._mutex:
            if address % self._page_size and self._aligned_required():
                raise self._fail("munlock", address, length, errno.EINVAL)
            pages = self._pages(address, length)
            if not self._is_mapped(pages):
                raise self._fail("munlock", address, length, errno.ENOMEM)
            if self._system == "openbsd":
                # Nests: every page must be locked, and loses one level (all or nothing).
                if any(page not in self._depth for page in pages):
                    raise self._fail("munlock", address, length, errno.ENOMEM)
                for page in pages:
                    depth = self._depth[page] - 1
                    if depth:
                        self._depth[page] = depth
                    else:
                        del self._depth[page]
            else:
                # POSIX: unlocked however many times mlock was called.
                for page in pages:
                    self._depth.pop(page, None)
            self._log("munlock", address, length)

    def advise(self, address: int, length: int, advice: Advice) -> bool:
        with self._mutex:
            if advice not in _ADVICE[self._system]:
                self._log(f"madvise({advice})", address, length, errno.EINVAL)
                return False
            if address % self._page_size:
                raise self._fail(f"madvise({advice})", address, length, errno.EINVAL)
            for page in self._pages(address, length):
                self._advice.setdefault(page, set()).add(advice)
            self._log(f"madvise({advice})", address, length)
            return True

    def protect(self, address: int, length: int, protection: Protection) -> None:
        with self._mutex:
            pages = self._pages(address, length)
            if address % self._page_size:
                raise self._fail(f"mprotect({protection})", address, length, errno.EINVAL)
            if any(page not in self._mapped for page in pages):
                raise self._fail(f"mprotect({protection})", address, length, errno.ENOMEM)
            self._check_pending_overlap("mprotect", pages)
            # Really applied: a guard page must fault here as it would there.
            self._real.protect(address, len(pages) * self._page_size, protection)
            self._log(f"mprotect({protection})", address, length)

    def wipe(self, address: int, length: int) -> None:
        self._real.wipe(address, length)

    def memlock_limit(self) -> int | None:
        return self._limit

    def locked_bytes(self) -> int | None:
        with self._mutex:
            return len(self._depth) * self._page_size

    # -- asynchronous lock (FreeBSD aio_mlock) --------------------------------

    @property
    def async_lock(self) -> bool:
        """True on FreeBSD: :meth:`lock_async_start` and friends work."""
        return self._system == "freebsd"

    def _fingerprint(self, address: int, length: int) -> bytes:
        data = ffi.buffer(ffi.cast("char *", address), length)
        return hashlib.sha256(data).digest()

    def lock_async_start(self, address: int, length: int) -> AioRequest:
        """aio_mlock: queue a lock of the range and return at once."""
        with self._mutex:
            if not self.async_lock:
                self._log("aio_mlock", address, length, errno.ENOSYS)
                raise KernelError(errno.ENOSYS, f"aio_mlock does not exist on {self._system}")
            if self._refuse:
                self._refuse -= 1
                self._log("aio_mlock", address, length, errno.EAGAIN)
                raise KernelError(
                    errno.EAGAIN, "aio_mlock could not queue the request: EAGAIN (aio limits)"
                )
            request = AioRequest(address, length, self._fingerprint(address, length))
            self._requests.append(request)
            self._log("aio_mlock", address, length)
            return request

    def lock_async_poll(self, request: object) -> int:
        """aio_error: EINPROGRESS while queued, then 0 or the errno it failed with."""
        with self._mutex:
            assert isinstance(request, AioRequest)
            if request.state == "queued":
                request.polls += 1
                after = self.aio_complete_after_polls
                if after is not None and request.polls >= after:
                    self._complete(request)
            self._log("aio_error", request.address, request.length, request.error)
            return request.error

    def lock_async_finish(self, request: object) -> None:
        """aio_return: collect the result once; raise the mlock error it failed with."""
        with self._mutex:
            assert isinstance(request, AioRequest)
            if request.state == "queued" or request.returned:
                self.violations.append(f"aio_return on {request!r}: not done or already returned")
                raise KernelError(errno.EINVAL, "aio_return on a request not ready to return")
            request.returned = True
            self._log("aio_return", request.address, request.length, request.error)
            if request.error:
                raise kernel_failure("mlock", request.error, request.length, self)

    def lock_async_cancel(self, request: object) -> bool:
        """aio_cancel: True when the request will not lock (cancelled or done), else False."""
        with self._mutex:
            assert isinstance(request, AioRequest)
            if request.state == "queued":
                self._check_unchanged(request)
                request.state, request.error = "done", errno.ECANCELED
                self._requests.remove(request)
            self._log("aio_cancel", request.address, request.length)
            return True

    # -- hooks for tests ------------------------------------------------------

    def aio_requests(self) -> list[AioRequest]:
        """The aio_mlock requests still queued, oldest first."""
        with self._mutex:
            return list(self._requests)

    def aio_complete(self, request: AioRequest | None = None) -> None:
        """Let one queued request (default: every one) run its mlock now."""
        with self._mutex:
            for item in [request] if request is not None else list(self._requests):
                self._complete(item)

    def aio_fail(self, request: AioRequest | None = None, number: int = errno.ENOMEM) -> None:
        """Make one queued request (default: every one) fail with ``number``."""
        with self._mutex:
            for item in [request] if request is not None else list(self._requests):
                if item.state == "queued":
                    self._check_unchanged(item)
                    item.state, item.error = "done", number
                    self._requests.remove(item)

    def aio_refuse(self, count: int = 1) -> None:
        """The next ``count`` aio_mlock calls fail with EAGAIN (aio(4) limits reached)."""
        with self._mutex:
            self._refuse = count

    def _complete(self, request: AioRequest) -> None:
        if request.state != "queued":
            return
        self._check_unchanged(request)
        number = self._lock_error(request.address, request.length)
        if not number:
            self._apply_lock(self._pages(request.address, request.length))
        request.state, request.error = "done", number
        self._requests.remove(request)

    def _check_unchanged(self, request: AioRequest) -> None:
        if request.address in self._mapped and request.fingerprint != self._fingerprint(
            request.address, request.length
        ):
            self.violations.append(f"{request!r}: its range was written while the lock was queued")

    def _check_pending_overlap(self, call: str, pages: range) -> None:
        wanted = set(pages)
        for request in self._requests:
            if wanted.intersection(self._pages(request.address, request.length)):
                self.violations.append(f"{call} of a range whose lock is still queued: {request!r}")

    # -- inspection -----------------------------------------------------------

    def locked_pages(self) -> dict[int, int]:
        """{page address: nest depth} of every locked page (depth 1 where locks do not nest)."""
        with self._mutex:
            return dict(self._depth)

    def mapped_ranges(self) -> list[tuple[int, int]]:
        """(address, length) of every run of mapped pages, ascending."""
        with self._mutex:
            return coalesce_runs(sorted(self._mapped), self._page_size)

    def advice(self, page: int) -> frozenset[str]:
        """The advice given for the page that holds ``page``."""
        with self._mutex:
            return frozenset(self._advice.get(page - page % self._page_size, ()))

    def calls_named(self, name: str) -> list[SimulatedCall]:
        """The logged calls with this name (``mlock``, ``munlock``, ``aio_mlock``, ...)."""
        with self._mutex:
            return [call for call in self.calls if call.name == name]

    def __repr__(self) -> str:
        limit = "unlimited" if self._limit is None else f"{self._limit} bytes"
        return (
            f"<SimulatedKernel {self._system} page_size={self._page_size} "
            f"memlock_limit={limit} superuser={self.superuser}>"
        )


def unprivileged_command(memlock: int) -> list[str]:
    """A command prefix that runs a program as ordinary users run it.

    The program gets an RLIMIT_MEMLOCK of ``memlock`` bytes (soft and hard, via
    ``prlimit``) and, when this process holds CAP_IPC_LOCK (root does), runs
    without it (via ``capsh``), so the limit really applies. Use it to test your
    own code under a 64 KiB or 8 MiB limit::

        subprocess.run([*unprivileged_command(65536), sys.executable, "app.py"])
    """
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise RuntimeError("unprivileged_command needs prlimit: install util-linux")
    limited = [prlimit, f"--memlock={memlock}:{memlock}"]
    if not holds_cap_ipc_lock():
        return limited
    capsh = shutil.which("capsh")
    if capsh is None:
        raise RuntimeError(
            "unprivileged_command needs capsh to drop CAP_IPC_LOCK: install libcap2-bin"
        )
    return [capsh, "--drop=cap_ipc_lock", "--", "-c", 'exec "$0" "$@"', *limited]
