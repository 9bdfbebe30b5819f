"""The gateway to securemem's compiled code: the only module that imports it.

Two extension modules sit under the package, and everything else asks this one:

* ``_core`` (the CPython C API, ``securemem/_c/core``): the allocator, the
  ``SecureBytes`` type itself, the native prefetch worker, the fork handler.
* ``_native`` (cffi in API mode, built by ``build_support/native_build.py`` from
  ``securemem/_c/shims.c``): one function per system call, for the Python side of
  the kernel boundary (``NativeKernel``, ``lock_memory``, the doctor, hardening, the
  simulated kernels) and the codecs.
"""

from __future__ import annotations

from securemem._core import (
    ArenaCore,
    ReadGate,
    SecureBytesBase,
    all_arena_ranges,
    fork_generation,
    open_secret_count,
    purge_count,
    purge_secrets,
    release_free_pages,
    set_default_factory,
)
from securemem._native import ffi, lib

__all__ = [
    "ArenaCore",
    "ReadGate",
    "SecureBytesBase",
    "all_arena_ranges",
    "ffi",
    "fork_generation",
    "lib",
    "open_secret_count",
    "purge_count",
    "purge_secrets",
    "release_free_pages",
    "set_default_factory",
]
