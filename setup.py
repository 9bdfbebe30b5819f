"""Two extensions: ``securemem._native`` (cffi: the kernel shims, lock_memory, the doctor)
and ``securemem._core`` (the CPython C API: the allocator and the SecureBytes type).

``_core`` is built against the Limited API of Python 3.11 (the buffer protocol is in it
from 3.11), so one abi3 build serves every later CPython.
"""

import os
import sys

from setuptools import Extension, setup

CORE_SOURCES = [
    "securemem/_c/core/module.c",
    "securemem/_c/core/kernel.c",
    "securemem/_c/core/arena.c",
    "securemem/_c/core/securebytes.c",
    "securemem/_c/core/prefetch.c",
    "securemem/_c/core/purge.c",
    "securemem/_c/shims.c",
]
WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
# tools/sanitize.sh builds with sanitizer flags through this variable.
EXTRA = os.environ.get("SECUREMEM_CORE_CFLAGS", "").split()
# Every symbol bound when the module loads (ELF systems): a symbol bound lazily, on its first
# call, goes through the dynamic linker's resolver, which saves all the vector registers on the
# stack, and the registers may still hold bytes of a secret that a copy just moved.
BIND_NOW = ["-Wl,-z,now", "-Wl,-z,relro"] if sys.platform.startswith(("linux", "freebsd")) else []

core = Extension(
    "securemem._core",
    sources=CORE_SOURCES,
    include_dirs=["securemem/_c"],
    define_macros=[("Py_LIMITED_API", "0x030B0000")],
    py_limited_api=True,
    extra_compile_args=[*WARNINGS, "-fvisibility=hidden", *EXTRA],
    extra_link_args=[*BIND_NOW, *(f for f in EXTRA if f.startswith("-fsanitize"))],
    depends=["securemem/_c/core/core.h", "securemem/_c/shims.h"],
)

setup(
    cffi_modules=["securemem/_native_build.py:ffibuilder"],
    ext_modules=[core],
)
