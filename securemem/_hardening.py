"""Process-wide hardening and what the system says about it (core dumps, swap, privileges).

:func:`disable_core_dumps` is the public part; the readers below feed the doctor.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from securemem import _procfs
from securemem._binding import ffi, lib
from securemem._errors import KernelError, errno_name

CAP_IPC_LOCK = 14


def disable_core_dumps() -> None:
    """Stop this process from ever writing a core dump, for the rest of its life.

    Sets RLIMIT_CORE to 0 (soft and hard, so it cannot be raised again without
    privilege) and, on Linux, PR_SET_DUMPABLE to 0, which also keeps
    core_pattern pipes (systemd-coredump, apport) from getting a dump and stops
    other processes of the same user from attaching with ptrace or reading
    /proc/PID/mem. securemem's own memory is kept out of dumps already; this
    covers everything else: copies in ``bytes``, library buffers, the heap.
    """
    if lib.sm_disable_core_dumps() != 0:
        number = ffi.errno
        raise KernelError(
            number, f"could not disable core dumps: {errno_name(number)} (setrlimit/prctl)"
        )


@dataclass(frozen=True)
class CoreDumpSettings:
    """What decides whether, and where, this process would be dumped."""

    rlimit_soft: int | None
    """RLIMIT_CORE soft limit in bytes (None: unlimited); 0 means no core file."""
    rlimit_hard: int | None
    dumpable: bool | None
    """PR_GET_DUMPABLE (Linux); False means no dump at all, not even to a pipe."""
    core_pattern: str | None
    """/proc/sys/kernel/core_pattern: a file name, or ``|program`` for a pipe."""

    @property
    def disabled(self) -> bool:
        """True when no core dump of this process can be written.

        A core_pattern pipe ignores RLIMIT_CORE (only a limit of 1 stops it),
        so with a pipe only ``dumpable = False`` counts.
        """
        if self.dumpable is False:
            return True
        piped = self.core_pattern is not None and self.core_pattern.startswith("|")
        return self.rlimit_soft == 0 and not piped


def _rlimit(value: int) -> int | None:
    return None if value == resource.RLIM_INFINITY else value


def core_dump_settings() -> CoreDumpSettings:
    """Read RLIMIT_CORE, the dumpable flag and core_pattern for this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    flag = int(lib.sm_dumpable())
    dumpable = None if flag < 0 else bool(flag)
    text = _procfs.read_text("sys/kernel/core_pattern")
    pattern = None if text is None else text.strip()
    return CoreDumpSettings(_rlimit(soft), _rlimit(hard), dumpable, pattern)


def holds_cap_ipc_lock() -> bool | None:
    """True when this process may lock memory past RLIMIT_MEMLOCK (Linux CAP_IPC_LOCK)."""
    line = _procfs.status_line("CapEff")
    return None if line is None else bool(int(line.split()[1], 16) >> CAP_IPC_LOCK & 1)


@dataclass(frozen=True)
class SwapDevice:
    """One line of /proc/swaps."""

    name: str
    kind: str
    size_bytes: int
    used_bytes: int


def swap_devices() -> list[SwapDevice] | None:
    """Active swap areas (zram included), or None where /proc/swaps cannot be read."""
    text = _procfs.read_text("swaps")
    if text is None:
        return None
    lines = text.splitlines()[1:]
    devices = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 4:
            devices.append(
                SwapDevice(fields[0], fields[1], int(fields[2]) * 1024, int(fields[3]) * 1024)
            )
    return devices
