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

import sys

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

# The core declares that it needs the GIL (Py_mod_gil = Py_MOD_GIL_USED): importing it turns
# the GIL back on in a free-threaded CPython. Forced off (PYTHON_GIL=0, -X gil=0) it stays off,
# and the core's atomicity, which rests on it, would not hold: refuse instead (docs/design.md,
# "Free-threaded CPython").
if not getattr(sys, "_is_gil_enabled", lambda: True)():
    raise ImportError(
        "securemem needs the GIL, and it was forced off (PYTHON_GIL=0 or -X gil=0): run "
        "without forcing it off; on a free-threaded CPython, importing securemem turns it "
        "back on by itself"
    )

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
