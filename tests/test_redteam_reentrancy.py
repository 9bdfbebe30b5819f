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

import gc
import signal
from typing import Any

import pytest

from securemem import SecureBytes, SecureBytesClosedError
from tests.test_redteam_support import MINE, OTHER, SIZE, WRITTEN, in_child

MODULE = "tests.test_redteam_reentrancy"


def _others(guarded: bool, count: int = 4) -> list[SecureBytes]:
    """Secrets allocated right after a close: the first takes the freed slot if any does."""
    return [SecureBytes(bytes([OTHER]) * SIZE, guarded=guarded) for _ in range(count)]


def _corrupted(others: list[SecureBytes]) -> int:
    return sum(1 for other in others if bytes(other.view()) != bytes([OTHER]) * SIZE)


class _ClosingIndex:
    """An index whose ``__index__`` closes ``victim`` and fills the freed slot with others."""

    def __init__(self, victim: SecureBytes, guarded: bool, value: int) -> None:
        self.victim = victim
        self.guarded = guarded
        self.value = value
        self.others: list[SecureBytes] = []

    def __index__(self) -> int:
        self.victim.close()
        self.others.extend(_others(self.guarded))
        return self.value


def _read(result: object) -> list[int]:
    """The bytes an operation returned (an int, or a SecureBytes slice) as a list."""
    if isinstance(result, int):
        return [result]
    assert isinstance(result, SecureBytes)
    return list(bytes(result.view()))


def index_hook_attack(operation: str, guarded: bool) -> dict[str, Any]:
    """One operation on a secret whose index argument closes it; what it did."""
    victim = SecureBytes(bytes([MINE]) * SIZE, guarded=guarded)
    read: list[int] | None = None
    attacks: dict[str, tuple[int, Any]] = {
        # operation: (what __index__ returns, the operation)
        "a[i] = v": (0, lambda i: victim.__setitem__(i, WRITTEN)),
        "a[i]": (0, lambda i: victim[i]),
        "a[i:]": (0, lambda i: victim[i:]),
        "a[:i]": (SIZE, lambda i: victim[:i]),
        "a[::i]": (2, lambda i: victim[::i]),
        "a[i:] = data": (0, lambda i: victim.__setitem__(slice(i, None), bytes([WRITTEN]) * SIZE)),
        "a[::i] = data": (
            2,
            lambda i: victim.__setitem__(slice(None, None, i), bytes([WRITTEN]) * (SIZE // 2)),
        ),
    }
    value, attack = attacks[operation]
    hook = _ClosingIndex(victim, guarded, value)
    try:
        returned = attack(hook)
        outcome = "completed"
        if returned is not None:
            read = _read(returned)
    except SecureBytesClosedError:
        outcome = "refused"
    return {
        "outcome": outcome,
        "read": read,
        "hook_ran": bool(hook.others),
        "others_corrupted": _corrupted(hook.others),
    }


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


def arena_dropped_mid_operation(operation: str) -> dict[str, Any]:
    """``__index__`` closes the secret and drops the last reference to its arena (collected at
    once): the operation that called it must not touch the arena's freed state."""
    import gc

    from securemem import Arena

    holder = [Arena()]
    victim = SecureBytes(bytes([MINE]) * SIZE, arena=holder[0])
    others: list[SecureBytes] = []

    class DropsTheArena:
        def __index__(self) -> int:
            victim.close()
            holder.clear()
            gc.collect()
            others.extend(_others(False, 4))  # the default arena: reuses freed C memory
            return 0

    try:
        if operation == "a[i] = v":
            victim[DropsTheArena()] = WRITTEN
        elif operation == "a[i]":
            victim[DropsTheArena()]
        else:
            victim[DropsTheArena() :]
        outcome = "completed"
    except SecureBytesClosedError:
        outcome = "refused"
    victim.close()
    gc.collect()
    return {"outcome": outcome, "others_corrupted": _corrupted(others)}


@pytest.mark.parametrize("operation", ["a[i] = v", "a[i]", "a[i:]"])
def test_index_hook_that_drops_the_arena_leaves_the_process_sound(operation: str) -> None:
    """A use after free of the allocator's own state would crash the child or corrupt."""
    result = in_child(MODULE, "arena_dropped_mid_operation", operation=operation)
    assert result["outcome"] == "refused", result
    assert result["others_corrupted"] == 0, result


def comparison_hook_attack(guarded: bool) -> dict[str, Any]:
    """``a == other`` where producing ``other``'s bytes closes ``a`` and refills its slot.

    On Python 3.11 the user code in a buffer hand-off is a ``SecureBytes`` subclass's
    ``view()``. Both sides are instances of two unrelated subclasses, so ``==`` calls ``a``'s
    ``__eq__`` first (a subclass on the right only would get the reflected call). A core that
    takes the other side's buffer natively never runs the hook, and a core that refuses
    subclasses refuses the attack: either is a pass.
    """
    others: list[SecureBytes] = []
    try:

        class Mine(SecureBytes):  # type: ignore[misc,unused-ignore]
            pass

        class Sneaky(SecureBytes):  # type: ignore[misc,unused-ignore]
            def view(self) -> memoryview:
                victim.close()
                others.extend(_others(guarded))
                return memoryview(bytes([OTHER]) * SIZE)

    except TypeError:
        return {"outcome": "subclassing refused", "equal": None, "others_corrupted": 0}
    victim = Mine(bytes([MINE]) * SIZE, guarded=guarded)
    bait = Sneaky(bytes([0x43]) * SIZE)
    try:
        equal = victim == bait
        outcome = "completed"
    except SecureBytesClosedError:
        equal, outcome = None, "refused"
    return {
        "outcome": outcome,
        "equal": equal,
        "hook_ran": bool(others),
        "others_corrupted": _corrupted(others),
    }


@pytest.mark.parametrize("guarded", [False, True], ids=["packed", "guarded"])
def test_comparison_whose_other_side_closes_the_secret_reads_no_other_secret(
    guarded: bool,
) -> None:
    """``==`` must not compare against the bytes of a secret allocated into the freed slot
    (main answered True: it compared b's bytes, a foreign read through a timing oracle)."""
    result = in_child(MODULE, "comparison_hook_attack", guarded=guarded)
    assert result["equal"] is not True, f"== compared another secret's bytes: {result}"
    assert result["others_corrupted"] == 0


class _Tracked:
    """An object the cyclic collector counts (lists and dicts come from free lists: no count)."""


def hook_storm_attack(trigger: str, operation: str, guarded: bool, rounds: int) -> dict[str, int]:
    """User code that closes the secret the main loop uses and refills its slot, run by
    ``trigger``: ``"signal"``, a SIGALRM storm's Python handler; ``"gc"``, a ``gc.callbacks``
    entry with a collection on every allocation of a tracked object.

    Counts the other secrets changed and the reads that returned another secret's byte.
    """
    state: dict[str, Any] = {"victim": None, "others": [], "closes": 0}

    def close_the_victim(*_: object) -> None:
        victim = state["victim"]
        if victim is not None and not victim.closed:
            state["victim"] = None
            victim.close()
            state["closes"] += 1
            state["others"].extend(_others(guarded, 1))

    if trigger == "signal":
        previous = signal.signal(signal.SIGALRM, close_the_victim)
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.00005)
    else:
        gc.callbacks.append(close_the_victim)
        gc.set_threshold(1)
    foreign_reads = corrupted = refused = 0
    try:
        for _ in range(rounds):
            victim = SecureBytes(bytes([MINE]) * SIZE, guarded=guarded)
            state["victim"] = victim
            junk: list[_Tracked] = []
            try:
                for _ in range(50):
                    if trigger == "gc":
                        # One tracked allocation kept per operation: a collection (and the
                        # hook) runs inside an operation that allocates, and here, between
                        # operations, on a core whose operations allocate nothing.
                        junk.append(_Tracked())
                    if operation == "setitem":
                        victim[0] = WRITTEN
                    elif operation == "wipe":
                        victim.wipe()
                    elif operation == "getitem":
                        foreign_reads += victim[0] == OTHER
                    elif operation == "slice":
                        foreign_reads += OTHER in bytes(victim[0:SIZE].view())
                    else:
                        foreign_reads += victim == bytes([OTHER]) * SIZE
            except SecureBytesClosedError:
                refused += 1
            state["victim"] = None
            victim.close()
            others = state["others"]
            corrupted += _corrupted(others)
            for other in others:
                other.close()
            others.clear()
    finally:
        if trigger == "signal":
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        else:
            gc.callbacks.remove(close_the_victim)
            gc.set_threshold(700)
    return {
        "closes": state["closes"],
        "refused": refused,
        "corrupted": corrupted,
        "foreign_reads": foreign_reads,
    }


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
