"""Red team of the purge redesign (issue 20): user code running in the middle of a purge.

A purge no longer holds a reference to the secret it closes (a secret may be dying as it is
purged), so every moment where Python code runs inside a close is a moment where the secret,
its arena or its views may go: a kernel written in Python (securemem.testing's simulated
kernels are public), a ``__del__`` on the secret itself, a signal handler, a codec's text
purged under it. Crash-prone cases run in a child process, where a SIGSEGV or an abort is
the exit status rather than the end of pytest.
"""

from __future__ import annotations

import gc
import sys
import threading

import pytest

from securemem import Arena, SecureBytes, SecureBytesClosedError, purge
from securemem._binding import open_secret_count

from .conftest import run_json

# A guarded secret made no-access: closing it asks the kernel to make it writable again
# first (to wipe it), so a Python kernel runs user code in the middle of the close.
KERNEL_HOOK = """
import gc, json
from securemem import Arena, SecureBytes, purge
from securemem.testing import SimulatedKernel
from securemem._binding import open_secret_count

box = {}
events = []

class Hook(SimulatedKernel):
    def protect(self, address, length, protection):
        super().protect(address, length, protection)
        action = box.pop("action", None)
        if action is not None:
            events.append(action)
            ACTION

kernel = Hook("linux", superuser=True)
box["secret"] = SecureBytes(b"g" * 40, arena=Arena(kernel=kernel), guarded=True)
SETUP
box["secret"].protect("noaccess")
box["action"] = "armed"
closed = purge()
gc.collect()
purge()
print(json.dumps({"events": events, "closed": closed, "open": open_secret_count(),
                  "locked": kernel.locked_pages() != {}, "mapped": kernel.mapped_ranges()}))
"""


def _kernel_hook(action: str, setup: str = "") -> dict[str, object]:
    return run_json(KERNEL_HOOK.replace("ACTION", action).replace("SETUP", setup))


def test_a_kernel_that_drops_the_last_reference_to_the_secret_and_its_arena_mid_purge() -> None:
    # the secret and (through it) its arena are deallocated while the purge is inside the
    # arena's close: the purge must neither touch the freed secret nor the freed arena
    result = _kernel_hook('box.pop("secret")')
    assert result["events"] == ["armed"] and result["closed"] == 1, result
    assert result["open"] == 0 and result["mapped"] == [] and result["locked"] is False, result


def test_a_kernel_that_closes_the_secret_the_purge_is_closing() -> None:
    result = _kernel_hook('box["secret"].close()')
    assert result["events"] == ["armed"] and result["closed"] == 1, result
    assert result["open"] == 0 and result["mapped"] == [] and result["locked"] is False, result


def test_a_kernel_that_releases_the_last_view_of_the_secret_the_purge_is_closing() -> None:
    # the view goes while the close is still using the mapping's bookkeeping
    result = _kernel_hook('box.pop("view").release()', 'box["view"] = box["secret"].view()')
    assert result["events"] == ["armed"] and result["closed"] == 1, result
    assert result["open"] == 0 and result["mapped"] == [] and result["locked"] is False, result


def test_a_kernel_that_opens_secrets_mid_purge_cannot_keep_the_purge_going() -> None:
    # every close of a no-access guarded secret opens another one, made no-access too: a
    # purge that closed what opened after it began would never end
    result = run_json(
        """
import json
from securemem import Arena, SecureBytes, purge
from securemem.testing import SimulatedKernel
from securemem._binding import open_secret_count

made = []
class Breeding(SimulatedKernel):
    def protect(self, address, length, protection):
        super().protect(address, length, protection)
        if protection == "readwrite" and len(made) < 10_000:
            secret = SecureBytes(b"n" * 40, arena=arena, guarded=True)
            made.append(secret)
            secret.protect("noaccess")

arena = Arena(kernel=Breeding("linux", superuser=True))
first = SecureBytes(b"f" * 40, arena=arena, guarded=True)
first.protect("noaccess")
closed = purge()
print(json.dumps({"closed": closed, "made": len(made), "first_closed": first.closed,
                  "open_after": sum(not s.closed for s in made)}))
"""
    )
    assert result["first_closed"] is True and result["closed"] >= 1, result
    assert result["made"] < 10_000, "the purge kept closing secrets opened after it began"
    assert result["open_after"] >= 1, result  # what opened during the purge is not its own


def test_a_secret_whose_own_del_purges_and_resurrects_it() -> None:
    kept: list[SecureBytes] = []

    class Resurrecting(SecureBytes):
        __slots__ = ()

        def __del__(self) -> None:
            purge()  # closes this very secret, refcount held by the finaliser
            kept.append(self)

    secret = Resurrecting(b"r" * 32)
    del secret
    gc.collect()
    assert len(kept) == 1 and kept[0].closed
    with pytest.raises(SecureBytesClosedError):
        bytes(kept[0])
    kept.clear()
    gc.collect()
    assert open_secret_count() == 0


def test_a_signal_handler_purging_during_deep_teardowns() -> None:
    # purge_on_exit's handler is a Python signal handler: it runs between bytecodes, so in
    # the middle of a teardown (a subclass's __dict__ being cleared, the trashcan's parked
    # objects waiting). The timer is fast; the rounds are counted; what is checked is what
    # is left after them.
    result = run_json(
        """
import json, signal
from securemem import Arena, SecureBytes, purge
from securemem._binding import open_secret_count

arena = Arena()
handled = [0]
def handler(signum, frame):
    purge()
    handled[0] += 1

class Key(SecureBytes):
    pass

class Innocent:
    def __del__(self):
        self.gone = [1, 2, 3]

def nested(depth):
    top = []
    level = top
    for _ in range(depth):
        deeper = []
        key = Key(b"k" * 40, arena=arena)
        key.note = Innocent()
        level.extend([SecureBytes(b"s" * 40, arena=arena), Innocent(), key, deeper])
        level = deeper
    return top

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
try:
    for _ in range(150):
        structure = nested(120)
        del structure
finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
purge()
stats = arena.stats()
print(json.dumps({"open": open_secret_count(), "live": stats.allocations,
                  "locked": stats.locked_bytes}))
"""
    )
    assert result == {"open": 0, "live": 0, "locked": 0}, result


# -- the codecs ------------------------------------------------------------------------------


def test_a_purge_while_decoding_a_secret_text_raises_closed() -> None:
    # the text is a SecureBytes: the purge wipes it under the decoder (its view is held, so
    # it stays mapped) and closes the result; the caller hears that, not a decoding error
    # made of the zeros. Where the purge lands is the scheduler's: rounds until it landed
    # during a decode, every round checked.
    size = 8 << 20
    armed, started = threading.Event(), threading.Event()

    class Wakes(SecureBytes):
        __slots__ = ()

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            if armed.is_set():
                armed.clear()
                started.set()

    outcomes = []
    for _ in range(10):
        text = SecureBytes(bytes(range(256)).hex().encode() * (size // 256))
        started.clear()
        thread = threading.Thread(target=lambda: (started.wait(), purge()))
        armed.set()
        thread.start()
        try:
            Wakes.from_hex(text).close()
            outcomes.append("returned")  # the purge came after: nothing to see
        except SecureBytesClosedError:
            outcomes.append("closed")
        finally:
            thread.join()
        assert text.closed
        if "closed" in outcomes:
            break
    assert outcomes[-1] == "closed", outcomes


def test_a_purge_while_encoding_a_guarded_secret() -> None:
    # the source is guarded: the purge closes it under its view, and the mapping must stay
    # until the encoder is done with it
    result = run_json(
        """
import json, threading
from securemem import SecureBytes, SecureBytesClosedError, purge
from securemem._binding import open_secret_count
armed, started = threading.Event(), threading.Event()
class Wakes(SecureBytes):
    __slots__ = ()
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if armed.is_set():
            started.set()
outcomes = []
for _ in range(5):
    armed.clear()
    source = Wakes(b"q" * (4 << 20), guarded=True)
    armed.set()
    thread = threading.Thread(target=lambda: (started.wait(), purge()))
    thread.start()
    try:
        source.to_hex().close()
        outcomes.append("returned")
    except SecureBytesClosedError:
        outcomes.append("closed")
    thread.join()
    started.clear()
print(json.dumps({"outcomes": outcomes, "open": open_secret_count()}))
"""
    )
    assert result["open"] == 0 and len(result["outcomes"]) == 5, result


@pytest.mark.skipif(sys.platform != "linux", reason="the real kernel's arenas")
def test_purge_twice_from_a_weakref_callback_of_a_dying_subclass_secret() -> None:
    import weakref

    class Key(SecureBytes):  # with a __dict__
        tag: object

    arena = Arena()
    calls: list[int] = []
    keys = [Key(b"w" * 40, arena=arena) for _ in range(20)]
    for key in keys:
        key.tag = object()
    refs = [weakref.ref(k, lambda _r: calls.extend((purge(), purge()))) for k in keys]
    del keys, key
    gc.collect()
    assert len(calls) == 40 and all(r() is None for r in refs)
    assert open_secret_count() == 0 and arena.stats().allocations == 0


def test_a_result_class_that_makes_no_secret_is_refused() -> None:
    # from_hex is a classmethod: the class is the caller's, and its __new__ may return
    # ordinary memory, which the codec must not decode into
    class Impostor(SecureBytes):
        __slots__ = ()

        def __new__(cls, size: int, **kwargs: object) -> Impostor:
            return bytearray(size)  # type: ignore[return-value]

    with pytest.raises(TypeError, match="not a SecureBytes"):
        Impostor.from_hex("00ff")
    with pytest.raises(TypeError, match="not a SecureBytes"):
        Impostor.from_base64("AP8=")


SHORT_BUFFER = """
import json
from securemem import SecureBytes
spare = bytearray(4)
class Short(SecureBytes):
    __slots__ = ()
    def __buffer__(self, flags):  # exports 4 bytes whatever its size
        return memoryview(spare)
outcomes = []
for run in (lambda: Short.from_hex("00" * 4096), lambda: Short.from_base64("AAAA" * 1024),
            lambda: Short(b"k" * 4096).to_hex(), lambda: Short(b"k" * 4096).to_base64()):
    try:
        run()
        outcomes.append("returned")
    except TypeError:
        outcomes.append("refused")
print(json.dumps({"outcomes": outcomes, "spare": spare.hex()}))
"""


def test_a_result_class_whose_buffer_is_shorter_than_the_secret_is_refused() -> None:
    # __buffer__ (Python 3.12+) lets a subclass export any memory: a codec that trusted it
    # would write the whole result past the end of a short buffer
    import json

    from tests.conftest import run_on_python_312

    run = run_on_python_312(SHORT_BUFFER)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # to_hex/to_base64 read the source through the same __buffer__ (4 bytes), so they encode
    # those 4 bytes into a result that is too big for them: refused as well
    assert result["outcomes"] == ["refused"] * 4, result
    assert result["spare"] == "00000000", result


CLOSE_MID_DECODE = """
import json, threading
from securemem import Arena, SecureBytes, SecureBytesClosedError
size = 8 << 20
text = bytes(range(256)).hex() * (size // 256)
arena = Arena()
made = []
handed = threading.Event()

class HandsOver(SecureBytes):
    __slots__ = ()
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        made.append(self)
        handed.set()

def closer():
    handed.wait()
    made[-1].close()

outcomes, dirty = [], 0
for _ in range(10):
    handed.clear()
    thread = threading.Thread(target=closer)
    thread.start()
    try:
        HandsOver.from_hex(text, arena=arena).close()
        outcomes.append("returned")
    except SecureBytesClosedError:
        outcomes.append("closed")
    finally:
        thread.join()
    fresh = SecureBytes(size, arena=arena)
    dirty += not fresh == bytes(size)
    fresh.close()
    if "closed" in outcomes:
        break
made.clear()
stats = arena.stats()
print(json.dumps({"outcomes": outcomes, "dirty": dirty, "live": stats.allocations,
                  "waiting": stats.awaiting_views}))
"""


def test_another_thread_closing_the_result_while_it_is_decoded() -> None:
    # the result's class hands it to a thread that closes it (not a purge): the close wipes
    # it under the codec's export, the slot stays the result's until the codec is done, and
    # the next secret of the arena is handed out zeroed. Rounds until the close landed
    # inside a decode (the scheduler's choice), every round checked.
    result = run_json(CLOSE_MID_DECODE)
    assert result["dirty"] == 0, "the next secret holds what the codec wrote"
    assert result["outcomes"][-1] == "closed", result
    assert result["live"] == 0 and result["waiting"] == 0, result


# The real kernel's protect(), with a purge run inside it, before or after the pages change:
# the purge closes the very secret being protected. The close must make the pages writable
# before its wipe (whatever protection the interrupted call was giving them) and the
# mapping must outlive the protect() that is still using it.
PURGE_INSIDE_PROTECT = """
import ctypes, json
import securemem
from securemem import Arena, SecureBytes
from securemem._kernel import NativeKernel

armed = []
unmapped = []
class Purging(NativeKernel):
    def protect(self, address, length, protection):
        if armed and ORDER == "before":
            armed.clear()
            securemem.purge()
        super().protect(address, length, protection)
        if armed and ORDER == "after":
            armed.clear()
            securemem.purge()
    def unmap(self, address, length):
        # the data pages between the two guard pages, read as they go back to the system
        # (made readable first: the interrupted protect() may have left them no-access)
        page = self.page_size
        data = length - 2 * page
        super().protect(address + page, data, "readonly")
        unmapped.append(ctypes.string_at(address + page, data).count(0) == data)
        super().unmap(address, length)

arena = Arena(kernel=Purging())
secret = SecureBytes(b"s" * 40, arena=arena, guarded=True)
view = secret.view() if KEEP_VIEW else None
armed.append(True)
try:
    secret.protect(PROTECTION)
    outcome = "returned"
except securemem.SecureBytesClosedError:
    outcome = "closed"
if view is not None:
    view.release()
print(json.dumps({"closed": secret.closed, "unmapped_wiped": unmapped,
                  "guarded": len(arena.guarded_ranges), "outcome": outcome}))
"""


@pytest.mark.parametrize("keep_view", [False, True])
@pytest.mark.parametrize("protection", ["readonly", "noaccess"])
@pytest.mark.parametrize("order", ["before", "after"])
def test_a_kernel_whose_protect_purges_the_secret_it_protects(
    order: str, protection: str, keep_view: bool
) -> None:
    code = (
        PURGE_INSIDE_PROTECT.replace("ORDER", repr(order))
        .replace("PROTECTION", repr(protection))
        .replace("KEEP_VIEW", repr(keep_view))
    )
    result = run_json(code)  # a SIGSEGV (wipe of a read-only page, use after free) fails here
    assert result["closed"] is True, result
    assert result["unmapped_wiped"] == [True], result  # wiped, then given back exactly once
    assert result["guarded"] == 0, result


def test_a_kernel_whose_protect_purges_while_a_read_gate_is_made() -> None:
    # ReadGate() protects its three parts in turn: the first protect() purges all of them
    result = run_json(
        """
import json
import securemem
from securemem import Arena, SecureBytes
from securemem._binding import ReadGate
from securemem._kernel import NativeKernel

armed = []
class Purging(NativeKernel):
    def protect(self, address, length, protection):
        super().protect(address, length, protection)
        if armed:
            armed.clear()
            securemem.purge()

arena = Arena(kernel=Purging())
parts = [SecureBytes.random(32, arena=arena, guarded=True) for _ in range(2)]
parts.append(SecureBytes(32, arena=arena, guarded=True))
armed.append(True)
try:
    ReadGate(*parts)
    outcome = "made"
except securemem.SecureBytesClosedError:
    outcome = "closed"
print(json.dumps({"outcome": outcome, "closed": [part.closed for part in parts],
                  "guarded": len(arena.guarded_ranges)}))
"""
    )
    assert result == {"outcome": "closed", "closed": [True, True, True], "guarded": 0}, result
