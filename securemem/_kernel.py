"""The boundary between securemem and the operating system.

:class:`Kernel` is the small interface the arena needs (map, unmap, lock,
unlock, advise, protect, wipe, memlock limit); :class:`NativeKernel` is the
real one, a thin layer over the cffi shims. errno becomes a securemem exception
here and nowhere else. A simulated kernel (``securemem.testing``) implements
the same interface with the rules of other systems.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Literal, Protocol, runtime_checkable

from securemem import _procfs
from securemem._binding import ffi, lib
from securemem._errors import (
    AllocationError,
    KernelError,
    SecureMemoryError,
    errno_name,
    memory_lock_error,
)

Advice = Literal["dontdump", "wipeonfork", "dontfork"]
Protection = Literal["noaccess", "readonly", "readwrite"]

_ADVICE_CODES: dict[str, int] = {
    "dontdump": lib.SM_ADVICE_DONTDUMP,
    "wipeonfork": lib.SM_ADVICE_WIPEONFORK,
    "dontfork": lib.SM_ADVICE_DONTFORK,
}
_PROTECTION_CODES: dict[str, int] = {
    "noaccess": lib.SM_PROT_NONE,
    "readonly": lib.SM_PROT_READ,
    "readwrite": lib.SM_PROT_READWRITE,
}
_UNLIMITED = 2**64 - 1


@runtime_checkable
class Kernel(Protocol):
    """What the arena asks of an operating system. Addresses are ints."""

    @property
    def page_size(self) -> int:
        """Bytes in one page: the unit of mapping and locking."""

    @property
    def system(self) -> str:
        """Which rules this kernel follows: ``linux``, ``openbsd``, ``freebsd``, ..."""

    def map(self, length: int) -> int:
        """Map ``length`` bytes (a page multiple) of zeroed, readable, writable memory."""

    def unmap(self, address: int, length: int) -> None:
        """Return a mapping made by :meth:`map` to the system."""

    def lock(self, address: int, length: int) -> None:
        """Lock pages into RAM; raise :class:`MemoryLockError` when refused."""

    def unlock(self, address: int, length: int) -> None:
        """Undo :meth:`lock` (on POSIX one unlock undoes any number of locks)."""

    def advise(self, address: int, length: int, advice: Advice) -> bool:
        """Apply ``advice``; return False where the system has no such advice."""

    def protect(self, address: int, length: int, protection: Protection) -> None:
        """Change the access rights of whole pages."""

    def wipe(self, address: int, length: int) -> None:
        """Zero memory in a way the compiler cannot optimise away."""

    def memlock_limit(self) -> int | None:
        """The soft RLIMIT_MEMLOCK in bytes, or None when unlimited."""

    def locked_bytes(self) -> int | None:
        """Bytes this process has locked in total, where the system tells."""


@runtime_checkable
class AsyncLockKernel(Kernel, Protocol):
    """A kernel that can also queue a lock and report on it later (FreeBSD aio_mlock).

    Optional: the prefetcher uses it where :func:`supports_async_lock` says so,
    and a background thread elsewhere. The range and the request must stay
    untouched until the request is done (aio_mlock(2)).
    """

    @property
    def async_lock(self) -> bool:
        """True when :meth:`lock_async_start` works on this system."""

    def lock_async_start(self, address: int, length: int) -> object:
        """Queue a lock; return a request. KernelError EAGAIN: not queued, lock synchronously."""

    def lock_async_poll(self, request: object) -> int:
        """EINPROGRESS while queued, then 0 (locked) or the errno it failed with."""

    def lock_async_finish(self, request: object) -> None:
        """Collect a request that is no longer in progress; raise MemoryLockError if it failed."""

    def lock_async_cancel(self, request: object) -> bool:
        """Ask the kernel to drop a queued request: False if it is running and must be awaited."""


def supports_async_lock(kernel: Kernel) -> bool:
    """Whether ``kernel`` can queue locks (FreeBSD aio_mlock, or a simulation of it)."""
    return isinstance(kernel, AsyncLockKernel) and bool(kernel.async_lock)


def kernel_failure(call: str, number: int, length: int, kernel: Kernel) -> SecureMemoryError:
    """The securemem exception for a system call that failed with errno ``number``.

    The one place errno becomes an exception, shared by every kernel (native,
    simulated, fault-injecting) so that each raises exactly the same errors.
    """
    if call == "mlock":
        return memory_lock_error(number, length, kernel.locked_bytes(), kernel.memlock_limit())
    if call == "mmap":
        return AllocationError(
            f"could not map {length} bytes of memory: {errno_name(number)}. "
            "The system is out of address space or memory; free secrets or ask for less."
        )
    what = f"{call} of {length} bytes failed: {errno_name(number)} ({os.strerror(number)})."
    return KernelError(number, f"{what} {_WHAT_TO_DO.get(call, _REPORT)}")


def random_failure(number: int, wiped: bool = False) -> KernelError:
    """The error for the operating system's random source failing: ``SecureBytes.random``
    (no secret was made) or ``randomize`` (``wiped``: the secret is all zeros now)."""
    outcome = (
        "The secret was wiped (all zeros)" if wiped else "No secret was made; try again, and"
    )
    advice = "check" if wiped else "if it keeps failing check"
    return KernelError(
        number,
        f"the operating system's random source failed: {errno_name(number)} "
        f"({os.strerror(number)}). {outcome}{';' if wiped else ''} {advice} that the "
        "system's entropy source (getrandom, /dev/urandom) works inside this container "
        "or sandbox.",
    )


_REPORT = (
    "securemem did not expect this: please report it with the output of "
    "`python -m securemem doctor`."
)

# What a user can do about each call failing (mlock and mmap have their own errors).
_WHAT_TO_DO = {
    "mprotect": (
        "The kernel could not set up guard pages or change a guarded secret's protection; "
        "on Linux this usually means the process reached vm.max_map_count mappings: "
        "close guarded secrets you no longer need, or raise that sysctl."
    ),
    "madvise": (
        "The kernel refused to keep this memory out of core dumps or forked children, so "
        "securemem did not use it. Run `python -m securemem doctor` to see which "
        "protection this system lacks."
    ),
    "munlock": "The secret was wiped already; securemem keeps the page and tries again later.",
    "munmap": "The secret was wiped already; securemem keeps the mapping and tries again later.",
}


class NativeKernel:
    """The real operating system, through ``securemem._native``."""

    system = sys.platform

    def __init__(self) -> None:
        self.page_size = int(lib.sm_page_size())

    def map(self, length: int) -> int:
        pointer = lib.sm_map(length)
        if pointer == ffi.NULL:
            raise kernel_failure("mmap", ffi.errno, length, self)
        return int(ffi.cast("uintptr_t", pointer))

    def unmap(self, address: int, length: int) -> None:
        if lib.sm_unmap(ffi.cast("void *", address), length) != 0:
            raise kernel_failure("munmap", ffi.errno, length, self)

    def lock(self, address: int, length: int) -> None:
        if lib.sm_lock(ffi.cast("void *", address), length) != 0:
            raise kernel_failure("mlock", ffi.errno, length, self)

    def unlock(self, address: int, length: int) -> None:
        if lib.sm_unlock(ffi.cast("void *", address), length) != 0:
            raise kernel_failure("munlock", ffi.errno, length, self)

    def advise(self, address: int, length: int, advice: Advice) -> bool:
        if lib.sm_advise(ffi.cast("void *", address), length, _ADVICE_CODES[advice]) != 0:
            number = ffi.errno
            # The shim's own ENOSYS (advice not built in) or the kernel's EINVAL: no such
            # advice here. By name: ENOSYS is 38 on Linux but 78 on macOS and the BSDs.
            if number in (errno.ENOSYS, errno.EINVAL):
                return False
            raise kernel_failure(f"madvise({advice})", number, length, self)
        return True

    def protect(self, address: int, length: int, protection: Protection) -> None:
        code = _PROTECTION_CODES[protection]
        if lib.sm_protect(ffi.cast("void *", address), length, code) != 0:
            raise kernel_failure(f"mprotect({protection})", ffi.errno, length, self)

    def wipe(self, address: int, length: int) -> None:
        lib.sm_wipe_at(address, length)

    def memlock_limit(self) -> int | None:
        return memlock_limits()[0]

    def locked_bytes(self) -> int | None:
        return _procfs.process_locked_bytes()

    # aio_mlock(2): FreeBSD only; the shims fail with ENOSYS elsewhere.
    async_lock = bool(lib.HAVE_AIO_MLOCK)

    def lock_async_start(self, address: int, length: int) -> object:
        error = ffi.new("int *")
        request = lib.sm_aio_lock_start(ffi.cast("void *", address), length, error)
        if request == ffi.NULL:
            raise kernel_failure("aio_mlock", error[0], length, self)
        return request

    def lock_async_poll(self, request: object) -> int:
        return int(lib.sm_aio_lock_poll(request))

    def lock_async_finish(self, request: object) -> None:
        # The shim frees the iocb once the request is done: call it exactly once.
        number = int(lib.sm_aio_lock_finish(request))
        if number == errno.EINPROGRESS:
            raise KernelError(number, "aio_mlock request collected while still in progress")
        if number:
            raise kernel_failure("mlock", number, 0, self)

    def lock_async_cancel(self, request: object) -> bool:
        result = int(lib.sm_aio_lock_cancel(request))
        return result in (0, 2)  # cancelled, or already done; 1: still running


def memlock_limits() -> tuple[int | None, int | None]:
    """The (soft, hard) RLIMIT_MEMLOCK of this process in bytes; None is unlimited."""
    soft = ffi.new("uint64_t *")
    hard = ffi.new("uint64_t *")
    if lib.sm_memlock_limit(soft, hard) != 0:
        return None, None
    return (
        None if soft[0] == _UNLIMITED else int(soft[0]),
        None if hard[0] == _UNLIMITED else int(hard[0]),
    )


def physical_memory() -> int:
    """Bytes of RAM in the machine, 0 where the system does not tell."""
    return int(lib.sm_physical_memory())


def map_region(kernel: Kernel, length: int) -> tuple[int, bool]:
    """Map a region the way every securemem region is prepared; return (base, wiped on fork).

    A PROT_NONE guard page at each end catches linear overruns out of the
    region; the whole mapping stays out of core dumps and reads as zeros in a
    forked child. The second value is False where the kernel has no
    wipe-on-fork: a forked child must then wipe the region itself.
    """
    size = kernel.page_size
    base = kernel.map(length)
    try:
        kernel.protect(base, size, "noaccess")
        kernel.protect(base + length - size, size, "noaccess")
        kernel.advise(base, length, "dontdump")
        wiped_on_fork = kernel.advise(base, length, "wipeonfork")
    except BaseException:
        kernel.unmap(base, length)
        raise
    return base, wiped_on_fork
