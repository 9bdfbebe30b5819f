"""A kernel whose mappings are a file: what a process left in its secrets outlives it.

A child process makes its arena with :class:`SharedFileKernel`: every region and
guarded mapping is a ``MAP_SHARED`` window onto one file, locked and advised like any
other securemem mapping (wipe-on-fork aside, which the kernel refuses for shared
memory). After the child is gone, killed by a signal or not, the parent reads the file
and sees exactly the bytes the child's secrets held when it died: the marker if
nothing wiped them, zeros if :func:`securemem.purge` ran.
"""

from __future__ import annotations

import ctypes
import mmap
import os

from securemem._kernel import Advice, NativeKernel, kernel_failure

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_MAP_FAILED = ctypes.c_void_p(-1).value


class SharedFileKernel(NativeKernel):
    """The real kernel, but every mapping is the next stretch of ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.offset = 0

    def map(self, length: int) -> int:
        os.ftruncate(self.fd, self.offset + length)
        address = _libc.mmap(
            None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, self.fd, self.offset
        )
        if address is None or address == _MAP_FAILED:
            raise kernel_failure("mmap", ctypes.get_errno(), length, self)
        self.offset += length
        return int(address)

    def advise(self, address: int, length: int, advice: Advice) -> bool:
        if advice == "wipeonfork":
            return False  # refused for shared mappings; these tests do not fork
        return super().advise(address, length, advice)
