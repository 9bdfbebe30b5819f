"""``python -m securemem doctor``: what protection this process really gets.

It stores a real test secret and asks the kernel (through /proc on Linux)
whether its page is locked, kept out of core dumps and wiped on fork, next to
the limits that decide how many secrets fit.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass

from securemem import _procfs
from securemem._arena import SIZE_CLASSES, Arena
from securemem._errors import MemoryLockError
from securemem._kernel import memlock_limits
from securemem._securebytes import SecureBytes


@dataclass(frozen=True)
class Report:
    """Everything the doctor found; ``ok`` is True when the test secret is locked."""

    platform: str
    python: str
    page_size: int
    memlock_soft: int | None
    memlock_hard: int | None
    secrets_of_64_bytes_that_fit: int | None
    secret_locked: bool | None
    secret_flags: list[str]
    vmlck_bytes: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.secret_locked is True


def secrets_that_fit(limit: int | None, page_size: int, size: int = 64) -> int | None:
    """How many secrets of ``size`` bytes fit in ``limit`` locked bytes (None: no limit)."""
    if limit is None:
        return None
    slot = next(c for c in SIZE_CLASSES if c >= size) if size <= SIZE_CLASSES[-1] else size
    return (limit // page_size) * (page_size // slot)


def examine() -> Report:
    """Store a test secret in a fresh arena and read back what the kernel says about it."""
    soft, hard = memlock_limits()
    arena = Arena(reserve_pages=0)
    locked: bool | None = None
    flags: list[str] = []
    error = None
    try:
        with SecureBytes(b"securemem doctor test secret", arena=arena) as secret:
            mapping = _procfs.mapping_at(secret.address)
            if mapping is not None:
                locked = mapping.locked
                flags = sorted(flag for flag in mapping.flags if flag in ("lo", "dd", "wf"))
            vmlck = _procfs.process_locked_bytes()
    except MemoryLockError as exc:
        locked, error, vmlck = False, str(exc), _procfs.process_locked_bytes()
    return Report(
        platform=f"{platform.system()} {platform.release()} ({platform.machine()})",
        python=sys.version.split()[0],
        page_size=arena.page_size,
        memlock_soft=soft,
        memlock_hard=hard,
        secrets_of_64_bytes_that_fit=secrets_that_fit(soft, arena.page_size),
        secret_locked=locked,
        secret_flags=flags,
        vmlck_bytes=vmlck,
        error=error,
    )


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else f"{value} bytes ({value // 1024} KiB)"


def render(report: Report) -> str:
    """The report as a user reads it."""
    fit = report.secrets_of_64_bytes_that_fit
    flag_names = {"lo": "locked", "dd": "not dumped", "wf": "wiped on fork"}
    lines = [
        "securemem doctor",
        f"  platform:            {report.platform}, Python {report.python}",
        f"  page size:           {report.page_size} bytes",
        f"  RLIMIT_MEMLOCK:      soft {_limit(report.memlock_soft)}, "
        f"hard {_limit(report.memlock_hard)}",
        "  64-byte secrets fit: " + ("no limit" if fit is None else f"{fit}"),
    ]
    if report.secret_locked is None:
        lines.append("  test secret:         stored; this system has no /proc to confirm the lock")
    else:
        shown = ", ".join(f"{f} ({flag_names[f]})" for f in report.secret_flags) or "none"
        state = "LOCKED" if report.secret_locked else "NOT LOCKED"
        lines.append(f"  test secret:         {state}; smaps flags: {shown}")
    if report.vmlck_bytes is not None:
        lines.append(f"  VmLck:               {report.vmlck_bytes} bytes")
    if report.error:
        lines.append(f"  error:               {report.error}")
    lines.append(
        "  verdict:             " + ("OK" if report.ok else "PROBLEM: secrets are not locked")
    )
    return "\n".join(lines)


def to_dict(report: Report) -> dict[str, object]:
    """The report for ``--json``."""
    data = asdict(report)
    data["ok"] = report.ok
    return data
