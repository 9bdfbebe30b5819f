"""Two extensions: ``securemem._native`` (cffi: the kernel shims, lock_memory, the doctor)
and ``securemem._core`` (the CPython C API: the allocator and the SecureBytes type).

Both are built against the Limited API of Python 3.11 (the buffer protocol is in it from
3.11), so one abi3 wheel (``cp311-abi3``) serves every later CPython. Free-threaded CPython
(3.13t, 3.14t: ``Py_GIL_DISABLED``) has no Limited API yet, so there both are built against
the full API and the wheel is tagged for that one interpreter.

The build scripts live in build_support/, outside the package, so no wheel carries them; the
C sources under securemem/_c are compiled, never installed (pyproject.toml:
include-package-data = false).
"""

import os
import sys
import sysconfig

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
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
# The link flags both extensions share (binding every symbol at load, and stripping): read
# from the cffi builder, in build_support/ beside this file.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_support"))
from native_build import BIND_NOW, STRIP  # noqa: E402

# A build for a debugger or a sanitizer (-g in the flags) keeps its symbols.
LINK_STRIP = [] if "-g" in EXTRA else STRIP

core = Extension(
    "securemem._core",
    sources=CORE_SOURCES,
    include_dirs=["securemem/_c"],
    define_macros=[] if FREE_THREADED else [("Py_LIMITED_API", "0x030B0000")],
    py_limited_api=not FREE_THREADED,
    extra_compile_args=[*WARNINGS, "-fvisibility=hidden", *EXTRA],
    extra_link_args=[
        *BIND_NOW,
        *LINK_STRIP,
        *(f for f in EXTRA if f.startswith("-fsanitize")),
    ],
    depends=["securemem/_c/core/core.h", "securemem/_c/shims.h"],
)

setup(
    cffi_modules=["build_support/native_build.py:ffibuilder"],
    ext_modules=[core],
    # The wheel's tag: cp311-abi3, installable on every CPython from 3.11 (not on a
    # free-threaded one, which cannot load an abi3 extension).
    options={} if FREE_THREADED else {"bdist_wheel": {"py_limited_api": "cp311"}},
)
