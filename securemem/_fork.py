"""Fork safety: what a forked child keeps of its parent's secrets (nothing).

The native core does the essential part inside ``fork`` itself (a
``pthread_atfork`` child handler in ``securemem/_c/core/arena.c``): the fork
generation goes up, so every SecureBytes of the parent reports itself closed
and its close touches nothing; every arena forgets the parent's regions (they
stay mapped, wiped by the kernel: ``MADV_WIPEONFORK``, or by the handler where
the kernel could not promise it) and gets a fresh mutex, since memory locks do
not survive fork and a parent thread may have held the mutex.

This module is the one Python-level hook, for Python state: locks a parent
thread may have held, prefetch jobs whose thread did not survive, and
``lock_memory`` counts (the child holds no lock).
"""

from __future__ import annotations

import os

from securemem import _arena, _lockmemory, _prefetch
from securemem._binding import fork_generation

__all__ = ["fork_generation"]


def _after_fork_in_child() -> None:
    _arena.reset_after_fork()
    _prefetch.forget_after_fork()
    _lockmemory.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
