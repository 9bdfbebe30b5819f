"""Shared fixtures and helpers: real kernel, real /proc, real subprocesses."""

from __future__ import annotations

import gc
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from securemem._native import ffi

from securemem import Arena, SecureBytes, _procfs
from securemem._arena import default_arena
from securemem.testing import unprivileged_command

REPO = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The environment for a child Python that imports this checkout's securemem and tests."""
    return dict(os.environ, PYTHONPATH=str(REPO))


def newer_python() -> str | None:
    """An interpreter of Python 3.12 or later that imports this checkout's securemem (the
    abi3 extension serves it): ``SECUREMEM_NEWER_PYTHON``, or python3.12/3.13/3.14 on PATH."""
    candidates = [os.environ.get("SECUREMEM_NEWER_PYTHON")]
    candidates += [shutil.which(f"python3.{minor}") for minor in (12, 13, 14)]
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys, securemem; assert sys.version_info >= (3, 12)"],
            capture_output=True,
            env=child_env(),
            cwd=REPO,
            timeout=60,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


def run_on_python_312(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child of Python 3.12 or later (``__buffer__`` exists from 3.12): this
    interpreter when it is one, else :func:`newer_python`'s; skips the calling test when there
    is none."""
    python = sys.executable if sys.version_info >= (3, 12) else newer_python()
    if python is None:
        pytest.skip(
            "needs Python >= 3.12 with cffi that imports securemem: set SECUREMEM_NEWER_PYTHON "
            "(e.g. a venv: python3.12 -m venv /tmp/v312 && /tmp/v312/bin/pip install cffi)"
        )
    return subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )


def run_python(
    code: str,
    *args: str,
    memlock: int | None = None,
    timeout: float = 120,
    stdin: str | None = None,
    new_session: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``args`` in a fresh interpreter, unprivileged under ``memlock`` when
    given; ``new_session``: without a controlling terminal, as under cron or CI."""
    prefix = unprivileged_command(memlock) if memlock is not None else []
    env = child_env()
    preload = env.pop("LD_PRELOAD", None) if prefix else None
    if preload:
        # A sanitizer run preloads its runtime: into the child Python only, not into the
        # wrappers (capsh runs a shell, and bash does not survive ThreadSanitizer's runtime).
        prefix = [*prefix, "env", f"LD_PRELOAD={preload}"]
    return subprocess.run(
        [*prefix, sys.executable, "-c", textwrap.dedent(code), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        start_new_session=new_session,
        check=False,
    )


def run_json(code: str, *, memlock: int | None = None) -> dict[str, Any]:
    """Run ``code`` (which prints one JSON object last) and return that object."""
    result = run_python(code, memlock=memlock)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def read_raw(address: int, length: int) -> bytes:
    """Read memory straight through its address (for checking what release left behind)."""
    return bytes(ffi.buffer(ffi.cast("char *", address), length))


def kernel_locked_pages(arena: Arena) -> set[int]:
    """Pages of the arena's regions that the kernel reports as locked (smaps ``lo``)."""
    maps = _procfs.mappings()
    assert maps is not None, "/proc/self/smaps is needed"
    locked: set[int] = set()
    size = arena.page_size
    for base, length in arena.mapped_ranges():
        for mapping in maps:
            if mapping.locked and mapping.end > base and mapping.start < base + length:
                start, end = max(base, mapping.start), min(base + length, mapping.end)
                locked.update(range(start, end, size))
    return locked


def assert_locks_match_kernel(arena: Arena) -> None:
    """Invariant 1: a page is locked exactly when the arena holds a lock count on it.

    The kernel's view and the arena's are read with the garbage collector held off: a
    collection between the two reads (parsing smaps allocates) may finalise an unreachable
    secret of an earlier test, whose release unlocks a page the kernel was just seen to
    lock, and the two views would disagree about a moment neither describes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        kernel, listed = kernel_locked_pages(arena), set(arena.locked_pages())
    finally:
        if was_enabled:
            gc.enable()
    assert kernel == listed, {
        "locked, not listed": sorted(kernel - listed), "listed, not locked": sorted(listed - kernel)
    }


def close_checked(secret: SecureBytes, expected: bytes, failures: list[str], who: str) -> None:
    """Close ``secret``; first note in ``failures`` (for a thread to report) a changed byte."""
    if secret != expected:
        failures.append(f"{who}: a secret was corrupted")
    secret.close()


def assert_arena_empty(arena: Arena) -> None:
    """Every secret of ``arena`` is closed, and its locks agree with the kernel."""
    stats = arena.stats()
    assert stats.allocations == 0 and stats.in_use_bytes == 0
    assert_locks_match_kernel(arena)


@pytest.fixture
def arena() -> Iterator[Arena]:
    """A fresh arena on the real kernel; checked against the kernel when the test ends."""
    fresh = Arena(reserve_pages=2)
    yield fresh
    assert_locks_match_kernel(fresh)


@pytest.fixture(autouse=True)
def _default_arena_left_consistent() -> Iterator[None]:
    yield
    assert_locks_match_kernel(default_arena())


def pytest_report_header() -> str:
    """The releases the run tests against: copy counts differ between cryptography releases."""
    versions = []
    for name in ("cryptography", "cffi", "hypothesis"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    return "securemem tests against " + ", ".join(versions)
