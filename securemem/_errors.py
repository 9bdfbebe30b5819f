"""The exceptions securemem raises.

One root, :class:`SecureMemoryError`; every subclass also subclasses the
builtin a caller would already catch (``MemoryError``, ``ValueError``,
``OSError``), so ordinary ``except`` clauses keep working. No message here ever
contains a byte of a secret: they are built from sizes, counts and errno only.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "AllocationError",
    "CanaryError",
    "EnclaveError",
    "KdfLimitError",
    "KernelError",
    "KeyFormatError",
    "MemoryLockError",
    "SecureBytesClosedError",
    "SecureMemoryError",
]


class SecureMemoryError(Exception):
    """Root of every error securemem raises on purpose."""


class KernelError(SecureMemoryError, OSError):
    """A system call securemem relies on failed (mmap, mprotect, madvise, ...)."""

    def __init__(self, errno: int, message: str) -> None:
        OSError.__init__(self, errno, message)


class MemoryLockError(KernelError, MemoryError):
    """Pages could not be locked into RAM (mlock failed or would exceed the limit).

    ``errno`` is the kernel's reason; the message says how many bytes were asked
    for, how many this process holds locked already, the RLIMIT_MEMLOCK in force
    and how to raise it.
    """


class AllocationError(SecureMemoryError, MemoryError):
    """The memory asked for cannot be mapped at all (too large, or mmap failed)."""


class SecureBytesClosedError(SecureMemoryError, ValueError):
    """A closed SecureBytes was used: its bytes are wiped and its memory released."""


class EnclaveError(SecureMemoryError, ValueError):
    """An enclave cannot be opened: its ciphertext was altered, or this process does not
    hold the key it was sealed under (a forked child that was not given the key)."""


class KeyFormatError(SecureMemoryError, ValueError):
    """Key data securemem cannot load: not a private key, a format it does not read, a
    wrong password, or a damaged file. The message names the format detected and never
    holds a byte of the key or the password."""


class KdfLimitError(KeyFormatError):
    """A key file asks for more key-derivation work (rounds, iterations, memory) than the
    limits in force allow; raise them with ``kdf_limits=`` if the file is trusted."""


class PasswordMismatch(TypeError):
    """Private: a key reader's own "password given for a key that has none" (or "none given
    for a key that has one"). Key loading re-raises it as a plain ``TypeError`` with its
    message; a ``TypeError`` from a library gets a fixed message instead (see
    ``securemem/_keyformats/_dispatch.py``)."""


class CanaryError(SecureMemoryError):
    """The canary in front of a guarded secret was overwritten: a buffer underrun."""


def errno_name(number: int) -> str:
    """``ENOMEM`` for 12, and a readable fallback for numbers without a name."""
    return _errno.errorcode.get(number, f"errno {number}")


def _format_bytes(count: int) -> str:
    if count >= 1 << 20 and count % (1 << 20) == 0:
        return f"{count} bytes ({count >> 20} MiB)"
    if count >= 1 << 10 and count % (1 << 10) == 0:
        return f"{count} bytes ({count >> 10} KiB)"
    return f"{count} bytes"


def memory_lock_error(
    number: int, requested: int, locked_already: int | None, limit: int | None
) -> MemoryLockError:
    """Build the error a user sees when mlock fails, with what to do about it."""
    parts = [
        f"could not lock {_format_bytes(requested)} into RAM: "
        f"{errno_name(number)} ({os.strerror(number)})."
    ]
    if locked_already is not None:
        parts.append(f"This process already holds {_format_bytes(locked_already)} locked.")
    if limit is None:
        parts.append("RLIMIT_MEMLOCK is unlimited.")
    else:
        parts.append(f"RLIMIT_MEMLOCK is {_format_bytes(limit)}.")
    if number == _errno.EPERM:
        parts.append(
            "The system refuses to lock memory for this user: run with the privilege "
            "to lock memory (CAP_IPC_LOCK on Linux, superuser on QNX) or raise "
            "RLIMIT_MEMLOCK above zero."
        )
    elif limit is None:
        # No limit applies, so raising one cannot help: the kernel itself could not pin
        # more pages (short of free RAM, a cgroup memory limit, FreeBSD's vm.max_wired).
        parts.append(
            "The limit did not stop this: the system could not pin more memory (it is "
            "short of free RAM, or a cgroup or system-wide wired-memory limit applies). "
            "Close secrets you no longer need, or free memory on the machine."
        )
    else:
        parts.append(
            "Close secrets you no longer need, or raise the limit: `ulimit -l <KiB>` "
            "in the shell, LimitMEMLOCK= in a systemd unit, "
            "`docker run --ulimit memlock=<bytes>`, or on Kubernetes the container "
            "runtime's limit or the IPC_LOCK capability in the securityContext. "
            "`python -m securemem doctor` shows how many secrets fit; the documentation's "
            "tuning page explains each setting."
        )
    return MemoryLockError(number, " ".join(parts))
