"""The allocators under comparison, each reached from Python through cffi.

Every system is driven the same way: a cffi call per native function (ABI mode,
``ffi.dlopen`` of the system library), so the Python-to-C crossing costs the
same for each and the differences left are the allocators' own. securemem is
itself a cffi (API mode) extension; ``bytearray`` is the unprotected floor.

A system offers ``alloc(size) -> handle`` and ``free(handle, size)``: one
round trip is ``free(alloc(size), size)``. Handles are whatever the system
gives back (a cffi pointer, a SecureBytes, a bytearray).
"""

from __future__ import annotations

import ctypes.util
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from time import thread_time_ns
from typing import Any

import cffi

from securemem import Arena, SecureBytes

# Names tried in order: the runtime package's soname first (Debian's libsodium23 and
# libssl3 ship only those), then whatever the linker cache knows.
SODIUM_NAMES = ("libsodium.so.23", "libsodium.so.26", "libsodium.so")
CRYPTO_NAMES = ("libcrypto.so.3", "libcrypto.so")

_SODIUM_CDEF = """
int sodium_init(void);
const char *sodium_version_string(void);
void *sodium_malloc(size_t size);
void sodium_free(void *ptr);
void sodium_memzero(void *pnt, size_t len);
"""

# CRYPTO_secure_malloc and friends are macros over these functions in the
# headers; the functions take the caller's file and line for error reporting.
_CRYPTO_CDEF = """
int CRYPTO_secure_malloc_init(size_t size, size_t minsize);
int CRYPTO_secure_malloc_initialized(void);
int CRYPTO_secure_malloc_done(void);
void *CRYPTO_secure_malloc(size_t num, const char *file, int line);
void CRYPTO_secure_clear_free(void *ptr, size_t num, const char *file, int line);
int CRYPTO_secure_allocated(const void *ptr);
size_t CRYPTO_secure_used(void);
const char *OpenSSL_version(int type);
"""

_LIBC_CDEF = """
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
int munmap(void *addr, size_t length);
int mlock(const void *addr, size_t len);
int munlock(const void *addr, size_t len);
void *memset(void *s, int c, size_t n);
void explicit_bzero(void *s, size_t n);
"""

PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
PAGE = os.sysconf("SC_PAGESIZE")


class MissingLibrary(RuntimeError):
    """A comparison library is not installed."""


def _open(ffi: cffi.FFI, names: tuple[str, ...], package: str) -> Any:
    tried = list(names)
    found = ctypes.util.find_library(names[-1].removeprefix("lib").split(".so")[0])
    if found:
        tried.append(found)
    for name in tried:
        try:
            return ffi.dlopen(name)
        except OSError:
            continue
    raise MissingLibrary(
        f"none of {', '.join(tried)} could be loaded: install the Debian package {package} "
        f"(apt-get install {package})"
    )


def _library(
    cdef: str, names: tuple[str, ...] | None = None, package: str = ""
) -> tuple[cffi.FFI, Any]:
    """(ffi, lib) for the library declared by ``cdef``: the first of ``names``, or libc."""
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi, (ffi.dlopen(None) if names is None else _open(ffi, names, package))


@functools.cache
def sodium() -> tuple[cffi.FFI, Any]:
    """(ffi, lib) for the system libsodium, after ``sodium_init``."""
    ffi, lib = _library(_SODIUM_CDEF, SODIUM_NAMES, "libsodium23")
    if lib.sodium_init() < 0:
        raise RuntimeError("sodium_init() failed")
    return ffi, lib


@functools.cache
def crypto() -> tuple[cffi.FFI, Any]:
    """(ffi, lib) for the system libcrypto (OpenSSL 3). The secure heap is not set up here."""
    return _library(_CRYPTO_CDEF, CRYPTO_NAMES, "libssl3")


@functools.cache
def libc() -> tuple[cffi.FFI, Any]:
    """(ffi, lib) for the C library, for the naive allocator and memset."""
    return _library(_LIBC_CDEF)


def secure_heap_init(size: int, minsize: int = 16) -> int:
    """Set up OpenSSL's secure heap of ``size`` bytes (a power of two).

    Returns OpenSSL's answer: 1 built and locked, 2 built but the mlock failed
    (the heap works, unlocked), 0 failed. Only one heap per process; an
    existing, empty one is torn down first.
    """
    _, lib = crypto()
    if lib.CRYPTO_secure_malloc_initialized():
        lib.CRYPTO_secure_malloc_done()
    return int(lib.CRYPTO_secure_malloc_init(size, minsize))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def versions() -> dict[str, str]:
    """Version strings of the comparison libraries that load."""
    found: dict[str, str] = {}
    try:
        ffi, lib = sodium()
        found["libsodium"] = _text(ffi.string(lib.sodium_version_string()))
    except MissingLibrary as error:
        found["libsodium"] = f"missing: {error}"
    try:
        ffi, lib = crypto()
        found["openssl"] = _text(ffi.string(lib.OpenSSL_version(0)))
    except MissingLibrary as error:
        found["openssl"] = f"missing: {error}"
    return found


@dataclass
class System:
    """One allocator: how to make and release a secret of ``size`` bytes.

    ``loop(size, n)`` runs ``n`` round trips in the tightest Python each system
    allows (names bound locally, no wrapper function per call) and returns the
    CPU time they took in ns; ``alloc``/``free`` are for workloads that hold secrets.

    CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID: user plus kernel
    time, so system calls and page faults count) rather than wall time: other
    processes taking the CPU away do not count, which makes the numbers
    several times steadier on a shared machine.
    """

    name: str
    alloc: Callable[[int], Any]
    free: Callable[[Any, int], None]
    loop: Callable[[int, int], int]


def securemem_system(arena: Arena | None = None) -> System:
    def alloc(size: int) -> SecureBytes:
        return SecureBytes(size, arena=arena)

    def free(handle: SecureBytes, size: int) -> None:
        handle.close()

    def loop(size: int, n: int) -> int:
        make = SecureBytes
        if arena is None:
            start = thread_time_ns()
            for _ in repeat(None, n):
                make(size).close()
            return thread_time_ns() - start
        start = thread_time_ns()
        for _ in repeat(None, n):
            make(size, arena=arena).close()
        return thread_time_ns() - start

    return System("securemem", alloc, free, loop)


def sodium_system() -> System:
    _, lib = sodium()
    sodium_malloc = lib.sodium_malloc
    sodium_free = lib.sodium_free

    def free(handle: Any, size: int) -> None:
        sodium_free(handle)

    def loop(size: int, n: int) -> int:
        start = thread_time_ns()
        for _ in repeat(None, n):
            sodium_free(sodium_malloc(size))
        return thread_time_ns() - start

    return System("libsodium", sodium_malloc, free, loop)


def openssl_system() -> System:
    """The secure heap must have been set up (:func:`secure_heap_init`) before use."""
    ffi, lib = crypto()
    null = ffi.NULL
    secure_malloc = lib.CRYPTO_secure_malloc
    clear_free = lib.CRYPTO_secure_clear_free

    def alloc(size: int) -> Any:
        return secure_malloc(size, null, 0)

    def free(handle: Any, size: int) -> None:
        clear_free(handle, size, null, 0)

    def loop(size: int, n: int) -> int:
        start = thread_time_ns()
        for _ in repeat(None, n):
            clear_free(secure_malloc(size, null, 0), size, null, 0)
        return thread_time_ns() - start

    return System("openssl", alloc, free, loop)


def _whole_pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def naive_system() -> System:
    """One private mapping per secret, locked; wiped, unlocked and unmapped on release."""
    ffi, lib = libc()
    failed = ffi.cast("void *", -1)
    mmap, mlock, munlock, munmap, bzero = (
        lib.mmap,
        lib.mlock,
        lib.munlock,
        lib.munmap,
        lib.explicit_bzero,
    )
    null = ffi.NULL
    prot, flags = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS

    def alloc(size: int) -> Any:
        length = _whole_pages(size)
        address = mmap(null, length, prot, flags, -1, 0)
        if address == failed:
            raise MemoryError(f"mmap failed: errno {ffi.errno}")
        if mlock(address, length) != 0:
            munmap(address, length)
            raise MemoryError(f"mlock failed: errno {ffi.errno}")
        return address

    def free(handle: Any, size: int) -> None:
        length = _whole_pages(size)
        bzero(handle, size)
        munlock(handle, length)
        munmap(handle, length)

    def loop(size: int, n: int) -> int:
        length = _whole_pages(size)
        start = thread_time_ns()
        for _ in repeat(None, n):
            address = mmap(null, length, prot, flags, -1, 0)
            mlock(address, length)
            bzero(address, size)
            munlock(address, length)
            munmap(address, length)
        return thread_time_ns() - start

    return System("naive", alloc, free, loop)


def bytearray_system() -> System:
    def free(handle: bytearray, size: int) -> None:
        pass

    def loop(size: int, n: int) -> int:
        make = bytearray
        start = thread_time_ns()
        for _ in repeat(None, n):
            make(size)
        return thread_time_ns() - start

    return System("bytearray", bytearray, free, loop)
