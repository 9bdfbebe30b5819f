"""securemem: secrets in memory that is locked, kept out of core dumps and wiped.

Hold keys, passwords and tokens in :class:`SecureBytes`: memory the operating
system will not swap out, write into a core dump or hand to a forked child, and
that is zeroed the moment it is released.
"""

from __future__ import annotations

from securemem import _fork  # noqa: F401  (the fork hook: registered on import)
from securemem._arena import Arena, ArenaStats, default_arena
from securemem._enclave import Enclave
from securemem._errors import (
    AllocationError,
    CanaryError,
    EnclaveError,
    KdfLimitError,
    KernelError,
    KeyFormatError,
    MemoryLockError,
    SecureBytesClosedError,
    SecureMemoryError,
)
from securemem._handoff import secret_file
from securemem._hardening import disable_core_dumps
from securemem._lockmemory import LockedMemory, lock_memory
from securemem._public import claim_public_names
from securemem._purge import PurgeOnExit, purge, purge_on_exit
from securemem._secretinput import GetPassWarning, InsecureFileWarning, getpass
from securemem._securebytes import SecureBytes
from securemem._stream import Stream
from securemem._version import __version__ as __version__

__all__ = [
    "AllocationError",
    "Arena",
    "ArenaStats",
    "CanaryError",
    "Enclave",
    "EnclaveError",
    "GetPassWarning",
    "InsecureFileWarning",
    "KdfLimitError",
    "KernelError",
    "KeyFormatError",
    "LockedMemory",
    "MemoryLockError",
    "PurgeOnExit",
    "SecureBytes",
    "SecureBytesClosedError",
    "SecureMemoryError",
    "Stream",
    "disable_core_dumps",
    "getpass",
    "lock_memory",
    "purge",
    "purge_on_exit",
    "secret_file",
    "stats",
]


def stats() -> ArenaStats:
    """What the default arena holds: locked, mapped and in-use bytes, secrets, limit."""
    return default_arena().stats()


claim_public_names(globals(), __all__, __name__)
