"""securemem.purge() and purge_on_exit() on the real kernel.

What is checked, and how:

* every open secret of every arena (packed, guarded, memfd_secret, prefetching) is
  wiped and closed, the enclave key with them, and ``VmLck`` in /proc/self/status goes
  back to what it was before the first secret (a fresh child process, so no other
  test's memory counts);
* memory under a live memoryview is wiped at once, stays mapped and readable (zeros)
  until the view goes, and is never unmapped under it;
* threads hammering secrets while another thread, or a signal handler, purges: no
  crash (a child process: a SIGSEGV is its exit status), no read of another secret's
  bytes, every secret that existed before a purge closed after it;
* purge_on_exit: real signals sent to real children. Their secrets live in a file
  mapped shared (tests/sharedkernel.py), so after the child died the parent reads
  what the secrets held at death: zeros when purge ran, the marker when it did not
  (the control). The exit status must name the signal. For a chained handler the
  child stops itself inside the previous handler and the parent reads the secret
  through /proc/PID/mem.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from securemem._native import ffi

import securemem
from securemem import (
    Arena,
    CanaryError,
    Enclave,
    EnclaveError,
    SecureBytes,
    SecureBytesClosedError,
    _enclave,
    _procfs,
    _purge,
    purge,
    purge_on_exit,
)
from securemem._binding import open_secret_count
from securemem._secretmem import secretmem_available

from .conftest import child_env, run_json

HAVE_SECRETMEM = secretmem_available()[0]
MARKER = b"PURGE-ME-0123456789abcdefPURGE"


# What a program run from a terminal starts with. A run started in the background (`&`,
# nohup, a CI job) inherits SIGINT, SIGQUIT and SIGHUP ignored, and purge_on_exit rightly
# leaves ignored signals alone: each test starts from the terminal's handling instead, so
# its outcome does not depend on how pytest was launched.
TERMINAL_HANDLING: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int] = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
    signal.SIGHUP: signal.SIG_DFL,
    signal.SIGQUIT: signal.SIG_DFL,
}


@pytest.fixture(autouse=True)
def _no_handlers_left() -> Iterator[None]:
    inherited = {n: signal.signal(n, h) for n, h in TERMINAL_HANDLING.items()}
    try:
        yield
        _purge.PurgeOnExit().undo()
        assert {n: signal.getsignal(n) for n in TERMINAL_HANDLING} == TERMINAL_HANDLING
    finally:
        for number, handler in inherited.items():
            signal.signal(number, handler)


# -- what purge closes ------------------------------------------------------------------


def test_every_operation_on_a_purged_secret_raises_closed() -> None:
    plain, guarded = SecureBytes(b"plain secret"), SecureBytes(b"guarded secret", guarded=True)
    copy_of = SecureBytes(b"x" * 5000)  # a page run
    assert purge() >= 3
    for secret in (plain, guarded, copy_of):
        assert secret.closed and "closed" in repr(secret)
        for operation in (
            lambda s: s[0],
            lambda s: s.__setitem__(0, 1),
            lambda s: s[1:3],
            lambda s: s.__setitem__(slice(0, 2), b"ab"),
            lambda s: len(s),
            lambda s: s == b"plain secret",
            lambda s: s.wipe(),
            lambda s: s.randomize(),
            lambda s: memoryview(s),
            lambda s: bytes(s),
            lambda s: s.view(),
            lambda s: s.__copy__(),
            lambda s: s.check(),
            lambda s: s.address,
            lambda s: s.__enter__(),
        ):
            with pytest.raises(SecureBytesClosedError):
                operation(secret)
        secret.close()  # closing again is harmless, as after close()


def test_new_secrets_work_after_a_purge_and_only_open_ones_count() -> None:
    old = SecureBytes(b"old")
    purge()
    assert open_secret_count() == 0 and old.closed
    with SecureBytes(b"new one") as new, SecureBytes(b"guarded", guarded=True) as g:
        assert new == b"new one" and g == b"guarded"
        assert open_secret_count() == 2
    assert open_secret_count() == 0
    assert purge() == 0


def test_a_view_keeps_the_memory_mapped_and_wiped_until_released() -> None:
    arena = Arena(reserve_pages=0)
    for guarded in (False, True):
        secret = SecureBytes(MARKER, arena=arena, guarded=guarded)
        view = memoryview(secret)
        address = secret.address
        purge()
        assert secret.closed
        assert bytes(view) == bytes(len(MARKER)), "wiped at once, readable through the view"
        mapping = _procfs.mapping_at(address)
        assert mapping is not None and mapping.locked, "never unmapped (or unlocked) under a view"
        view[:4] = b"late"  # a stale view may still write: wiped again when it goes
        assert arena.stats().locked_bytes > 0
        view.release()
        purge()  # what the view held is given back now
        assert arena.stats().locked_bytes == 0 and arena.stats().allocations == 0
        after = _procfs.mapping_at(address)
        assert after is None or not after.locked


def test_a_broken_canary_is_reported_and_the_purge_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reports.append(u.exc_type))
    guarded = SecureBytes(b"guarded", guarded=True)
    after = SecureBytes(b"the next one")
    ffi.cast("unsigned char *", guarded.address - 1)[0] ^= 0xFF  # into the canary
    purge()
    assert reports == [CanaryError]
    assert guarded.closed and after.closed


def test_a_secret_under_garbage_collection_is_never_touched_twice() -> None:
    # purge while secrets are dropped from weakref callbacks that purge again
    import weakref

    calls: list[int] = []
    secrets = [SecureBytes(b"s" * 40) for _ in range(50)]
    refs = [weakref.ref(s, lambda _r: calls.append(purge())) for s in secrets]
    del secrets
    gc.collect()
    assert len(calls) == 50 and all(r() is None for r in refs)
    assert open_secret_count() == 0


# -- the enclave key --------------------------------------------------------------------


def test_old_enclaves_refuse_to_open_and_new_ones_work() -> None:
    pytest.importorskip("cryptography")
    old = Enclave(b"sealed before the purge")
    old_parts = _enclave._KEY.parts
    assert old_parts is not None
    purge()
    assert all(part.closed for part in old_parts) and _enclave._KEY.parts is None
    with pytest.raises(EnclaveError, match="purge"):
        old.open()
    new = Enclave(b"sealed after")
    with new.open() as secret:
        assert secret == b"sealed after"
    with pytest.raises(EnclaveError, match="purge"):
        old.open()  # still not: the new key is another key
    new_parts = _enclave._KEY.parts
    assert new_parts is not None and not set(map(id, new_parts)) & set(map(id, old_parts))


@pytest.mark.parametrize("during", ["seal", "open"])
def test_a_seal_or_open_that_a_purge_overlaps_raises(
    during: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cryptography")
    enclave = Enclave(b"opened while purged")
    real_class, invalid_tag = _enclave._aead()

    class PurgedMidway:  # the real cipher, with a purge (another thread's) landing inside
        def __init__(self, key: Any) -> None:
            self.real = real_class(key)

        def encrypt_into(self, *args: Any) -> None:
            purge()
            self.real.encrypt_into(*args)

        def decrypt_into(self, *args: Any) -> None:
            purge()
            self.real.decrypt_into(*args)

    monkeypatch.setattr(_enclave, "_cipher", (PurgedMidway, invalid_tag))
    with pytest.raises(EnclaveError, match="purge\\(\\) ran while this enclave was being"):
        if during == "seal":
            Enclave(b"sealed while purged")
        else:
            enclave.open()
    assert open_secret_count() == 0, "the half-opened plaintext was closed too"
    monkeypatch.undo()
    with Enclave(b"afterwards").open() as again:
        assert again == b"afterwards"
    parts = _enclave._KEY.parts
    assert _enclave._KEY.users == 0 and parts is not None and parts[2] == bytes(32)


@pytest.mark.parametrize("during", ["seal", "open"])
def test_a_purge_between_taking_the_key_and_using_it_raises_only_enclave_error(
    during: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The purge lands after the key was handed to the operation and before the cipher
    # reads it (another thread, or a signal handler, purging at that instant). It used
    # to release the view the operation was about to use: a TypeError from the cipher.
    pytest.importorskip("cryptography")
    enclave = Enclave(b"opened while purged")
    real_class, invalid_tag = _enclave._aead()

    def purged_first(key: Any) -> Any:
        purge()
        return real_class(key)

    monkeypatch.setattr(_enclave, "_cipher", (purged_first, invalid_tag))
    with pytest.raises(EnclaveError, match="purge\\(\\) ran while this enclave was being"):
        if during == "seal":
            Enclave(b"sealed while purged")
        else:
            enclave.open()
    assert open_secret_count() == 0
    monkeypatch.undo()
    with Enclave(b"afterwards").open() as again:
        assert again == b"afterwards"
    parts = _enclave._KEY.parts
    assert _enclave._KEY.users == 0 and parts is not None and parts[2] == bytes(32)


# -- nothing left locked: a fresh process, every kind of arena ---------------------------

LOCKED_AFTER_PURGE = """
import json, sys
import securemem
from securemem import Arena, Enclave, SecureBytes, purge
from tests.test_redteam_support import vmlck_bytes
baseline = vmlck_bytes()
arenas = [Arena(), Arena(prefetch=True), Arena(reserve_pages=64)]
if sys.argv[1] == "yes":
    arenas.append(Arena(backend="secretmem"))
held = []
for arena in arenas:
    held += [SecureBytes(b"k" * n, arena=arena) for n in (16, 100, 2048, 9000) for _ in range(5)]
    held += [SecureBytes(b"g" * 64, arena=arena, guarded=True) for _ in range(3)]
held += [SecureBytes(b"default")] + [Enclave(b"sealed %d" % i) for i in range(3)]
during = vmlck_bytes()
closed = purge()
after = vmlck_bytes()
fresh = Enclave(b"after the purge")
with fresh.open() as opened:
    works = opened == b"after the purge"
purge()
print(json.dumps({"baseline": baseline, "during": during, "after": after, "closed": closed,
                  "works": works, "again": vmlck_bytes(),
                  "all_closed": all(s.closed for s in held if isinstance(s, SecureBytes))}))
"""


def test_vmlck_returns_to_the_baseline_after_a_purge() -> None:
    pytest.importorskip("cryptography")
    secretmem = repr("yes" if HAVE_SECRETMEM else "no")
    result = run_json(LOCKED_AFTER_PURGE.replace("sys.argv[1]", secretmem))
    arenas = 4 if HAVE_SECRETMEM else 3
    assert result["during"] - result["baseline"] >= arenas * 4096 * 6
    # the secrets, the default one, the key's three parts (two halves and the scratch)
    assert result["closed"] == arenas * 23 + 1 + 3
    assert result["all_closed"] and result["works"]
    assert result["after"] == result["baseline"], "nothing securemem locked stays locked"
    assert result["again"] == result["baseline"]


# -- threads, and signal handlers, purging while others work ------------------------------

HAMMER = """
import json, os, signal, sys, threading
import securemem
from securemem import Arena, SecureBytes, SecureBytesClosedError, purge
MODE = sys.argv[1]
sys.setswitchinterval(1e-5)
arenas = [Arena(reserve_pages=1), Arena(prefetch=True)]
# Purges are paced by the workers' progress, not the clock: each new secret makes one due
# (a thread purges, or a SIGALRM is sent for the main thread's handler to purge).
stop, due = threading.Event(), threading.Event()
signal.signal(signal.SIGALRM, signal.SIG_IGN)  # until the purging handler is set below
live = [[] for _ in range(4)]  # each thread's open secrets
foreign, operations, closed_seen = [0], [0], [0]
def work(index):
    tag = 0x41 + index  # every byte of this thread's secrets
    n = 0
    while not stop.is_set():
        n += 1
        size = (16, 40, 700, 5000)[n % 4]
        try:
            s = SecureBytes(bytes([tag]) * size, arena=arenas[n % 2], guarded=n % 7 == 0)
        except SecureBytesClosedError:
            closed_seen[0] += 1
            continue
        live[index].append(s)
        if MODE == "thread":
            due.set()
        elif n % 4 == 0:
            os.kill(os.getpid(), signal.SIGALRM)
        for t in list(live[index]):
            try:
                data = bytes(t)
                if data != bytes([tag]) * len(data):
                    foreign[0] += 1
                t[0] = tag
                t[1:3] = bytes([tag, tag])
                if t[len(data) - 1] != tag or not t == data:
                    foreign[0] += 1
                with memoryview(t) as view:
                    # a view outliving a purge reads zeros (wiped, still mapped)
                    if view[0] not in (tag, 0):
                        foreign[0] += 1
                operations[0] += 1
            except SecureBytesClosedError:
                closed_seen[0] += 1
                # by identity: list.remove would compare secrets with ==, which raises
                live[index] = [x for x in live[index] if x is not t]
        if len(live[index]) > 6:
            live[index].pop(0).close()
errors = []
def guarded_work(index):
    try:
        work(index)
    except BaseException as error:  # a worker that dies ends the test's value: report it
        errors.append(repr(error))
        due.set()
threads = [threading.Thread(target=guarded_work, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
purges, missed, purged, depth = [0], [0], [0], [0]
def purge_and_check(*_):
    # On a loaded machine the workers' SIGALRMs can come faster than a purge ends, and each
    # runs its handler inside the last: a purge inside a purge is still tried, deeper nesting
    # would only exhaust Python's recursion limit (seen once in CI's wheel stage).
    if depth[0] >= 2:
        return
    depth[0] += 1
    try:
        before = [s for mine in live for s in list(mine)]
        purged[0] += purge()
        purges[0] += 1
        missed[0] += sum(not s.closed for s in before)
    finally:
        depth[0] -= 1
def going():  # until the races landed often enough, however long a busy machine takes
    return not errors and (purges[0] < 50 or purged[0] < 1000 or operations[0] < 10_000
                           or closed_seen[0] < 100)
if MODE == "thread":
    while going():
        due.wait()
        due.clear()
        purge_and_check()
else:  # a signal handler in the main thread, while it works too
    signal.signal(signal.SIGALRM, purge_and_check)
    while going():
        s = SecureBytes(b"m" * 100)
        try:
            if bytes(s) != b"m" * 100:
                foreign[0] += 1
        except SecureBytesClosedError:
            closed_seen[0] += 1
        s.close()
    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the workers may still send one
stop.set()
for t in threads:
    t.join()
purge_and_check()
print(json.dumps({"purges": purges[0], "purged": purged[0], "missed": missed[0],
                  "foreign": foreign[0], "errors": errors, "operations": operations[0],
                  "closed_seen": closed_seen[0],
                  "open": securemem._binding.open_secret_count(),
                  "locked": [a.stats().locked_bytes for a in arenas]}))
"""



@pytest.mark.parametrize("mode", ["thread", "signal"])
def test_purge_while_threads_hammer_secrets(mode: str) -> None:
    # The child hammers until at least 50 purges closed 1,000 secrets and the threads met
    # 100 secrets purged under them (SecureBytesClosedError) in 10,000 operations.
    result = run_json(HAMMER.replace("sys.argv[1]", repr(mode)))
    assert result["errors"] == [], "a worker thread died"
    assert result["foreign"] == 0, "a read saw bytes that were not its own secret's"
    assert result["missed"] == 0, "a secret that existed before a purge was open after it"
    assert result["open"] == 0 and result["locked"] == [0, 0], result


# -- purge_on_exit: handlers, chaining, undo ----------------------------------------------


def test_purge_on_exit_twice_is_harmless_and_undo_restores() -> None:
    before = signal.getsignal(signal.SIGTERM)
    handle = purge_on_exit()
    assert purge_on_exit() is handle and handle.active
    assert set(handle.signals) == set(_purge.DEFAULT_SIGNALS)
    assert signal.getsignal(signal.SIGTERM) is _purge._on_signal
    assert _purge._STATE.previous[signal.SIGTERM] == before, "never chained to itself"
    purge_on_exit([signal.SIGUSR1])  # adds one
    assert signal.SIGUSR1 in handle.signals
    handle.undo()
    handle.undo()
    assert not handle.active and handle.signals == ()
    assert signal.getsignal(signal.SIGTERM) == before
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_a_signal_purges_then_calls_the_previous_python_handler() -> None:
    seen: list[bool] = []
    secret = SecureBytes(b"held")
    previous = signal.signal(signal.SIGUSR1, lambda n, f: seen.append(secret.closed))
    try:
        purge_on_exit([signal.SIGUSR1])
        signal.raise_signal(signal.SIGUSR1)
        assert seen == [True]
        # SIGINT with Python's default handler: KeyboardInterrupt, as usual
        held = SecureBytes(b"held too")
        purge_on_exit([signal.SIGINT])
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert held.closed
    finally:
        _purge.PurgeOnExit().undo()
        signal.signal(signal.SIGUSR1, previous)


def test_an_ignored_signal_is_left_alone() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        secret = SecureBytes(b"kept")
        handle = purge_on_exit()
        assert signal.SIGHUP not in handle.signals and signal.SIGTERM in handle.signals
        signal.raise_signal(signal.SIGHUP)
        assert not secret.closed, "a hangup under nohup must not wipe a running process"
        secret.close()
    finally:
        _purge.PurgeOnExit().undo()
        signal.signal(signal.SIGHUP, previous)


def test_bad_signals_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match="iterable of signal numbers"):
        purge_on_exit(signal.SIGTERM)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="signal numbers"):
        purge_on_exit(["SIGTERM"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="SIGKILL cannot be caught"):
        purge_on_exit([signal.SIGKILL])
    with pytest.raises(ValueError, match="not a signal number"):
        purge_on_exit([4096])
    assert not _purge._STATE.at_exit and not _purge._STATE.previous


def test_from_another_thread_signals_are_refused_and_exit_only_works() -> None:
    outcome: list[object] = []

    def other() -> None:
        try:
            purge_on_exit()
        except RuntimeError as error:
            outcome.append(str(error))
        outcome.append(purge_on_exit(signals=()).active)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert "only in the main thread" in str(outcome[0]) and "signals=()" in str(outcome[0])
    assert outcome[1] is True and signal.getsignal(signal.SIGTERM) is not _purge._on_signal


# -- real signals, real children ------------------------------------------------------------

CHILD = """
import atexit, os, signal, sys, time
# A shell that starts a job in the background (pytest under nohup, or `... &` in a script)
# makes it ignore SIGINT and SIGQUIT, and children inherit that: start from the handling a
# program run from a terminal has, which is what the test is about.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGQUIT, signal.SIG_DFL)
from securemem import Arena, SecureBytes, purge_on_exit
from tests.sharedkernel import SharedFileKernel
path, install, marker = sys.argv[1], sys.argv[2] == "yes", sys.argv[3].encode()
arena = Arena(kernel=SharedFileKernel(path), reserve_pages=0)
secrets = [SecureBytes(marker, arena=arena), SecureBytes(marker * 200, arena=arena),
           SecureBytes(marker, arena=arena, guarded=True)]
def report():
    print("at exit: closed", all(s.closed for s in secrets), flush=True)
atexit.register(report)  # registered first, so it runs after purge_on_exit's hook
if install:
    purge_on_exit()
print("ready", flush=True)
if sys.argv[4] == "wait":
    while True:
        time.sleep(1)
"""


def _run_child(tmp_path: Path, install: bool, how: str) -> tuple[subprocess.Popen[str], Path]:
    backing = tmp_path / "secrets.bin"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(backing), "yes" if install else "no",
         MARKER.decode(), how],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child, backing


def _finish(child: subprocess.Popen[str]) -> tuple[str, str]:
    """The rest of the child's output (readline may have buffered some) and its end."""
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.read(), child.stderr.read()
    child.wait(timeout=30)
    return out, err


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT])
@pytest.mark.parametrize("install", [True, False])
def test_a_signal_purges_and_the_exit_status_names_it(
    tmp_path: Path, number: int, install: bool
) -> None:
    child, backing = _run_child(tmp_path, install, "wait")
    with contextlib.suppress(Exception):
        import resource

        resource.prlimit(child.pid, resource.RLIMIT_CORE, (0, 0))  # SIGQUIT: no core file
    assert MARKER in backing.read_bytes()  # the secrets, as the child holds them
    child.send_signal(number)
    _, err = _finish(child)
    # SIGINT: Python's handler raises KeyboardInterrupt, uncaught, and the interpreter
    # then ends by SIGINT, as it does without securemem
    assert child.returncode == -number, (child.returncode, err)
    left = backing.read_bytes().count(MARKER)
    if install:
        assert left == 0, "purge_on_exit must wipe every secret before the process dies"
    elif number != signal.SIGINT:  # (KeyboardInterrupt unwinds: finalisation may wipe)
        assert left == 1 + 200 + 1, "the control: without it the secrets outlive the process"
    if number == signal.SIGINT:
        assert "KeyboardInterrupt" in err


@pytest.mark.parametrize("install", [True, False])
def test_interpreter_exit_purges_before_other_exit_hooks(tmp_path: Path, install: bool) -> None:
    child, backing = _run_child(tmp_path, install, "exit")
    out, err = _finish(child)
    assert child.returncode == 0, err
    assert out.strip() == f"at exit: closed {install}"
    if install:
        assert backing.read_bytes().count(MARKER) == 0


CHAINED = """
import os, signal, sys
from securemem import SecureBytes, purge_on_exit
secret = SecureBytes(sys.argv[1].encode())
view = memoryview(secret)  # keeps it mapped after the purge, for the parent to read
def previous(number, frame):
    os.kill(os.getpid(), signal.SIGSTOP)  # the parent reads our memory now
    print("previous handler ran, closed", secret.closed, flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, previous)
purge_on_exit()
# The address goes out through the file descriptor, not sys.stdout: the parent's SIGTERM may
# land as soon as it is written, and the handler's own print must not find sys.stdout's
# buffer still held by this line (a reentrant call, an error, not the test's finding).
os.write(1, b"%d\\n" % secret._address)
signal.pause()
"""


def _read_memory(pid: int, address: int, length: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        memory.seek(address)
        return memory.read(length)


def _wait_stopped(pid: int) -> None:
    """Until our child stops (the kernel tells its parent: no polling, no deadline)."""
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the child ended instead of stopping: status {status:#x}"


def test_the_previous_handler_runs_after_the_purge_on_wiped_memory() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHAINED, MARKER.decode()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline()
        assert line, f"the child ended before it was ready: {child.stderr.read()}"
        address = int(line)
        assert _read_memory(child.pid, address, len(MARKER)) == MARKER  # the control
        child.send_signal(signal.SIGTERM)
        _wait_stopped(child.pid)
        # inside the previous handler: the purge has run; the view keeps the page mapped
        assert _read_memory(child.pid, address, len(MARKER)) == bytes(len(MARKER))
        child.send_signal(signal.SIGCONT)
        out, err = _finish(child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    assert child.returncode == 7, err
    assert out.strip() == "previous handler ran, closed True"


def test_a_forked_child_purges_only_its_own_secrets() -> None:
    parent_secret = SecureBytes(b"parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            mine = SecureBytes(b"child")
            result = {"closed": purge(), "mine": mine.closed, "parent": parent_secret.closed}
            os.write(write, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert result == {"closed": 1, "mine": True, "parent": True}
    assert not parent_secret.closed and parent_secret == b"parent"
    parent_secret.close()


def test_exported_in_the_api() -> None:
    assert {"purge", "purge_on_exit", "PurgeOnExit"} <= set(securemem.__all__)
    assert securemem.purge is purge and securemem.purge_on_exit.__doc__


# -- other kernels, and user code running mid-purge ------------------------------------------


@pytest.mark.parametrize("system", ["linux", "openbsd", "freebsd", "posix"])
def test_simulated_systems_end_with_nothing_locked_or_mapped(system: str) -> None:
    from securemem.testing import SimulatedKernel

    kernel = SimulatedKernel(system, superuser=True)
    arena = Arena(kernel=kernel, reserve_pages=4, prefetch=system == "freebsd")
    held = [SecureBytes(b"s" * n, arena=arena) for n in (16, 300, 5000, 20000)]
    held.append(SecureBytes(b"guarded", arena=arena, guarded=True))
    assert kernel.locked_pages()
    purge()
    assert all(s.closed for s in held)
    assert kernel.locked_pages() == {} and kernel.mapped_ranges() == []
    assert arena.stats().locked_bytes == 0 and arena.stats().mapped_bytes == 0


def test_a_kernel_that_purges_from_inside_a_purge(monkeypatch: pytest.MonkeyPatch) -> None:
    # User code (a Python kernel's method) running mid-purge starts another purge: the
    # arena it is inside refuses the nested release (re-entered), nothing crashes, and
    # every secret ends closed; the next purge gives the rest back.
    from securemem.testing import SimulatedKernel

    class Reentrant(SimulatedKernel):
        depth = 0

        def unlock(self, address: int, length: int) -> None:
            super().unlock(address, length)
            if Reentrant.depth == 0:
                Reentrant.depth += 1
                purge()
                Reentrant.depth -= 1

    reports: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", reports.append)
    kernel = Reentrant("linux", superuser=True)
    arena = Arena(kernel=kernel, reserve_pages=0)
    held = [SecureBytes(b"x" * n, arena=arena) for n in (16, 5000, 9000)]
    held += [SecureBytes(b"g" * 40, arena=arena, guarded=True) for _ in range(2)]
    held += [SecureBytes(b"y" * 40) for _ in range(3)]
    purge()
    assert all(s.closed for s in held) and open_secret_count() == 0
    purge()
    assert kernel.locked_pages() == {} and arena.stats().locked_bytes == 0
    assert reports == [], "a nested purge is expected, not an error to report"


def test_a_hostile_index_that_purges_cannot_write_into_a_new_secret() -> None:
    victim = SecureBytes(b"v" * 32)
    made: list[SecureBytes] = []

    class Index:
        def __index__(self) -> int:
            purge()  # the secret is closed between the conversion and the write...
            made.append(SecureBytes(b"n" * 32))  # ...and its slot may be handed out again
            return 0

    with pytest.raises(SecureBytesClosedError):
        victim[Index()] = 0x58
    assert made[0] == b"n" * 32, "the write landed in another secret"
    made[0].close()


WRITING = """
import json, os, threading
from securemem import SecureBytes, purge
size = 8 << 20  # far more than a pipe holds: the writer blocks inside os.write
secret = SecureBytes(size)
secret[:] = b"h" * size
read_end, write_end = os.pipe()
written = []
def work():
    # os.write holds a buffer export of the secret and copies from it without the GIL,
    # blocking while the pipe is full, until this side reads
    with memoryview(secret) as view:
        total = 0
        while total < size:
            total += os.write(write_end, view[total:])
    written.append(total)
    os.close(write_end)
thread = threading.Thread(target=work)
thread.start()
first = os.read(read_end, 4096)  # the write has begun: the export is alive
closed = purge()
rest = bytearray()
while chunk := os.read(read_end, 1 << 16):
    rest += chunk
thread.join()
print(json.dumps({"first": first == b"h" * len(first), "closed": closed,
                  "is_closed": secret.closed, "written": written, "read": len(first) + len(rest),
                  "tail_wiped": rest[-(1 << 20):] == bytes(1 << 20)}))
"""


def test_purge_while_native_code_reads_the_secret_without_the_gil() -> None:
    # os.write holds a buffer export and reads with the GIL released, blocked on a full
    # pipe that the test drains only after the purge: the purge wipes under it, and the
    # memory stays mapped until the export goes (no SIGSEGV: the write ends whole)
    result = run_json(WRITING)
    assert result["first"] and result["closed"] >= 1 and result["is_closed"]
    assert result["written"] == [8 << 20] and result["read"] == 8 << 20, result
    assert result["tail_wiped"], "the bytes written after the purge were not zeros"
