"""Density child: how many live 64-byte secrets one system holds *locked*.

Run as ``python -m benchmarks._density SYSTEM`` inside an unprivileged process
(no CAP_IPC_LOCK, RLIMIT_MEMLOCK set by the parent with prlimit); prints one
JSON object. Each system is counted the way it can fail:

* securemem: allocate until it raises (its default policy refuses to hand out
  memory it cannot lock), so every secret counted is locked.
* libsodium: ``sodium_malloc`` ignores a failed ``mlock`` by design and keeps
  going with unlocked memory. So ``VmLck`` (/proc/self/status) is read after
  every allocation; the count stops at the first secret that did not raise it.
* OpenSSL: the secure heap is one fixed, power-of-two arena locked at init
  (``CRYPTO_secure_malloc_init`` returns 1 when locked, 2 when not). The
  largest size that returns 1 is used; secrets are allocated until
  ``CRYPTO_secure_malloc`` returns NULL or a pointer outside the heap
  (``CRYPTO_secure_allocated``).
* naive mmap+mlock: until ``mlock`` fails.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

from securemem._procfs import process_locked_bytes

SIZE = 64
CAP = 4_000_000  # no system here gets near this under 8 MiB; it stops a runaway loop


def vm_locked() -> int:
    """The process's locked bytes as the kernel counts them (VmLck)."""
    locked = process_locked_bytes()
    if locked is None:
        raise RuntimeError("no VmLck in /proc/self/status")
    return locked


def count_securemem() -> dict[str, Any]:
    from securemem import SecureBytes, stats

    held: list[Any] = []
    error = ""
    try:
        while len(held) < CAP:
            held.append(SecureBytes(SIZE))
    except MemoryError as exc:  # MemoryLockError subclasses MemoryError
        error = type(exc).__name__
    arena = stats()  # the default arena's
    return {
        "held": len(held),
        "stopped_by": error or "cap",
        "vm_locked": vm_locked(),
        "arena_locked": arena.locked_bytes,
        "unlocked_bytes": arena.unlocked_bytes,
        "how": "allocated until securemem raised MemoryLockError (policy 'raise')",
    }


def count_sodium() -> dict[str, Any]:
    from benchmarks._systems import sodium

    ffi, lib = sodium()
    held: list[Any] = []
    locked = vm_locked()
    stopped = "cap"
    while len(held) < CAP:
        pointer = lib.sodium_malloc(SIZE)
        if pointer == ffi.NULL:
            stopped = "NULL"
            break
        now = vm_locked()
        if now <= locked:
            lib.sodium_free(pointer)  # this one came back unlocked: not counted
            stopped = "mlock failed (VmLck did not grow)"
            break
        locked = now
        held.append(pointer)
    return {
        "held": len(held),
        "stopped_by": stopped,
        "vm_locked": vm_locked(),
        "how": "VmLck read after each sodium_malloc; counted while it grew",
    }


def count_openssl() -> dict[str, Any]:
    from benchmarks._systems import crypto, secure_heap_init

    ffi, lib = crypto()
    limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    if limit == resource.RLIM_INFINITY:
        limit = 1 << 30
    heap = 1 << (limit.bit_length() - 1)  # the largest power of two within the limit
    while heap >= 4096 and secure_heap_init(heap) != 1:
        heap //= 2
    if heap < 4096:
        return {
            "held": 0,
            "stopped_by": "no heap locks",
            "heap_bytes": 0,
            "how": "no secure heap size could be locked",
        }
    held: list[Any] = []
    stopped = "cap"
    while len(held) < CAP:
        pointer = lib.CRYPTO_secure_malloc(SIZE, ffi.NULL, 0)
        if pointer == ffi.NULL:
            stopped = "NULL (heap full)"
            break
        if not lib.CRYPTO_secure_allocated(pointer):
            stopped = "fell back to ordinary malloc"
            break
        held.append(pointer)
    return {
        "held": len(held),
        "stopped_by": stopped,
        "heap_bytes": heap,
        "vm_locked": vm_locked(),
        "how": "largest power-of-two heap that locks (init returns 1), filled until NULL",
    }


def count_naive() -> dict[str, Any]:
    from benchmarks._systems import naive_system

    system = naive_system()
    held: list[Any] = []
    stopped = "cap"
    while len(held) < CAP:
        try:
            held.append(system.alloc(SIZE))
        except MemoryError as exc:
            stopped = str(exc)
            break
    return {
        "held": len(held),
        "stopped_by": stopped,
        "vm_locked": vm_locked(),
        "how": "one mmap+mlock per secret until mlock failed",
    }


COUNTERS = {
    "securemem": count_securemem,
    "libsodium": count_sodium,
    "openssl": count_openssl,
    "naive": count_naive,
}


def main() -> None:
    result = COUNTERS[sys.argv[1]]()
    result["memlock_limit"] = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
