"""The emergency wipe: :func:`purge`, and :func:`purge_on_exit` to run it on the way out.

:func:`purge` is one native call (``securemem/_c/core/purge.c``): every open
:class:`~securemem.SecureBytes` of every arena is closed through the same path as
``close()`` (wiped at once; memory under a live buffer export stays mapped, wiped,
until the export is released), then every arena unlocks and unmaps the free pages it
keeps (reserve, empty slabs, a prefetched region). The Python part only drops the
enclave key's references, so the key's pages go too and no old enclave opens again.

:func:`purge_on_exit` installs an :mod:`atexit` hook and signal handlers that purge
and then let the process end the way it would have without them.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType

from securemem import _enclave
from securemem._binding import lib, purge_secrets, release_free_pages

__all__ = ["PurgeOnExit", "purge", "purge_on_exit"]

DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def purge() -> int:
    """Wipe and close every open secret of this process, now; return how many.

    Every :class:`~securemem.SecureBytes` of every arena (packed, ``guarded=True``,
    ``backend="secretmem"``) is wiped and closed, from whichever thread calls this,
    while other threads may be using them: each of their operations either completed
    before the purge or raises :class:`~securemem.SecureBytesClosedError`. The
    per-process :class:`~securemem.Enclave` key is wiped and dropped, so every enclave
    sealed before the purge raises :class:`~securemem.EnclaveError` when opened (a
    seal or open that overlaps the purge raises it too); enclaves sealed afterwards
    use a fresh key. Every arena then unlocks and unmaps its free pages, reserve
    included, so with no secret made afterwards nothing securemem locked stays locked.

    Memory under a buffer export that is still alive (a ``memoryview``, a buffer held
    by native code) is wiped at once but stays mapped and locked until that export is
    released: it is never unmapped under a reader. It returns to the arena then (a
    second ``purge()`` or ``Arena.release_reserve()`` unlocks it).

    Secrets created after the purge work as usual. It never raises: a secret whose
    canary was overwritten is still wiped, and its :class:`~securemem.CanaryError` is
    reported through :func:`sys.unraisablehook`. Safe to call from a signal handler, and
    from a destructor (``__del__``, a weakref callback) that runs while secrets are being
    deallocated: a purge releases their memory and never takes a reference to them.
    Memory you locked yourself with :func:`~securemem.lock_memory` is yours and is
    left as it is. Files of :func:`~securemem.secret_file` blocks still running are
    zeroed (their paths read zeros until the block ends).
    """
    closed = purge_secrets()
    lib.sm_secret_file_wipe_all()  # secret_file's copies: the paths read zeros from here
    _enclave.forget_key_if_purged()
    release_free_pages()  # the key's pages, unmapped when their last view went just now
    return closed


class PurgeOnExit:
    """What :func:`purge_on_exit` installed; :meth:`undo` takes it all back."""

    __slots__ = ()

    @property
    def signals(self) -> tuple[signal.Signals, ...]:
        """The signals whose handler purges now."""
        return tuple(signal.Signals(number) for number in sorted(_STATE.previous))

    @property
    def active(self) -> bool:
        """True while the exit hook is installed."""
        return _STATE.at_exit

    def undo(self) -> None:
        """Remove the exit hook and put back each signal's previous handler.

        A handler someone installed over ours since is left in place (it is theirs
        now). Signal handlers can be changed only from the main thread: from another
        thread, with signal handlers installed, this raises ``RuntimeError``. Undoing
        twice is harmless.
        """
        with _STATE.lock:
            if _STATE.previous:
                _require_main_thread("undo()")
            for number, previous in list(_STATE.previous.items()):
                if signal.getsignal(number) is _on_signal:
                    signal.signal(number, previous)
                del _STATE.previous[number]
            if _STATE.at_exit:
                atexit.unregister(_at_exit)
                _STATE.at_exit = False

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.signals) or "no signals"
        return f"<PurgeOnExit {'at exit and on ' + names if self.active else 'undone'}>"


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.at_exit = False
        self.previous: dict[int, _Handler] = {}  # signal -> the handler ours replaced


_STATE = _State()
_HANDLE = PurgeOnExit()


def purge_on_exit(signals: Iterable[int] = DEFAULT_SIGNALS) -> PurgeOnExit:
    """Run :func:`purge` at interpreter exit and when one of ``signals`` arrives.

    After purging, the process ends the way it would have: the handler that was
    installed before is called (for SIGINT, Python's default raises
    ``KeyboardInterrupt`` as usual), and a signal with the default action gets it:
    the handler is reset to ``SIG_DFL`` and the signal sent again, so the exit status
    says killed by that signal (SIGQUIT still dumps core, with every secret wiped
    first). A signal that is ignored when this is called (SIGHUP under ``nohup``) is
    left alone: it would not end the process. Defaults: SIGINT, SIGTERM, SIGHUP and
    SIGQUIT; ``signals=()`` purges only at exit. A handler of yours that keeps the
    process running (SIGHUP to reload, say) would find every secret purged: leave
    that signal out.

    Calling it again is harmless: signals handled already keep their original
    previous handler, new ones are added. Returns a :class:`PurgeOnExit` handle whose
    :meth:`~PurgeOnExit.undo` removes everything (one handle; every call returns it).

    Python lets only the main thread set signal handlers: called from another thread
    with signals this raises ``RuntimeError`` (``signals=()`` works from any thread).
    A signal whose handler was installed by native code (``signal.getsignal`` gives
    None) cannot be chained to and raises ``ValueError``; so do SIGKILL and SIGSTOP,
    which cannot be caught. Neither ``os._exit()`` nor SIGKILL run anything: no purge.
    """
    if isinstance(signals, (bool, int)):
        raise TypeError(
            "signals must be an iterable of signal numbers, e.g. (signal.SIGTERM,) "
            "or () for none, not " + type(signals).__name__
        )
    wanted = [_signal_number(s) for s in signals]
    with _STATE.lock:
        fresh = [n for n in dict.fromkeys(wanted) if n not in _STATE.previous]
        if fresh:
            _require_main_thread("purge_on_exit()")
        for number in fresh:
            previous = signal.getsignal(number)
            if previous is None:
                raise ValueError(
                    f"{signal.Signals(number).name} has a handler installed by native code, "
                    "which Python cannot call after the purge: leave it out of signals="
                )
        for number in fresh:
            if signal.getsignal(number) == signal.SIG_IGN:
                continue  # it would not end the process (nohup's SIGHUP): nothing to purge for
            _STATE.previous[number] = signal.signal(number, _on_signal)
        if not _STATE.at_exit:
            atexit.register(_at_exit)
            _STATE.at_exit = True
    return _HANDLE


def _signal_number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"signals must hold signal numbers (ints), not {type(value).__name__}")
    try:
        number = signal.Signals(value)
    except ValueError:
        raise ValueError(f"{value} is not a signal number on this system") from None
    if number in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"{number.name} cannot be caught, so nothing can purge on it")
    return int(number)


def _require_main_thread(what: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"{what} changes signal handlers, which Python allows only in the main "
            "thread: call it from the main thread (e.g. at start-up), or pass "
            "signals=() to purge at interpreter exit only"
        )


def _at_exit() -> None:
    purge()


def _on_signal(number: int, frame: FrameType | None) -> object:
    purge()
    previous = _STATE.previous.get(number, signal.SIG_DFL)
    if callable(previous):
        return previous(number, frame)  # Python's SIGINT default: KeyboardInterrupt
    if previous == signal.SIG_IGN:
        return None
    # The default action, as if we had never been here: the exit status names the signal.
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    if number in _HARMLESS_BY_DEFAULT:
        signal.signal(number, _on_signal)  # the default did nothing: purge next time too
    return None


# Signals whose default action leaves the process running.
_HARMLESS_BY_DEFAULT = frozenset(
    int(s) for s in (signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH)
)
