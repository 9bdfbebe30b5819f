"""Red team: user code that runs in the middle of an operation on a secret (issue 14, item 1).

A ``SecureBytes`` operation converts its arguments first (an index's ``__index__``, a slice's
bounds, the other side of ``==``), and any of those conversions can run the caller's code.
Here that code closes the secret being operated on and allocates other secrets, which the
allocator is free to put in the slot just released. Whatever the operation does next must
touch the closed secret's own memory or nothing: it raises ``SecureBytesClosedError`` (or
finishes on the secret's bytes from before the close), and the other secrets keep every byte.

Python signal handlers are the same attack without any argument: they run between two
bytecodes of whatever the main thread is doing, so a handler that closes the secret the
main loop is writing is a hook inside every operation that is Python code.

Each scenario runs in a child interpreter (``in_child``): on a broken core a guarded
secret's use after close faults on its unmapped pages, and the test must report that
as a failure with the signal named, not die with pytest.
"""

from __future__ import annotations

import functools
import json

import pytest

from tests.test_redteam_support import MINE, OTHER, child_code, describe_exit, in_child

MODULE = "tests.test_redteam_reentrancy_attacks"


@pytest.mark.parametrize("guarded", [False, True], ids=["packed", "guarded"])
@pytest.mark.parametrize(
    "operation", ["a[i] = v", "a[i]", "a[i:]", "a[:i]", "a[::i]", "a[i:] = data", "a[::i] = data"]
)
def test_index_hook_that_closes_the_secret_never_touches_another(
    operation: str, guarded: bool
) -> None:
    """``a[idx] = 0x58`` where ``idx.__index__`` closes ``a`` and allocates ``b`` must not
    write into ``b`` (main wrote X into b's first byte); reads must not return b's bytes."""
    result = in_child(MODULE, "index_hook_attack", operation=operation, guarded=guarded)
    assert result["hook_ran"], "the attack did not run: the test proves nothing"
    assert result["others_corrupted"] == 0, f"{operation} wrote into another secret: {result}"
    if result["read"] is not None:
        assert OTHER not in result["read"], f"{operation} read another secret's bytes"
    assert result["outcome"] == "refused" or (
        result["read"] is None or set(result["read"]) == {MINE}
    ), f"{operation} on a secret closed mid-operation: {result}"


@pytest.mark.parametrize("operation", ["a[i] = v", "a[i]", "a[i:]"])
def test_index_hook_that_drops_the_arena_leaves_the_process_sound(operation: str) -> None:
    """A use after free of the allocator's own state would crash the child or corrupt."""
    result = in_child(MODULE, "arena_dropped_mid_operation", operation=operation)
    assert result["outcome"] == "refused", result
    assert result["others_corrupted"] == 0, result


@pytest.mark.parametrize("guarded", [False, True], ids=["packed", "guarded"])
def test_comparison_whose_other_side_closes_the_secret_reads_no_other_secret(
    guarded: bool,
) -> None:
    """``==`` must not compare against the bytes of a secret allocated into the freed slot
    (main answered True: it compared b's bytes, a foreign read through a timing oracle)."""
    result = in_child(MODULE, "comparison_hook_attack", guarded=guarded)
    assert result["equal"] is not True, f"== compared another secret's bytes: {result}"
    assert result["others_corrupted"] == 0


@pytest.mark.parametrize("guarded", [False, True], ids=["packed", "guarded"])
@pytest.mark.parametrize("operation", ["setitem", "wipe", "getitem", "slice", "eq"])
@pytest.mark.parametrize("trigger", ["signal", "gc"])
def test_hook_closing_the_secret_mid_operation_touches_no_other(
    trigger: str, operation: str, guarded: bool
) -> None:
    """A Python signal handler is user code between any two bytecodes, a gc callback user
    code at any allocation: one that closes the secret mid-operation must make the operation
    raise (or finish on the secret's own bytes), never redirect it to another secret."""
    rounds = 300 if guarded else 2000
    result = in_child(
        MODULE,
        "hook_storm_attack",
        trigger=trigger,
        operation=operation,
        guarded=guarded,
        rounds=rounds,
    )
    assert result["closes"] > 0, f"the hook never ran: the test proves nothing ({result})"
    assert result["corrupted"] == 0, f"other secrets changed: {result}"
    assert result["foreign_reads"] == 0, f"reads returned another secret's bytes: {result}"


@functools.cache
@pytest.mark.parametrize("guarded", [False, True], ids=["packed", "guarded"])
@pytest.mark.parametrize("operation", ["a[:] = value", "a[::2] = value", "a == value"])
def test_buffer_export_hook_that_closes_the_secret_touches_no_other(
    operation: str, guarded: bool
) -> None:
    """The issue's "the value's buffer export runs user code": ``__buffer__`` exists from
    Python 3.12, so this runs under a newer interpreter when one can import securemem."""
    from tests.conftest import run_on_python_312

    code = child_code(MODULE, "buffer_hook_attack", {"operation": operation, "guarded": guarded})
    run = run_on_python_312(code)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"{describe_exit(run.returncode)}: {run.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["hook_ran"], f"__buffer__ was never called: the test proves nothing ({result})"
    assert result["others_corrupted"] == 0, f"{operation} wrote into another secret: {result}"
    assert result["equal"] is not True, f"{operation} compared another secret's bytes: {result}"
