"""purge() while secrets are being deallocated (issue 20, the first HIGH finding).

CPython runs Python code while a secret's reference count is already 0 and its memory not
yet released: a subclass's ``__dict__`` is cleared (its attributes' ``__del__`` run) before
the native deallocation; the trashcan parks objects of a deep structure with refcount 0 and
frees them later, running other destructors in between; weakref callbacks run inside the
deallocation. A purge from any of those moments (a ``__del__``, another thread, a signal
handler) must wipe and release such a secret exactly once, and never deallocate it again.

Each case runs in a child process: a double deallocation is a SIGSEGV or an abort there,
which fails the test instead of killing pytest. Each child checks, after the teardown, what
a user relies on: nothing left open, the arena's live count and locked bytes back to zero,
and a fresh secret of the same arena reads as zeros.
"""

from __future__ import annotations

from .conftest import run_json

# Shared by every child: a dedicated arena whose books must balance after the teardown.
PRELUDE = """
import gc, json, sys, threading
import securemem
from securemem import Arena, SecureBytes, purge
from securemem._binding import open_secret_count

arena = Arena()

def balanced():
    purge()
    gc.collect()
    stats = arena.stats()
    fresh = SecureBytes(64, arena=arena)
    zeros = fresh == bytes(64)
    fresh.close()
    return {"open": open_secret_count(), "live": stats.allocations,
            "locked": stats.locked_bytes, "in_use": stats.in_use_bytes, "fresh_zeros": zeros}
"""


def _assert_balanced(result: dict[str, object]) -> None:
    assert result["open"] == 0, result
    assert result["live"] == 0 and result["in_use"] == 0, result
    assert result["locked"] == 0, result
    assert result["fresh_zeros"] is True, result


SUBCLASS_DICT = (
    PRELUDE
    + """
class Key(SecureBytes):  # a subclass with a __dict__
    pass

class PurgesWhenCollected:
    def __del__(self):
        purge()

for _ in range(300):
    key = Key(b"k" * 48, arena=arena)
    key.note = PurgesWhenCollected()  # cleared by subtype_dealloc with key's refcount at 0
    del key
print(json.dumps(balanced()))
"""
)


def test_a_subclass_attribute_whose_del_purges_does_not_deallocate_the_secret_twice() -> None:
    _assert_balanced(run_json(SUBCLASS_DICT))


TRASHCAN = (
    PRELUDE
    + """
class PurgesWhenCollected:
    def __del__(self):
        purge()

def nested(depth):
    # [secret, purger, deeper]: a list drops its items last first, so the deeper levels go
    # first; past the trashcan's depth the secrets are parked with refcount 0, and the
    # purgers of the shallower levels run while they wait
    top = []
    level = top
    for _ in range(depth):
        deeper = []
        level.extend([SecureBytes(b"t" * 40, arena=arena), PurgesWhenCollected(), deeper])
        level = deeper
    return top

for _ in range(30):
    structure = nested(200)
    del structure
print(json.dumps(balanced()))
"""
)


def test_a_deep_teardown_whose_del_purges_releases_parked_secrets_once() -> None:
    _assert_balanced(run_json(TRASHCAN))


# The purge runs in another thread, at a moment this thread chooses: a __del__ deep in the
# teardown hands over and waits until one purge is done. The __del__ itself purges nothing.
THREAD_HANDOVER = (
    PRELUDE
    + """
asked, done = threading.Event(), threading.Event()
stop = False
purges = [0]

def purger():
    while True:
        asked.wait()
        asked.clear()
        if stop:
            return
        purge()
        purges[0] += 1
        done.set()

class WaitsForAPurge:
    def __del__(self):
        done.clear()
        asked.set()
        done.wait()

def nested(depth):
    top = []
    level = top
    for _ in range(depth):
        deeper = []
        level.extend([SecureBytes(b"h" * 40, arena=arena), WaitsForAPurge(), deeper])
        level = deeper
    return top

thread = threading.Thread(target=purger)
thread.start()
for _ in range(10):
    structure = nested(120)
    del structure
stop = True
asked.set()
thread.join()
result = balanced()
result["purges"] = purges[0]
print(json.dumps(result))
"""
)


def test_another_threads_purge_during_a_deep_teardown_touches_no_dying_secret_twice() -> None:
    result = run_json(THREAD_HANDOVER)
    assert result["purges"] == 10 * 120, result  # every __del__ handed over once
    _assert_balanced(result)


# No handover: a thread loops purge() while this one drops structures whose destructors
# are innocent. Where the purge lands is the scheduler's choice (a very short switch
# interval makes it land everywhere); the loops are bounded by count, and the test passes
# or fails on what is left afterwards, not on how often anything happened.
THREAD_LOOP = (
    PRELUDE
    + """
sys.setswitchinterval(1e-6)
stop = threading.Event()
purges = [0]

def purger():
    while not stop.is_set():
        purge()
        purges[0] += 1

class Innocent:
    def __del__(self):  # bytecode to run: each instruction is a chance for a thread switch
        for step in range(20):
            self.step = step

class Key(SecureBytes):
    pass

def nested(depth):
    top = []
    level = top
    for index in range(depth):
        deeper = []
        key = Key(b"n" * 40, arena=arena)
        key.note = Innocent()
        level.extend([SecureBytes(b"l" * 40, arena=arena), Innocent(), key, deeper])
        level = deeper
    return top

thread = threading.Thread(target=purger)
thread.start()
try:
    for _ in range(ROUNDS):
        structure = nested(100)
        del structure
finally:
    stop.set()
    thread.join()
result = balanced()
result["purges"] = purges[0]
print(json.dumps(result))
"""
)


def test_a_thread_looping_purge_while_structures_are_torn_down() -> None:
    result = run_json(THREAD_LOOP.replace("ROUNDS", "200"))
    assert result["purges"] >= 1, result  # the other thread ran at all
    _assert_balanced(result)
