"""The boundary between securemem and the operating system.

:class:`Kernel` is the small interface the arena needs (map, unmap, lock,
unlock, advise, protect, wipe, memlock limit); :class:`NativeKernel` is the
real one, a thin layer over the cffi shims. errno becomes a securemem exception
here and nowhere else. A simulated kernel (``securemem.testing``) implements
the same interface with the rules of other systems.
"""

from __future__ import annotations

import sys
from typing import Literal, Protocol, runtime_checkable

from securemem import _procfs
from securemem._errors import (
    AllocationError,
    KernelError,
    SecureMemoryError,
    errno_name,
    memory_lock_error,
)
from securemem._native import ffi, lib

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
    return KernelError(number, f"{call} of {length} bytes failed: {errno_name(number)}")


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
            if number in (38, 22):  # ENOSYS, EINVAL: the kernel has no such advice
                return False
            raise kernel_failure(f"madvise({advice})", number, length, self)
        return True

    def protect(self, address: int, length: int, protection: Protection) -> None:
        code = _PROTECTION_CODES[protection]
        if lib.sm_protect(ffi.cast("void *", address), length, code) != 0:
            raise kernel_failure(f"mprotect({protection})", ffi.errno, length, self)

    def wipe(self, address: int, length: int) -> None:
        lib.sm_wipe(ffi.cast("void *", address), length)

    def memlock_limit(self) -> int | None:
        return memlock_limits()[0]

    def locked_bytes(self) -> int | None:
        return _procfs.process_locked_bytes()


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
