"""Sealed secrets (securemem.Enclave) on the real kernel: round trips, tampering, the key's
page protection, copies in memory and on the stack, core dumps, fork, threads, interrupts and
the memory lock limit."""

from __future__ import annotations

import array
import copy
import json
import mmap
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from hypothesis import given, settings
from hypothesis import strategies as st

from securemem import (
    Enclave,
    EnclaveError,
    SecureBytes,
    SecureBytesClosedError,
    SecureMemoryError,
    _enclave,
    _procfs,
    purge,
)
from securemem._binding import ReadGate, open_secret_count
from tests import stackview
from tests.conftest import REPO, child_env, run_json, run_python
from tests.memscan import Marker
from tests.test_coredump import _gcore, masked_child, needs_gcore


def opened(enclave: Enclave) -> bytes:
    with enclave.open() as secret:
        return bytes(secret.view())  # test data only: never do this with a real secret


def key_parts() -> tuple[SecureBytes, SecureBytes, SecureBytes]:
    """(left half, right half, scratch) of the process key."""
    parts = _enclave._KEY.parts
    assert parts is not None
    return parts


def page_flags(secret: SecureBytes) -> frozenset[str]:
    """The VmFlags of the page that holds ``secret``, as the kernel reports them."""
    mapping = _procfs.mapping_at(secret.address)
    assert mapping is not None
    return mapping.flags


def key_at_rest() -> tuple[int, bool]:
    """(users, whether the scratch holds zeros: the key is nowhere whole)."""
    return _enclave._KEY.users, key_parts()[2] == bytes(32)


def whole_key_marker() -> Marker:
    """A copy of the whole key (left XOR right) in a scan-excluded Marker."""
    gate, _ = _enclave._KEY.current(None)
    return gate.call(Marker.copy_of)


# -- round trips ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_round_trip(data: bytes) -> None:
    enclave = Enclave(data)
    assert len(enclave) == len(data)
    with enclave.open() as secret:
        assert isinstance(secret, SecureBytes) and secret == data
    assert secret.closed, "the with block closes (and wipes) the opened secret"


@pytest.mark.parametrize(
    "make",
    [
        lambda: bytearray(b"0123456789abcdef"),
        lambda: memoryview(b"0123456789abcdef"),
        lambda: array.array("I", b"0123456789abcdef"),
        lambda: memoryview(bytearray(b"0x1x2x3x4x5x6x7x8x9xaxbxcxdxexfx"))[::2],  # strided
        lambda: SecureBytes(b"0123456789abcdef"),
    ],
    ids=["bytearray", "memoryview", "array", "strided", "SecureBytes"],
)
def test_a_source_is_sealed_and_left_as_it_was(make: object) -> None:
    source = make()  # type: ignore[operator]
    enclave = Enclave(source)
    assert opened(enclave) == b"0123456789abcdef"
    assert bytes(memoryview(source).tobytes() if not isinstance(source, SecureBytes)
                 else source.view()) == b"0123456789abcdef"
    if isinstance(source, SecureBytes):
        assert not source.closed, "the caller closes its SecureBytes"
        source.close()


def test_a_noaccess_guarded_source_is_opened_for_the_seal_and_protected_again() -> None:
    with SecureBytes(b"guarded source", guarded=True) as source:
        source.protect("noaccess")
        enclave = Enclave(source)
        assert source.protection == "noaccess"
        assert opened(enclave) == b"guarded source"


def test_random_seals_fresh_csprng_bytes() -> None:
    first, second = Enclave.random(32), Enclave.random(32)
    assert len(first) == 32
    with first.open() as a, second.open() as b:
        assert a != b and a != bytes(32)


def test_each_seal_draws_a_fresh_nonce() -> None:
    enclaves = [Enclave(b"same plaintext") for _ in range(2000)]
    assert len({e._nonce for e in enclaves}) == 2000
    assert len({bytes(e._ciphertext or b"") for e in enclaves}) == 2000


# -- take -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: bytearray(b"take me and wipe"),
        lambda: memoryview(bytearray(b"take me and wipe")),
        lambda: array.array("B", b"take me and wipe"),
    ],
    ids=["bytearray", "memoryview", "array"],
)
def test_take_seals_then_wipes_a_writable_source(make: object) -> None:
    source = make()  # type: ignore[operator]
    enclave = Enclave.take(source)
    assert memoryview(source).tobytes() == bytes(16)
    assert opened(enclave) == b"take me and wipe"


def test_take_wipes_an_mmap() -> None:
    with mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as region:
        region[:12] = b"from an mmap"
        enclave = Enclave.take(region)
        assert region[:] == bytes(4096)
        assert opened(enclave)[:12] == b"from an mmap"


def test_take_wipes_a_securebytes_and_leaves_it_open() -> None:
    with SecureBytes(b"in locked memory", guarded=True) as source:
        source.protect("readonly")
        enclave = Enclave.take(source)
        assert not source.closed and source.protection == "readonly"
        assert source == bytes(16)
    assert opened(enclave) == b"in locked memory"


@pytest.mark.parametrize(
    "source",
    [b"immutable bytes", memoryview(bytearray(b"read-only view!")).toreadonly()],
    ids=["bytes", "readonly-memoryview"],
)
def test_take_refuses_a_source_it_cannot_wipe(source: bytes | memoryview) -> None:
    before = memoryview(source).tobytes()
    with pytest.raises(TypeError, match="cannot be wiped"):
        Enclave.take(source)
    assert memoryview(source).tobytes() == before


# -- what an enclave refuses ------------------------------------------------------------


def test_repr_shows_the_size_only() -> None:
    enclave = Enclave(b"hunter2")
    assert repr(enclave) == str(enclave) == "<Enclave size=7>"


def test_equality_hash_and_pickle_refuse() -> None:
    first, second = Enclave(b"same"), Enclave(b"same")
    with pytest.raises(TypeError, match="cannot be compared"):
        first == second  # noqa: B015
    with pytest.raises(TypeError, match="cannot be compared"):
        first != first  # noqa: B015
    with pytest.raises(TypeError, match="unhashable"):
        hash(first)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(first)
    assert copy.copy(first) is first and copy.deepcopy([first])[0] is first


@pytest.mark.parametrize("bad", ["text", 32, None, 1.5])
def test_a_non_buffer_is_refused_by_name(bad: object) -> None:
    with pytest.raises(TypeError, match=type(bad).__name__):
        Enclave(bad)  # type: ignore[arg-type]


def test_a_closed_securebytes_cannot_be_sealed() -> None:
    secret = SecureBytes(b"gone")
    secret.close()
    with pytest.raises(SecureBytesClosedError):
        Enclave(secret)


# -- closing ----------------------------------------------------------------------------


def test_close_is_idempotent_and_every_later_use_says_closed() -> None:
    enclave = Enclave(b"closed soon")
    assert not enclave.closed
    enclave.close()
    enclave.close()
    assert enclave.closed and repr(enclave) == "<Enclave closed>"
    for use in (enclave.open, lambda: len(enclave)):
        with pytest.raises(EnclaveError, match="this enclave is closed: close\\(\\) wiped"):
            use()
    with pytest.raises(TypeError):
        pickle.dumps(enclave)


def test_a_with_block_closes_the_enclave_also_on_an_exception() -> None:
    with Enclave(b"in a block") as enclave:
        assert opened(enclave) == b"in a block"
    assert enclave.closed
    with pytest.raises(RuntimeError), Enclave(b"raised in a block") as other:
        raise RuntimeError
    assert other.closed


def test_close_wipes_the_ciphertext_from_memory() -> None:
    enclave = Enclave(b"the ciphertext of this goes away")
    opened(enclave)
    assert enclave._ciphertext is not None
    kept = memoryview(enclave._ciphertext)  # an export someone holds: wiped in place all the same
    with Marker.copy_of(enclave._ciphertext) as marker:
        # The control, and the proof that sealing and opening made no other copy.
        assert len(marker.scan().found) == 1
        enclave.close()
        assert marker.scan().found == [], marker.scan().describe()
    assert kept == bytes(len(kept))
    kept.release()


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_close_inside_an_open_returns_nothing(
    when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # User code that runs inside open() (a finalizer, a profiler, a signal handler) and
    # closes the enclave, before or after the decryption.
    enclave = Enclave(b"closed while being opened")
    real_class, invalid_tag = _enclave._aead()

    class ClosingMidway:
        def __init__(self, key: SecureBytes) -> None:
            self.real = real_class(key)  # type: ignore[arg-type]

        def decrypt_into(self, *args: object) -> None:
            if when == "before":
                enclave.close()
            self.real.decrypt_into(*args)  # type: ignore[arg-type]
            if when == "after":
                enclave.close()

    monkeypatch.setattr(_enclave, "_cipher", (ClosingMidway, invalid_tag))
    before = open_secret_count()
    with pytest.raises(EnclaveError, match="this enclave is closed"):
        enclave.open()
    assert open_secret_count() == before, "the plaintext was closed (wiped), not returned"
    assert enclave.closed


def test_a_close_from_another_thread_during_an_open_returns_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enclave = Enclave(b"closed by another thread")
    real_class, invalid_tag = _enclave._aead()
    inside, closed = threading.Event(), threading.Event()

    class Waiting:  # the real cipher, pausing between its build and its decryption
        def __init__(self, key: SecureBytes) -> None:
            self.real = real_class(key)  # type: ignore[arg-type]

        def decrypt_into(self, *args: object) -> None:
            inside.set()
            assert closed.wait(30)
            self.real.decrypt_into(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_enclave, "_cipher", (Waiting, invalid_tag))
    outcome: list[BaseException | SecureBytes] = []

    def open_it() -> None:
        try:
            outcome.append(enclave.open())
        except BaseException as error:
            outcome.append(error)

    opener = threading.Thread(target=open_it)
    opener.start()
    assert inside.wait(30)
    enclave.close()
    closed.set()
    opener.join()
    monkeypatch.undo()
    assert len(outcome) == 1 and isinstance(outcome[0], EnclaveError), outcome
    assert "this enclave is closed" in str(outcome[0])
    assert key_at_rest() == (0, True)


def test_close_and_purge_in_either_order() -> None:
    closed_first, purged_first = Enclave(b"closed, then purged"), Enclave(b"purged, then closed")
    closed_first.close()
    purge()
    with pytest.raises(EnclaveError, match="this enclave is closed"):
        closed_first.open()  # closed says more than "sealed under a lost key"
    with pytest.raises(EnclaveError, match="purge"):
        purged_first.open()
    purged_first.close()  # still wipes what is left
    assert purged_first.closed
    with pytest.raises(EnclaveError, match="this enclave is closed"):
        purged_first.open()


CLOSE_AND_FORK = """
import json, os
from securemem import Enclave, EnclaveError
Enclave.share_with_children()
closed, kept = Enclave(b"closed before the fork"), Enclave(b"kept open")
closed.close()
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    report = {"child_closed": closed.closed}
    try:
        closed.open()
    except EnclaveError as error:
        report["child_error"] = str(error)
    with kept.open() as secret:
        report["child_opens_kept"] = secret == b"kept open"
    kept.close()  # the child's copy only
    os.write(write_end, json.dumps(report).encode())
    os._exit(0)
os.close(write_end)
report = json.loads(os.read(read_end, 1 << 16))
os.waitpid(pid, 0)
with kept.open() as secret:
    report["parent_still_opens_kept"] = secret == b"kept open"
print(json.dumps(report))
"""


def test_a_closed_enclave_stays_closed_in_a_forked_child_and_a_child_closes_its_own_copy() -> None:
    report = fork_report(CLOSE_AND_FORK)
    assert report["child_closed"] is True
    assert "this enclave is closed" in str(report["child_error"])
    assert report["child_opens_kept"] and report["parent_still_opens_kept"]


# -- tampering --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["_nonce", "_ciphertext"])
def test_any_flipped_bit_is_refused(field: str) -> None:
    enclave = Enclave(b"a secret worth 32 bytes of space")
    original: bytes = getattr(enclave, field)
    for index in range(len(original)):
        for bit in (0, 7):
            altered = bytearray(original)
            altered[index] ^= 1 << bit
            setattr(enclave, field, bytes(altered))
            with pytest.raises(EnclaveError, match="failed authentication") as caught:
                enclave.open()
            assert isinstance(caught.value, SecureMemoryError) and isinstance(
                caught.value, ValueError
            )
    setattr(enclave, field, original)
    assert opened(enclave) == b"a secret worth 32 bytes of space"


def test_truncated_or_swapped_ciphertexts_are_refused() -> None:
    first, second = Enclave(b"first secret 16b"), Enclave(b"second secret16b")
    good = first._ciphertext
    assert good is not None
    first._ciphertext = good[:-1]
    with pytest.raises(EnclaveError):
        first.open()
    first._ciphertext = bytearray(b"short")
    with pytest.raises(EnclaveError, match="0 bytes"):
        first.open()
    first._ciphertext = second._ciphertext  # another enclave's ciphertext, own nonce
    with pytest.raises(EnclaveError):
        first.open()
    first._ciphertext = good
    assert opened(first) == b"first secret 16b"


def test_a_refused_open_leaves_no_plaintext_in_memory() -> None:
    with Marker(40) as marker:
        enclave = Enclave(marker.view())
        assert enclave._ciphertext is not None
        altered = bytearray(enclave._ciphertext)
        altered[-1] ^= 1  # the tag: cryptography writes the plaintext before checking it
        enclave._ciphertext = altered
        with pytest.raises(EnclaveError) as caught:
            enclave.open()
        assert marker.scan().found == []
        assert "failed authentication" in str(caught.value)
        # The error and its traceback are alive here: no frame of theirs may hold a cipher
        # (an AEAD object keeps the expanded key, which starts with the key itself).
        with whole_key_marker() as key:
            assert key.scan().found == []


# -- copies in memory and the key's protection ----------------------------------------


def test_sealing_and_opening_leave_no_copy_of_the_plaintext() -> None:
    with Marker(32) as marker:
        enclave = Enclave(marker.view())
        assert marker.scan().found == [], "the plaintext was copied while sealing"
        with enclave.open() as secret:
            assert marker.scan().found == [secret.address]
        assert marker.scan().found == []


def test_the_whole_key_exists_nowhere_between_operations() -> None:
    enclave = Enclave(b"x" * 32)
    opened(enclave)
    left, right, scratch = key_parts()
    with whole_key_marker() as marker:
        # No AEAD object outlives its operation (OpenSSL's expanded key starts with the key
        # itself) and the scratch is wiped after the last user: no copy anywhere.
        assert marker.scan().found == []
        gate, _ = _enclave._KEY.current(None)
        # The control: during an operation the scan finds it, in the scratch only.
        assert gate.call(lambda key: marker.scan().found) == [scratch.address]
    for half in (left, right):
        with Marker.copy_of(half) as marker:
            assert marker.scan().found == [half.address], "a half was copied"


def test_the_key_parts_are_locked_undumped_pages_of_their_own() -> None:
    opened(Enclave(b"warm up the key"))
    assert key_at_rest() == (0, True)
    left, right, scratch = key_parts()
    pages = {part.address // mmap.PAGESIZE for part in (left, right, scratch)}
    assert len(pages) == 3, "a stray read of one page must not reach two parts"
    for half in (left, right):
        assert half.protection == "readonly"
        flags = page_flags(half)
        assert "rd" in flags and "wr" not in flags  # a stray write cannot corrupt the key
        assert {"lo", "dd", "wf"} <= flags  # locked, not dumped, wiped on fork
    assert {"lo", "dd", "wf"} <= page_flags(scratch)


def test_the_key_is_whole_only_during_an_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, bool]] = []
    real_class, invalid_tag = _enclave._aead()

    def spy(key: SecureBytes) -> AESGCMSIV:
        users, wiped = key_at_rest()
        seen.append((users == 1, wiped))  # inside the operation, the key in use
        return real_class(key)  # type: ignore[arg-type]

    monkeypatch.setattr(_enclave, "_cipher", (spy, invalid_tag))
    opened(Enclave(b"during"))
    monkeypatch.undo()
    assert seen == [(True, False), (True, False)]
    assert key_at_rest() == (0, True)


def test_the_key_gate_checks_what_it_is_given() -> None:
    def parts(*sizes: int) -> list[SecureBytes]:
        return [SecureBytes.random(size, guarded=True) for size in sizes]

    first, second, short = parts(32, 32, 16)
    with pytest.raises(TypeError, match="guarded SecureBytes, not bytes"):
        ReadGate(b"not a secret", first, second)  # type: ignore[arg-type]
    with SecureBytes(32) as packed, pytest.raises(ValueError, match="guarded=True"):
        ReadGate(first, second, packed)
    with pytest.raises(ValueError, match="same, non-zero size"):
        ReadGate(first, second, short)
    left = parts(32)[0]
    with pytest.raises(ValueError, match="three distinct"):
        ReadGate(left, left, parts(32)[0])
    closed = parts(32)[0]
    closed.close()
    with pytest.raises(SecureBytesClosedError):
        ReadGate(first, second, closed)
    left, right, scratch = parts(32, 32, 32)
    with left.view() as a, right.view() as b:
        expected = bytes(x ^ y for x, y in zip(a, b, strict=True))  # test data only
    gate = ReadGate(left, right, scratch)
    assert gate.parts == (left, right, scratch) and not gate.closed
    assert left.protection == right.protection == "readonly" and scratch == bytes(32)
    with pytest.raises(TypeError, match="callable"):
        gate.call(b"not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initialised once"):
        gate.__init__(left, right, scratch)  # type: ignore[misc]
    assert gate.call(lambda key, n: (gate.users, key is scratch, key == expected, n), 2) == (
        1, True, True, 2,
    )
    assert gate.users == 0 and scratch == bytes(32)
    with pytest.raises(RuntimeError, match="raised inside"):
        gate.call(lambda key: (_ for _ in ()).throw(RuntimeError("raised inside")))
    assert gate.users == 0 and scratch == bytes(32), "wiped on the way out of an exception"
    left.protect("noaccess")
    with pytest.raises(ValueError, match="protected against"):
        gate.call(len)  # refused, not a fault reading the half
    left.protect("readonly")
    right.close()
    assert gate.closed
    with pytest.raises(SecureBytesClosedError):
        gate.call(len)
    with pytest.raises(TypeError, match="never initialised"):
        ReadGate.__new__(ReadGate).call(len)
    for part in (left, scratch, first, second, short):
        part.close()


# What native code leaves on the stack: read from a second thread while this one blocks
# (tests/stackview.py). The control is a copy of the plaintext's last partial block that the
# tests' own native helper leaves there; seal and open must leave none.
PARTIAL = 15  # a 47-byte secret: two AES blocks and 15 bytes, those 15 a marker


@pytest.mark.skipif(not stackview.supported(), reason="reads the stack through /proc")
def test_seal_and_open_leave_no_plaintext_or_key_on_the_stack() -> None:
    with Marker(PARTIAL) as marker, SecureBytes(32 + PARTIAL) as plaintext:
        with plaintext.view() as view:
            view[:32] = os.urandom(32)
            view[32:] = marker.view()
        enclave = Enclave(plaintext)
        key_marker = whole_key_marker()
        with marker.view() as needle, key_marker, key_marker.view() as key_needle:
            control = stackview.stack_depths_after(
                lambda: stackview.leave_on_stack(needle), needle
            )
            sealed = stackview.stack_depths_after(
                lambda: Enclave(plaintext), needle, clean_start=True
            )
            opened_ = stackview.stack_depths_after(lambda: enclave.open().close(), needle)
            key_after_seal = stackview.stack_depths_after(lambda: Enclave(plaintext), key_needle)
            key_after_open = stackview.stack_depths_after(
                lambda: enclave.open().close(), key_needle
            )
    assert len(control) == 1, f"the reader did not find the copy the test left: {control}"
    assert sealed == [] and opened_ == [], (sealed, opened_)
    assert key_after_seal == [] and key_after_open == [], (key_after_seal, key_after_open)


# -- interrupts and threads -------------------------------------------------------------


def test_interrupts_never_leave_the_key_whole() -> None:
    enclave = Enclave(b"interrupted open")
    main = threading.get_ident()
    stop = threading.Event()
    armed = [False]

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if armed[0]:
            raise KeyboardInterrupt

    def interrupter() -> None:
        while not stop.is_set():
            time.sleep(0.00005)
            signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_sigint)
    thread = threading.Thread(target=interrupter)
    thread.start()
    interrupts = completed = 0
    try:
        while interrupts < 200:
            try:
                armed[0] = True
                secret = enclave.open()
                armed[0] = False
                assert secret == b"interrupted open"
                secret.close()
                completed += 1
            except KeyboardInterrupt:
                armed[0] = False
                interrupts += 1
    finally:
        armed[0] = False
        stop.set()
        thread.join()
        signal.signal(signal.SIGINT, previous)
    assert key_at_rest() == (0, True)
    assert opened(enclave) == b"interrupted open"


# A process-directed SIGINT (what Ctrl-C sends) goes to any thread that does not block
# it; CPython then raises KeyboardInterrupt in the main thread at its next check point
# (a function's entry, the return of a call into C), wherever that is. The test drives
# where: a profile function sends the signal at the k-th such point inside
# securemem._enclave, for every k that an open and a seal reach, several sweeps over
# (when the signal lands on another thread, it is raised a few points later). Idle
# threads stay alive throughout, as in any threaded program.
INTERRUPTED_WITH_THREADS = """
import faulthandler, json, os, signal, sys, threading
from securemem import Enclave, _enclave
faulthandler.dump_traceback_later(100, exit=True)  # a deadlock fails, with its stacks
# Started in the background (`&`, nohup, a CI job), this process inherits SIGINT ignored
# and Python installs no handler: every interrupt would be lost. Ctrl-C as a terminal
# program gets it is what the test is about.
signal.signal(signal.SIGINT, signal.default_int_handler)
IDLE, SWEEPS = int(sys.argv[1]), int(sys.argv[2])
ENCLAVE = _enclave.__file__
done = threading.Event()
threads = [threading.Thread(target=done.wait) for _ in range(IDLE)]
for thread in threads:
    thread.start()
enclave = Enclave(b"opened under interrupts")

def operations():
    with enclave.open() as secret:
        assert secret == b"opened under interrupts"
    Enclave(b"sealed under interrupts")

def profiler(at, sent):
    seen = [0]
    def profile(frame, event, arg):
        if (event == "call" or event == "c_return") and frame.f_code.co_filename == ENCLAVE:
            seen[0] += 1
            if seen[0] == at:
                sent.append(True)
                os.kill(os.getpid(), signal.SIGINT)  # the process, not this thread
    return profile, seen

count, points = profiler(0, [])
sys.setprofile(count)
operations()
sys.setprofile(None)
interrupts = missed = 0
for _ in range(SWEEPS):
    for at in range(1, points[0] + 1):
        sent = []
        try:
            sys.setprofile(profiler(at, sent)[0])
            operations()
            sys.setprofile(None)
            for _ in range(10_000_000):  # sent: it lands within a few bytecodes
                if not sent:
                    break
            else:
                missed += 1
        except KeyboardInterrupt:
            interrupts += 1
        finally:
            sys.setprofile(None)
done.set()
for thread in threads:
    thread.join()
wiped = _enclave._KEY.parts[2] == bytes(32)
with enclave.open() as secret:
    works = secret == b"opened under interrupts"
print(json.dumps({"interrupts": interrupts, "points": points[0], "missed": missed,
                  "users": _enclave._KEY.users, "wiped": wiped, "works": works}))
"""


@pytest.mark.parametrize("idle_threads", [1, 3])
def test_ctrl_c_with_other_threads_alive_never_leaves_the_key_whole(idle_threads: int) -> None:
    sweeps = 5
    result = run_python(INTERRUPTED_WITH_THREADS, str(idle_threads), str(sweeps))
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["points"] > 10 and outcome["missed"] == 0, outcome
    assert outcome["interrupts"] == sweeps * outcome["points"], outcome
    assert outcome["users"] == 0, outcome
    assert outcome["wiped"], "the whole key must be wiped when nothing uses it"
    assert outcome["works"]


THREADS = """
import json, sys, threading
from securemem import Enclave, _enclave
sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
failures, done = [], [0] * 4
def work(index):
    mine = [(bytes([index, n % 256]) * 16, None) for n in range(40)]
    mine = [(data, Enclave(data)) for data, _ in mine]
    for round in range(600):
        data, enclave = mine[round % 40]
        with enclave.open() as secret:
            if secret != data:
                failures.append(index)
        if round % 7 == 0:
            mine[round % 40] = (data, Enclave(data))
        done[index] += 1
threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"failures": failures, "done": done, "users": _enclave._KEY.users,
                  "wiped": _enclave._KEY.parts[2] == bytes(32)}))
"""


def test_threads_seal_and_open_at_once() -> None:
    result = run_python(THREADS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(
        '{"failures": [], "done": [600, 600, 600, 600], "users": 0, "wiped": true}'
    )


# The interleaving the count exists for, driven step by step: thread A holds the key (as
# inside a seal or open), thread B opens an enclave and finishes, then A reads the key.
OVERLAP = """
import json, sys, threading
from securemem import Enclave, _enclave
if sys.argv[1] == "broken":  # what a per-operation wipe without a count would do
    real_decrypt = _enclave._decrypt_into
    def decrypt_then_wipe_the_key(key, *args):
        try:
            real_decrypt(key, *args)
        finally:
            key.wipe()
    _enclave._decrypt_into = decrypt_then_wipe_the_key
enclave = Enclave(b"opened by the other thread")
a_holds, b_done, seen = threading.Event(), threading.Event(), []
def hold_the_key(key):  # inside the gate, as a seal or open is
    a_holds.set()
    b_done.wait()
    seen.append(key != bytes(32))  # False if B's finish wiped the key under A
def a():
    gate, _ = _enclave._KEY.current(None)
    gate.call(hold_the_key)
def b():
    a_holds.wait()
    with enclave.open() as secret:
        seen.append(secret == b"opened by the other thread")
    b_done.set()
threads = [threading.Thread(target=a), threading.Thread(target=b)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"seen": seen, "users": _enclave._KEY.users,
                  "wiped": _enclave._KEY.parts[2] == bytes(32)}))
"""


def test_a_key_in_use_stays_whole_when_another_thread_finishes_with_it() -> None:
    result = run_python(OVERLAP, "counted")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"seen": [True, True], "users": 0, "wiped": True}


def test_the_overlap_test_catches_a_key_wiped_under_another_thread() -> None:
    # The control: without the count, B's finish wipes the key while A still uses it.
    result = run_python(OVERLAP, "broken")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["seen"] == [True, False]


# -- fork -------------------------------------------------------------------------------

FORK = """
import json, os, sys
from securemem import Enclave, EnclaveError, _enclave, _procfs
from tests.memscan import Marker
SHARE = sys.argv[1] == "share"
parent = Enclave(b"sealed by the parent, 32 bytes!!")
if SHARE:
    Enclave.share_with_children()
gate, _ = _enclave._KEY.current(None)
marker = gate.call(Marker.copy_of)  # the whole key, in a page the scan skips
parts = _enclave._KEY.parts
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    report = {}
    try:
        with parent.open() as secret:
            report["opened"] = secret == b"sealed by the parent, 32 bytes!!"
    except EnclaveError as error:
        report["error"] = str(error)
    mine = Enclave(b"sealed by the child")
    with mine.open() as secret:
        report["own"] = secret == b"sealed by the child"
    child_parts = _enclave._KEY.parts
    report["new_key_page"] = not set(map(id, child_parts)) & set(map(id, parts))
    flags = _procfs.mapping_at(child_parts[0].address).flags
    report["child_key_flags"] = sorted(flags & {"lo", "dd", "wf", "wr"})
    os.write(write_end, json.dumps(report).encode())
    os._exit(0)
os.close(write_end)
report = json.loads(os.read(read_end, 1 << 16))
os.waitpid(pid, 0)
with parent.open() as secret:
    report["parent_still_opens"] = secret == b"sealed by the parent, 32 bytes!!"
with marker:
    report["key_copies"] = len(marker.scan().found)  # the transfer page is wiped
print(json.dumps(report))
"""


def fork_report(code: str) -> dict[str, object]:
    """Run ``code``; its at-fork hooks must raise nothing (Python would only print it)."""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_a_forked_child_cannot_open_its_parents_enclaves() -> None:
    report = fork_report(FORK.replace("sys.argv[1]", '"private"'))
    assert "opened" not in report
    assert "sealed by the parent of this forked process" in str(report["error"])
    assert "share_with_children" in str(report["error"])
    assert report["own"] and report["new_key_page"] and report["parent_still_opens"]
    assert report["child_key_flags"] == ["dd", "lo", "wf"]  # a read-only half: no "wr"
    assert report["key_copies"] == 0, "the whole key is nowhere at rest"


def test_share_with_children_hands_the_key_to_a_child() -> None:
    report = fork_report(FORK.replace("sys.argv[1]", '"share"'))
    assert report.get("opened") is True, report
    assert report["own"] and report["new_key_page"] and report["parent_still_opens"]
    assert report["child_key_flags"] == ["dd", "lo", "wf"]
    assert report["key_copies"] == 0, "the page that carried the key must be wiped"


def test_sharing_can_be_turned_off_again() -> None:
    code = FORK.replace("sys.argv[1]", '"share"').replace(
        "\nparts = _enclave._KEY.parts",
        "\nEnclave.share_with_children(False)\nparts = _enclave._KEY.parts",
    )
    report = fork_report(code)
    assert "sealed by the parent" in str(report["error"])


# -- core dumps -------------------------------------------------------------------------

SEALER = """
import sys
from securemem import Enclave, _enclave

def unmask(line, target):
    for index, byte in enumerate(bytes.fromhex(line.decode().strip())):
        target[index] = byte ^ 0x5A

line = sys.stdin.buffer.readline()
source = bytearray(len(line.strip()) // 2)
unmask(line, source)
enclave = Enclave.take(source)  # the bytearray is wiped: the enclave holds the only copy
def masked(part):
    with memoryview(part) as view:
        return "".join(f"{byte ^ 0x5A:02x}" for byte in view)  # small ints: no copy
gate, _ = _enclave._KEY.current(None)
masked_key = gate.call(masked)
left, right, _ = _enclave._KEY.parts
print(enclave._ciphertext.hex(), masked_key, masked(left), masked(right), flush=True)
sys.stdin.buffer.readline()  # hold everything until the dump is taken
"""


@needs_gcore
def test_a_core_dump_holds_the_ciphertext_but_not_the_secret_or_the_key(
    tmp_path: Path,
) -> None:
    secret = os.urandom(32)
    with masked_child(SEALER, secret) as process:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert len(line) == 4, "the sealing process died before it was ready"
        ciphertext = bytes.fromhex(line[0].decode())
        key, left, right = (bytes(b ^ 0x5A for b in bytes.fromhex(x.decode())) for x in line[1:])
        dump = _gcore(process.pid, tmp_path)
    assert ciphertext in dump, "the search cannot find the ciphertext: the test is broken"
    assert secret not in dump
    assert key not in dump  # wiped after use, and no AEAD object outlived a seal
    assert left not in dump and right not in dump  # their pages are MADV_DONTDUMP


# -- scale under a 64 KiB memory lock limit --------------------------------------------

SCALE = """
import json, mmap
import securemem
from securemem import Enclave, _procfs
N = 20_000
enclaves = []
for n in range(N):
    enclaves.append(Enclave(n.to_bytes(4, "little") * 8))
    if n == 999:
        locked_at_1000 = _procfs.process_locked_bytes()
locked_at_n = _procfs.process_locked_bytes()
wrong = 0
for n, enclave in enumerate(enclaves):
    with enclave.open() as secret:
        wrong += secret != n.to_bytes(4, "little") * 8
print(json.dumps({"wrong": wrong, "at_1000": locked_at_1000, "at_n": locked_at_n,
                  "after_opens": _procfs.process_locked_bytes(), "page": mmap.PAGESIZE,
                  "stats": securemem.stats().locked_bytes}))
"""


def test_twenty_thousand_enclaves_under_a_64_kib_limit() -> None:
    report = run_json(SCALE, memlock=65536)
    assert report["wrong"] == 0
    # Sealing locks nothing but the key's three pages (two halves, the scratch), however
    # many enclaves there are; opening adds the arena page an opened secret lives in
    # (kept in the arena's reserve after).
    assert report["at_1000"] == report["at_n"] == 3 * report["page"]
    assert report["after_opens"] == report["stats"] <= 5 * report["page"]


def test_no_lockable_memory_for_the_key_is_a_memory_lock_error() -> None:
    result = run_python(
        """
        import securemem
        try:
            securemem.Enclave(b"x")
        except securemem.MemoryLockError as error:
            print("MemoryLockError:", error)
        """,
        memlock=0,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MemoryLockError: [Errno 1] could not lock 4096 bytes")
    assert "RLIMIT_MEMLOCK is 0 bytes" in result.stdout


def test_without_cryptography_enclave_says_what_to_install() -> None:
    result = run_python(
        """
        import sys
        sys.modules["cryptography"] = None  # as if it were not installed
        import securemem
        try:
            securemem.Enclave(b"x")
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'securemem[crypto]'" in result.stdout


def test_the_benchmark_runs_and_its_scale_child_opens_every_enclave() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "enclave.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["round_trip_us"]) >= {"enclave_open_close", "memguard_open_close"}
    scale = report["scale"]
    assert scale["enclaves"] == 2000 and scale["wrong"] == 0
    assert scale["memlock_limit"] == 65536
    assert scale["vmlck_after_sealing"] == 3 * mmap.PAGESIZE  # the key's pages, nothing more
