"""Helpers for the red-team tests (tests/test_redteam_*.py); this module holds no tests.

Every red-team scenario that could crash the interpreter on a broken core (a use after
close of a guarded secret faults on its unmapped pages; a native bug faults anywhere) runs
in a child interpreter: :func:`in_child` imports the scenario function from its attacks module
there, calls it, and returns what it printed as JSON. A child killed by a signal fails the
test with the signal's name instead of taking pytest down with it.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
from typing import Any

# The bytes a secret under attack holds, and the bytes of the "other" secrets the attack
# allocates into the slots it freed. A byte of OTHER seen by the attacked secret's operation
# is a foreign read; a byte of OTHER changed is a foreign write.
MINE = 0x41  # "A"
OTHER = 0x42  # "B"
WRITTEN = 0x58  # "X": what the attacked operation writes
SIZE = 32
PAGE = mmap.PAGESIZE

# Set by tools/sanitize.sh: the native core is built with ASan+UBSan or TSan, several times
# slower. The storms then run a fifth of their rounds (CI's time), with the same assertions
# on what must never happen, and still require their races or interrupts to land.
SANITIZER = os.environ.get("SECUREMEM_SANITIZER", "")


def scaled(count: int) -> int:
    """``count`` rounds (or landings required), a fifth of them under a sanitizer build."""
    return max(10, count // 5) if SANITIZER else count


def describe_exit(returncode: int) -> str:
    """ "exit status 3" or "killed by SIGSEGV" for a child's return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def child_code(module: str, function: str, kwargs: dict[str, Any]) -> str:
    """Python source that calls ``module.function(**kwargs)`` and prints ``RESULT <json>``."""
    return (
        "import importlib, json, sys\n"
        f"function = getattr(importlib.import_module({module!r}), {function!r})\n"
        f"result = function(**json.loads({json.dumps(json.dumps(kwargs))}))\n"
        "sys.stdout.flush()\n"
        "print('\\nRESULT ' + json.dumps(result), flush=True)\n"
    )


def in_child(
    module: str, function: str, *, memlock: int | None = None, timeout: float = 120, **kwargs: Any
) -> dict[str, Any]:
    """Run ``module.function(**kwargs)`` in a fresh interpreter and return its dict result.

    ``memlock``: run unprivileged under that RLIMIT_MEMLOCK (see ``unprivileged_command``).
    """
    from tests.conftest import run_python  # the parent only: a child imports no pytest

    result = run_python(child_code(module, function, kwargs), memlock=memlock, timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (
        f"{module}.{function}({kwargs}) in a child: {describe_exit(result.returncode)}\n"
        f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}"
    )
    return json.loads(lines[-1][len("RESULT ") :])  # type: ignore[no-any-return]


def child_exit(module: str, function: str, **kwargs: Any) -> tuple[int, str]:
    """Run ``module.function(**kwargs)`` in a fresh interpreter expected to die: its return
    code (negative: the signal that ended it) and what it printed on stdout."""
    from tests.conftest import run_python

    result = run_python(child_code(module, function, kwargs), timeout=120)
    return result.returncode, result.stdout


def vmlck_bytes() -> int:
    """The kernel's count of this process's locked memory (``VmLck`` in /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmLck:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmLck line in /proc/self/status")
