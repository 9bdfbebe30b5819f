"""The attacks of ``tests/test_redteam_interrupts.py``, each run in a child interpreter.

No pytest here: a child imports only this module and securemem, and starts in a fraction
of the time a pytest import takes (there are dozens of children).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from typing import Any

import securemem
from securemem import Arena, SecureBytes
from tests.test_redteam_support import SANITIZER, scaled, vmlck_bytes

INTERRUPTS = 400  # landed in the measured statements, per storm


def _release_once(mode: str, source: memoryview, arena: Arena | None) -> None:
    """One secret made from ``source`` and released the way ``mode`` says."""
    if mode == "close":
        secret = SecureBytes(source, arena=arena)
        secret.close()
    elif mode == "del":
        secret = SecureBytes(source, arena=arena)
        del secret  # __del__ releases it
    elif mode == "view-close":
        secret = SecureBytes(source, arena=arena)
        view = secret.view()
        secret.close()
        del view  # the last export goes: the slot is released now
    elif mode == "view-del":
        secret = SecureBytes(source, arena=arena)
        view = secret.view()
        del secret
        del view  # the export kept the secret alive; both go here
    elif mode == "guarded-close":
        secret = SecureBytes(source, guarded=True)
        secret.close()
    elif mode == "guarded-del":
        secret = SecureBytes(source, guarded=True)
        del secret
    else:
        raise ValueError(mode)


def interrupt_storm(mode: str, iterations: int) -> dict[str, Any]:
    """Release ``iterations`` secrets under a SIGINT storm; what is left afterwards."""
    from tests.memscan import Marker

    baseline = vmlck_bytes()
    # "secretmem-...": the same release in a memfd_secret arena (the kernel locks whole
    # regions at map time; the marker scan cannot read that memory, the counts still apply).
    arena = Arena(backend="secretmem", region_pages=4) if mode.startswith("secretmem-") else None
    kind = mode.removeprefix("secretmem-")
    marker = Marker(32)
    source = marker.view()
    armed = [False]
    interrupts = [0]
    cut_finalisers: list[str] = []

    def on_sigint(signum: int, frame: object) -> None:
        if armed[0]:
            armed[0] = False  # at most one per measured statement: the loop itself is safe
            interrupts[0] += 1
            raise KeyboardInterrupt

    def record(unraisable: Any) -> None:
        cut_finalisers.append(type(unraisable.exc_value).__name__)

    stop, go = threading.Event(), threading.Event()

    def interrupter() -> None:
        # One SIGINT per release, sent from this thread as the release starts: no pacing by
        # the clock, so a busy machine only makes the storm slower, never thinner.
        while True:
            go.wait()
            go.clear()
            if stop.is_set():
                return
            os.kill(os.getpid(), signal.SIGINT)

    sys.setswitchinterval(1e-5)  # the interrupter gets the GIL inside the release
    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = record
    thread = threading.Thread(target=interrupter, daemon=True)
    thread.start()
    # Until enough interrupts landed in the measured statements (however long that takes),
    # and at least `iterations` releases: the storm always proves something.
    done = 0
    wanted = scaled(INTERRUPTS)
    while done < iterations or interrupts[0] < wanted:
        done += 1
        go.set()  # outside the armed window: an interrupt must not cut the Event's own lock
        try:
            armed[0] = True
            _release_once(kind, source, arena)
            armed[0] = False
        except KeyboardInterrupt:
            pass
    stop.set()
    go.set()
    thread.join()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    armed[0] = False
    gc.collect()
    stats = arena.stats() if arena is not None else securemem.stats()
    # the scan reads every mapping: under ASan that includes terabytes of shadow memory
    unwiped = None if SANITIZER else len(marker.scan().found)
    return {
        "releases": done,
        "interrupts": interrupts[0],
        "cut_finalisers": len(cut_finalisers),
        "unwiped": unwiped,
        "allocations": stats.allocations,
        "in_use_bytes": stats.in_use_bytes,
        "stats_locked": stats.locked_bytes,
        "kernel_locked": vmlck_bytes() - baseline,
    }
