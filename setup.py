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
    "securemem/_c/core/readgate.c",
    "securemem/_c/shims.c",
]
WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
# tools/sanitize.sh builds with sanitizer flags through this variable.
EXTRA = os.environ.get("SECUREMEM_CORE_CFLAGS", "").split()
# The link flags that bind every symbol at load, as the cffi module is linked (the reason is
# in securemem/_native_build.py); read from there, not the package (it is not built yet).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "securemem"))
from _native_build import BIND_NOW  # noqa: E402

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
