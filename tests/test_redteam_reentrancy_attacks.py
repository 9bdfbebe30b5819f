"""The attacks of ``tests/test_redteam_reentrancy.py``, each run in a child interpreter.

No pytest here: a child imports only this module and securemem, and starts in a fraction
of the time a pytest import takes (there are dozens of children).
"""

from __future__ import annotations

import gc
import signal
from typing import Any

from securemem import SecureBytes, SecureBytesClosedError
from tests.test_redteam_support import MINE, OTHER, SIZE, WRITTEN


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


def buffer_hook_attack(operation: str, guarded: bool) -> dict[str, Any]:
    """Python 3.12+: a value whose ``__buffer__`` closes the secret and refills its slot,
    handed to slice assignment or ``==``. The core takes the value's buffer before it checks
    the secret, or the secret it checked is gone when it writes."""
    victim = SecureBytes(bytes([MINE]) * SIZE, guarded=guarded)
    others: list[SecureBytes] = []
    length = SIZE // 2 if operation == "a[::2] = value" else SIZE
    fill = OTHER if operation == "a == value" else WRITTEN

    class Hooked:
        def __buffer__(self, flags: int) -> memoryview:
            victim.close()
            others.extend(_others(guarded))
            return memoryview(bytes([fill]) * length)

    equal = None
    try:
        if operation == "a[:] = value":
            victim[:] = Hooked()
        elif operation == "a[::2] = value":
            victim[::2] = Hooked()
        else:
            equal = victim == Hooked()
        outcome = "completed"
    except SecureBytesClosedError:
        outcome = "refused"
    return {
        "outcome": outcome,
        "equal": equal,
        "hook_ran": bool(others),
        "others_corrupted": _corrupted(others),
    }
