"""The seven workloads. Each returns plain data (dicts of numbers and strings) for the report."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from typing import Any

from benchmarks import _systems, prefetch_growth
from benchmarks._systems import System
from securemem import Arena, SecureBytes
from securemem.testing import unprivileged_command

ROOT = Path(__file__).resolve().parent.parent

ROUND_TRIP_SIZES = (16, 32, 64, 1024, 4096, 65536)


# -- timing helpers ---------------------------------------------------------


def calibrate(loop: Callable[[int, int], int], size: int, budget_s: float) -> int:
    """How many round trips make one batch of about ``budget_s`` seconds."""
    n = 1
    while True:
        elapsed = loop(size, n)
        if elapsed >= budget_s * 1e9 / 4 or n >= 1 << 24:
            break
        n *= 4
    return max(1, int(n * budget_s * 1e9 / max(elapsed, 1)))


def interleaved(
    loops: dict[str, Callable[[int, int], int]], size: int, budget_s: float, repeats: int
) -> dict[str, dict[str, Any]]:
    """Time ``repeats`` batches of each loop, taking turns, in ns per round trip.

    Taking turns spreads a busy spell of the machine over every loop alike, so
    the ratios between them hold better than their absolute values; each timed
    batch follows an untimed one of the same loop. Reports the
    best batch (the timeit convention: noise only ever adds time) and the
    median. A loop that raises MemoryError gets ``{"error": ...}``.
    """
    sizes: dict[str, int] = {}
    runs: dict[str, list[float]] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, loop in loops.items():
        try:
            loop(size, 50)  # warm up: first slabs, first pages
            sizes[name] = calibrate(loop, size, budget_s)
            runs[name] = []
        except MemoryError as error:
            results[name] = {"error": f"{type(error).__name__}: {error}"}
    for _ in range(repeats):
        for name, n in sizes.items():
            # Untimed first: the loop before may have been syscall-heavy (libsodium's
            # mmap/mprotect/munmap) and left caches and TLB cold for this one.
            loops[name](size, max(1, n // 5))
            runs[name].append(loops[name](size, n) / n)
    for name, times in runs.items():
        results[name] = {
            "best_ns": min(times),
            "median_ns": statistics.median(times),
            "n": sizes[name],
        }
    return results


# -- 1. round trip ----------------------------------------------------------


def round_trip(
    systems: list[System], sizes: tuple[int, ...], budget_s: float, repeats: int
) -> dict[str, Any]:
    """ns per create+close for each system and size, the systems taking turns."""
    table: dict[str, dict[str, Any]] = {system.name: {} for system in systems}
    for size in sizes:
        cells = interleaved(
            {system.name: system.loop for system in systems}, size, budget_s, repeats
        )
        for name, cell in cells.items():
            table[name][str(size)] = cell
    return table


# -- 2. density -------------------------------------------------------------


def density(names: list[str], limits: list[int]) -> dict[str, Any]:
    """Live 64-byte secrets each system holds locked, one fresh unprivileged process each."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    jobs: dict[tuple[str, int], subprocess.Popen[str]] = {}
    for limit in limits:
        for name in names:
            command = [
                *unprivileged_command(limit),
                sys.executable,
                "-m",
                "benchmarks._density",
                name,
            ]
            jobs[name, limit] = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
    results: dict[str, Any] = {name: {} for name in names}
    for (name, limit), job in jobs.items():
        out, err = job.communicate(timeout=600)
        if job.returncode != 0:
            results[name][str(limit)] = {"held": None, "error": err.strip().splitlines()[-1:]}
        else:
            results[name][str(limit)] = json.loads(out.strip().splitlines()[-1])
    return results


# -- 3. scale ---------------------------------------------------------------

SCALE_INFEASIBLE = {
    "libsodium": "one mapping (3-4 pages, guard pages split it) per secret: vm.max_map_count "
    "(65530 by default) stops it near 20,000 secrets",
    "naive": "one locked page per secret: 1,000,000 secrets lock 4 GiB",
}


def scale(
    systems: list[System], counts: tuple[int, int], budget_s: float, repeats: int
) -> dict[str, Any]:
    """ns per 32-byte round trip with ``counts[0]`` and then ``counts[1]`` 32-byte secrets alive.

    securemem is measured in two arenas side by side, one holding each count,
    their batches taking turns; the others (one heap per process) one count
    after the other.
    """
    results: dict[str, Any] = {}
    for system in systems:
        if system.name == "securemem":
            results[system.name] = _scale_securemem(counts, budget_s, repeats)
            continue
        row: dict[str, Any] = {}
        for count in counts:
            if count > 20_000 and system.name in SCALE_INFEASIBLE:
                row[str(count)] = {"error": "n/a: " + SCALE_INFEASIBLE[system.name]}
                continue
            held = []
            try:
                alloc = system.alloc
                for _ in range(count):
                    held.append(alloc(32))
                if system.name == "openssl" and held and held[-1] == _systems.crypto()[0].NULL:
                    raise MemoryError("the secure heap is full")
                row[str(count)] = interleaved({"x": system.loop}, 32, budget_s, repeats)["x"]
            except MemoryError as error:
                row[str(count)] = {"error": f"{type(error).__name__}: {error}"}
            finally:
                free = system.free
                for handle in held:
                    free(handle, 32)
                del held
                gc.collect()
        results[system.name] = row
    return results


def _scale_securemem(counts: tuple[int, int], budget_s: float, repeats: int) -> dict[str, Any]:
    arenas = {str(count): Arena() for count in counts}
    held = []
    try:
        for count, arena in zip(counts, arenas.values(), strict=True):
            held += [SecureBytes(32, arena=arena) for _ in range(count)]
        loops = {key: _systems.securemem_system(arena).loop for key, arena in arenas.items()}
        return interleaved(loops, 32, budget_s, repeats)
    finally:
        for secret in held:
            secret.close()
        del held
        for arena in arenas.values():
            arena.release_reserve()
        gc.collect()


# -- 4. wipe ----------------------------------------------------------------


def _throughputs(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[int]]:
    """ns of each run, ``repeats`` times. Runs take turns, so a busy spell hits all alike."""
    times: dict[str, list[int]] = {name: [] for name in runs}
    order = list(runs.items())
    for _ in range(repeats):
        order.reverse()  # whoever runs first finds the caches as the last one left them
        for name, run in order:
            start = time.thread_time_ns()  # CPU time, as for the round trips
            run()
            times[name].append(time.thread_time_ns() - start)
    return times


def wipe(nbytes: int, repeats: int) -> dict[str, Any]:
    """GB/s of securemem's wipe against plain memset (same locked pages, and a bytearray)."""
    ffi, libc = _systems.libc()
    secret = SecureBytes(nbytes)
    try:
        address = ffi.cast("void *", secret.address)
        plain = bytearray(nbytes)
        plain_address = ffi.from_buffer(plain)
        ctypes_address = (ctypes.c_char * nbytes).from_buffer(plain)
        memset = libc.memset
        runs: dict[str, Callable[[], object]] = {
            "securemem_wipe": secret.wipe,
            "memset_cffi_same_pages": lambda: memset(address, 0, nbytes),
            "memset_cffi_bytearray": lambda: memset(plain_address, 0, nbytes),
            "memset_ctypes_bytearray": lambda: ctypes.memset(ctypes_address, 0, nbytes),
        }
        try:
            sodium_ffi, sodium = _systems.sodium()
            pointer = sodium_ffi.cast("void *", secret.address)
            runs["sodium_memzero_same_pages"] = lambda: sodium.sodium_memzero(pointer, nbytes)
        except _systems.MissingLibrary:
            pass
        times = _throughputs(runs, repeats)
        results: dict[str, Any] = {name: nbytes / min(t) for name, t in times.items()}  # GB/s
        # The target's ratio: each wipe against the memset of the same pages run right
        # after it, the median over all pairs (steadier than a ratio of two best-ofs when
        # other processes share the memory bandwidth).
        results["ratio_to_memset_same_pages"] = statistics.median(
            memset_ns / wipe_ns
            for wipe_ns, memset_ns in zip(
                times["securemem_wipe"], times["memset_cffi_same_pages"], strict=True
            )
        )
        return {"bytes": nbytes, **results}
    finally:
        secret.close()


# -- 5. growth --------------------------------------------------------------


def growth(secrets: int, size: int, gap_s: float, rounds: int) -> dict[str, Any]:
    """p50/p99 latency of each allocation while fresh arenas grow, prefetch off and on, and
    the floor (a plain object of a SecureBytes's size in the same loop), rounds taking turns.

    Between allocations the thread sleeps ``gap_s`` (a server waiting on its
    socket: the GIL is released, so a prefetch thread can run): the default run
    of benchmarks/prefetch_growth.py, which measures it.
    """
    results: dict[str, Any] = {
        "secrets": secrets,
        "size": size,
        "gap_us": gap_s * 1e6,
        "rounds": rounds,
    }
    measured = prefetch_growth.run(secrets, size, gap_s, rounds, "io")
    for mode in ("off", "on", "floor"):
        results[mode] = {
            key: measured[mode][key]
            for key in ("p50_us", "p99_us", "max_us", "growing_p99_us", "mean_growth_us")
        }
    return results


# -- 6. threads -------------------------------------------------------------


def _two_threads(loop: Callable[[int, int], int], each: int) -> int:
    """ns for two threads, started together, to do ``each`` round trips apiece."""
    barrier = threading.Barrier(3)

    def worker() -> None:
        barrier.wait()
        loop(32, each)

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for thread in workers:
        thread.start()
    barrier.wait()
    start = time.perf_counter_ns()
    for thread in workers:
        thread.join()
    return time.perf_counter_ns() - start


def threads(systems: list[System], budget_s: float, repeats: int = 5) -> dict[str, Any]:
    """Round trips per second of 32 bytes: one thread doing ``n``, then two doing half each.

    ``n`` is calibrated per system so that one thread takes about ``budget_s``: a run must span
    many of the interpreter's 5 ms switch intervals, or the first thread finishes before the
    second ever gets the GIL and nothing is measured. The two set-ups take turns
    ``repeats`` times; the best of each is kept. Note that with one thread nothing else is
    alive, so each round trip empties the allocator; with two, the other thread's secret is
    often alive.
    """
    results: dict[str, Any] = {}
    for system in systems:
        loop = system.loop
        loop(32, 100)
        total = max(2, calibrate(loop, 32, budget_s) // 2 * 2)
        one = two = float("inf")
        for _ in range(repeats):
            start = time.perf_counter_ns()  # wall time here: two threads are compared with one
            loop(32, total)
            one = min(one, time.perf_counter_ns() - start)
            two = min(two, _two_threads(loop, total // 2))
        results[system.name] = {
            "round_trips": total,
            "one_thread_ops_s": total / one * 1e9,
            "two_threads_ops_s": total / two * 1e9,
            "speedup": one / two,
        }
    return results


# -- 7. access --------------------------------------------------------------

ACCESS_SIZE = 32


def _copy_in_loops(source: bytearray) -> dict[str, Callable[[int, int], int]]:
    """A secret made from ``source`` and dropped, against ``bytes(source)`` made and dropped.

    The source is a ``bytearray``: ``bytes()`` of a ``bytes`` object returns that same object
    and copies nothing, which would make the floor a no-op.
    """

    def securemem(size: int, n: int) -> int:
        make = SecureBytes
        start = time.thread_time_ns()
        for _ in repeat(None, n):
            make(source)
        return time.thread_time_ns() - start

    def floor(size: int, n: int) -> int:
        make = bytes
        start = time.thread_time_ns()
        for _ in repeat(None, n):
            make(source)
        return time.thread_time_ns() - start

    return {"securemem": securemem, "bytes": floor}


def _getitem_loops(secret: SecureBytes, plain: bytearray) -> dict[str, Callable[[int, int], int]]:
    """``s[i]`` on a secret against ``b[i]`` on a bytearray of the same size."""

    def securemem(size: int, n: int) -> int:
        held = secret
        start = time.thread_time_ns()
        for _ in repeat(None, n):
            held[5]
        return time.thread_time_ns() - start

    def floor(size: int, n: int) -> int:
        held = plain
        start = time.thread_time_ns()
        for _ in repeat(None, n):
            held[5]
        return time.thread_time_ns() - start

    return {"securemem": securemem, "bytearray": floor}


def access(budget_s: float, repeats: int) -> dict[str, Any]:
    """ns per copy-in of 32 bytes and per ``s[i]``, each against its ``bytes``/``bytearray``
    floor, the two loops taking turns as in the round trip."""
    source = bytearray(os.urandom(ACCESS_SIZE))
    plain = bytearray(os.urandom(ACCESS_SIZE))
    with SecureBytes(plain) as secret:
        return {
            "size": ACCESS_SIZE,
            "copy_in": interleaved(_copy_in_loops(source), ACCESS_SIZE, budget_s, repeats),
            "getitem": interleaved(_getitem_loops(secret, plain), ACCESS_SIZE, budget_s, repeats),
        }


# -- 9. enclave -------------------------------------------------------------

ENCLAVE_SIZE = 32


def _enclave_loops() -> dict[str, Callable[[int, int], int]]:
    """``enclave.open().close()`` of a 32-byte secret against its floor: one
    ChaCha20-Poly1305 built and decrypting 32 bytes (what an open cannot do without:
    an AEAD made for the operation, one decryption)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from securemem import Enclave

    enclave = Enclave(os.urandom(ENCLAVE_SIZE))
    key, nonce, target = bytearray(os.urandom(32)), os.urandom(12), bytearray(ENCLAVE_SIZE)
    sealed = ChaCha20Poly1305(key).encrypt(nonce, os.urandom(ENCLAVE_SIZE), None)

    def securemem(size: int, n: int) -> int:
        open_ = enclave.open
        start = time.thread_time_ns()
        for _ in repeat(None, n):
            open_().close()
        return time.thread_time_ns() - start

    def floor(size: int, n: int) -> int:
        cipher = ChaCha20Poly1305
        start = time.thread_time_ns()
        for _ in repeat(None, n):
            cipher(key).decrypt_into(nonce, sealed, None, target)
        return time.thread_time_ns() - start

    return {"enclave_open_close": securemem, "chacha20poly1305_build_decrypt": floor}


def enclave(budget_s: float, repeats: int) -> dict[str, Any]:
    """ns per enclave open + close and per ChaCha20-Poly1305 build + decrypt of 32 bytes,
    the two loops taking turns as in the round trip."""
    return {
        "size": ENCLAVE_SIZE,
        "times": interleaved(_enclave_loops(), ENCLAVE_SIZE, budget_s, repeats),
    }
