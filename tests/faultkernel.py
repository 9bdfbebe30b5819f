"""The real kernel, except that one chosen system call fails with a chosen errno.

Every other call goes to the operating system, so after a fault the tests can
still ask the kernel itself (smaps, VmLck, /proc/self/maps) what state the
arena left behind.
"""

from __future__ import annotations

import errno
from collections import Counter, defaultdict

from securemem._kernel import Advice, NativeKernel, Protection, kernel_failure

# The errors each manual lists for each call (POSIX mlock(3P), mmap, munmap,
# madvise, mprotect; Linux adds EAGAIN for mlock and madvise).
MANUAL_ERRNOS: dict[str, tuple[int, ...]] = {
    "mmap": (errno.ENOMEM, errno.EAGAIN, errno.EINVAL),
    "munmap": (errno.EINVAL, errno.ENOMEM),
    "mlock": (errno.ENOMEM, errno.EAGAIN, errno.EPERM, errno.EINVAL),
    "munlock": (errno.ENOMEM, errno.EINVAL, errno.EPERM),
    "madvise": (errno.ENOMEM, errno.EAGAIN, errno.EINVAL),
    "mprotect": (errno.ENOMEM, errno.EACCES, errno.EINVAL),
}


class FaultInjectingKernel(NativeKernel):
    """Counts calls by name (and logs their lengths); the ``fail_at``-th call of ``fail_call``
    fails with ``number``."""

    def __init__(self, fail_call: str | None = None, fail_at: int = 0, number: int = 0) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.lengths: defaultdict[str, list[int]] = defaultdict(list)  # each call's length
        self.fail_call, self.fail_at, self.number = fail_call, fail_at, number
        self.injected = False
        self.injected_in_child = False  # a forked child failed the call (it reports back)
        self.mapped: dict[int, int] = {}  # what the real kernel has mapped for us now

    def _tick(self, call: str, length: int) -> None:
        self.calls[call] += 1
        self.lengths[call].append(length)
        if call == self.fail_call and self.calls[call] == self.fail_at:
            self.injected = True
            raise kernel_failure(call, self.number, length, self)

    def map(self, length: int) -> int:
        self._tick("mmap", length)
        address = super().map(length)
        self.mapped[address] = length
        return address

    def unmap(self, address: int, length: int) -> None:
        self._tick("munmap", length)
        super().unmap(address, length)
        del self.mapped[address]

    def lock(self, address: int, length: int) -> None:
        self._tick("mlock", length)
        super().lock(address, length)

    def unlock(self, address: int, length: int) -> None:
        self._tick("munlock", length)
        super().unlock(address, length)

    def advise(self, address: int, length: int, advice: Advice) -> bool:
        try:
            self._tick("madvise", length)
        except OSError as error:
            if error.errno == errno.EINVAL:  # as NativeKernel: "no such advice here"
                return False
            raise
        return super().advise(address, length, advice)

    def protect(self, address: int, length: int, protection: Protection) -> None:
        self._tick("mprotect", length)
        super().protect(address, length, protection)
