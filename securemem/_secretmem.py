"""The memfd_secret backend (Linux 5.14+): pages the kernel itself cannot see.

``Arena(backend="secretmem")`` maps its regions from ``memfd_secret(2)``: the
pages are removed from the kernel's direct map, so neither another process
(``/proc/PID/mem``, ``process_vm_readv``, ptrace peeks, even as root) nor most
kernel code paths can read them. The kernel locks such pages itself, charges
the whole mapping against RLIMIT_MEMLOCK when it is made, and never writes it
to a core dump.

What differs from the anonymous backend, and how this kernel hides it from the
arena:

* ``mlock`` is refused (the pages cannot be faulted in through the usual path)
  and pointless (they are locked already): :meth:`lock` and :meth:`unlock` do
  nothing.
* A memfd_secret mapping is shared, and ``MADV_WIPEONFORK`` applies to private
  memory only. The equivalent protection is ``MADV_DONTFORK``: a child gets no
  mapping at all. :meth:`advise` applies it when asked for ``"wipeonfork"``.
* A region the memlock limit cannot hold fails at map time, as a
  :class:`MemoryLockError`, whatever the arena's ``on_lock_failure``: there is no
  unlocked memfd_secret memory to fall back to.
* While any such page exists the system cannot hibernate (see SECURITY.md).
"""

from __future__ import annotations

import errno

from securemem._binding import ffi, lib
from securemem._errors import KernelError, MemoryLockError, SecureMemoryError, errno_name
from securemem._kernel import Advice, Kernel, NativeKernel, kernel_failure

REQUIREMENT = (
    "memfd_secret needs Linux 5.14 or later built with CONFIG_SECRETMEM, and on "
    "Linux 5.16 to 6.4 the boot parameter secretmem.enable=1"
)

_available: tuple[bool, str] | None = None


def secretmem_available() -> tuple[bool, str]:
    """(available, why not) for memfd_secret on this system; probed once per process."""
    global _available
    if _available is None:
        _available = _probe()
    return _available


def _probe() -> tuple[bool, str]:
    if not lib.HAVE_MEMFD_SECRET:
        return False, f"this build of securemem has no memfd_secret: {REQUIREMENT}"
    page = int(lib.sm_page_size())
    pointer = lib.sm_map_secret(page)
    if pointer == ffi.NULL:
        number = ffi.errno
        if number in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            name = errno_name(number)
            return False, f"memfd_secret is not available here ({name}): {REQUIREMENT}"
        # The call exists but the mapping was refused (the memlock limit, most
        # likely): the backend is there, it just cannot hold much.
        return True, ""
    lib.sm_unmap(pointer, page)
    return True, ""


def map_failure(number: int, length: int, kernel: Kernel) -> SecureMemoryError:
    """The error for a memfd_secret mapping refused with errno ``number``.

    Shared by :meth:`SecretMemKernel.map` and the native core, which maps an arena's
    regions itself (securemem/_c/core/kernel.c) and asks here only when it fails.
    """
    if number in (errno.EAGAIN, errno.ENOMEM, errno.EPERM):
        # memfd_secret pages are locked at map time: this is a lock failure.
        error = kernel_failure("mlock", number, length, kernel)
        return MemoryLockError(
            number,
            f"{error.args[1]} A memfd_secret region is locked whole when it is "
            f"mapped ({length} bytes here): under a small limit give the arena "
            "smaller regions, e.g. Arena(backend='secretmem', region_pages=4).",
        )
    return kernel_failure("mmap", number, length, kernel)


class SecretMemKernel(NativeKernel):
    """The real kernel, with regions from memfd_secret instead of anonymous memory."""

    def __init__(self) -> None:
        super().__init__()
        available, reason = secretmem_available()
        if not available:
            raise KernelError(
                errno.ENOSYS,
                f"Arena(backend='secretmem') is not possible: {reason}. Use the default "
                "backend (locked, not dumped, wiped on fork) on this system.",
            )

    def map(self, length: int) -> int:
        pointer = lib.sm_map_secret(length)
        if pointer == ffi.NULL:
            raise map_failure(ffi.errno, length, self)
        return int(ffi.cast("uintptr_t", pointer))

    def lock(self, address: int, length: int) -> None:
        """Nothing to do: the kernel locked the pages when they were mapped."""

    def unlock(self, address: int, length: int) -> None:
        """Nothing to do: memfd_secret pages stay locked until unmapped."""

    def advise(self, address: int, length: int, advice: Advice) -> bool:
        # Shared memory cannot be wiped on fork; not inheriting it is the equivalent.
        return super().advise(address, length, "dontfork" if advice == "wipeonfork" else advice)
