"""``python -m securemem doctor``: what protection this process really gets.

It stores a real test secret and asks the kernel (through /proc on Linux)
whether its page is locked, kept out of core dumps and wiped on fork, next to
the limits and settings that decide how many secrets fit and where they could
still leak (core dumps, swap). The exit status is non-zero when a protection
that is required (``--require``; by default the three the arena applies: lo,
dd, wf) is missing.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass, field

from securemem import _procfs
from securemem._arena import SIZE_CLASSES, Arena, Backend
from securemem._binding import lib
from securemem._errors import SecureMemoryError
from securemem._hardening import core_dump_settings, holds_cap_ipc_lock, swap_devices
from securemem._kernel import memlock_limits
from securemem._secretmem import secretmem_available
from securemem._securebytes import SecureBytes

REQUIREMENTS = {
    "lo": "the test secret's page is locked into RAM (smaps lo)",
    "dd": "the test secret's page is excluded from core dumps (smaps dd)",
    "wf": "the test secret is not inherited by a forked child (smaps wf, or dc for secretmem)",
    "secretmem": "memfd_secret is available (Linux 5.14+, secretmem enabled)",
    "nocore": "this process cannot write a core dump at all (RLIMIT_CORE 0 or not dumpable)",
    "noswap": "no swap is active, so nothing unlocked can be swapped out",
}
DEFAULT_REQUIRE = ("lo", "dd", "wf")
_FLAG_NAMES = {
    "lo": "locked",
    "dd": "not dumped",
    "wf": "wiped on fork",
    "dc": "not inherited on fork",
}


def parse_requirements(text: str) -> tuple[str, ...]:
    """``"lo,dd,wf"`` -> ("lo", "dd", "wf"); a clear error for an unknown name."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ValueError(
            f"--require names nothing, so the doctor would check nothing: give one or more "
            f"of {', '.join(REQUIREMENTS)} separated by commas (or leave --require out)"
        )
    unknown = [name for name in names if name not in REQUIREMENTS]
    if unknown:
        raise ValueError(
            f"unknown requirement {', '.join(unknown)}: choose from {', '.join(REQUIREMENTS)}"
        )
    return names


@dataclass(frozen=True)
class Report:
    """Everything the doctor found; ``ok`` is True when nothing required is missing."""

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
    backend: str = "anonymous"
    cap_ipc_lock: bool | None = None
    memlock_applies: bool = True
    core_rlimit_soft: int | None = None
    core_rlimit_hard: int | None = None
    dumpable: bool | None = None
    core_pattern: str | None = None
    core_dumps_disabled: bool = False
    swap_present: bool | None = None
    swap_bytes: int | None = None
    memfd_secret_available: bool = False
    memfd_secret_reason: str = ""
    required: list[str] = field(default_factory=lambda: list(DEFAULT_REQUIRE))
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing


def secrets_that_fit(
    limit: int | None,
    page_size: int,
    size: int = 64,
    backend: Backend = "anonymous",
    region_pages: int = 64,
) -> int | None:
    """How many secrets of ``size`` bytes fit in ``limit`` locked bytes (None: no limit).

    The anonymous backend locks only the pages that hold secrets. memfd_secret is charged
    whole regions when they are mapped, guard pages included (``region_pages`` usable pages
    plus two), so only whole regions count there.
    """
    if limit is None:
        return None
    slot = next(c for c in SIZE_CLASSES if c >= size) if size <= SIZE_CLASSES[-1] else size
    per_page = page_size // slot
    if backend == "secretmem":
        return (limit // ((region_pages + 2) * page_size)) * region_pages * per_page
    return (limit // page_size) * per_page


def _missing(
    required: tuple[str, ...],
    flags: list[str],
    locked: bool | None,
    core_disabled: bool,
    swap_present: bool | None,
    secretmem: bool,
) -> list[str]:
    have = {
        "lo": locked is True,
        "dd": "dd" in flags,
        "wf": "wf" in flags or "dc" in flags,
        "secretmem": secretmem,
        "nocore": core_disabled,
        "noswap": swap_present is False,
    }
    return [name for name in required if not have[name]]


def examine(
    require: tuple[str, ...] = DEFAULT_REQUIRE, backend: Backend = "anonymous"
) -> Report:
    """Store a test secret in a fresh arena and read back what the kernel says about it."""
    soft, hard = memlock_limits()
    secretmem, secretmem_reason = secretmem_available()
    if backend == "secretmem" and "secretmem" not in require:
        require = (*require, "secretmem")
    locked: bool | None = None
    flags: list[str] = []
    error = None
    vmlck = None
    # Policy "raise" first, for the error a user would get; then "allow", so that
    # the flags of a secret that could not be locked are reported all the same.
    for policy in ("raise", "allow"):
        try:
            # One page per region: the smallest a memfd_secret region can be charged.
            arena = Arena(
                reserve_pages=0, region_pages=1, backend=backend, on_lock_failure=policy
            )
            with SecureBytes(b"securemem doctor test secret", arena=arena) as secret:
                mapping = _procfs.mapping_at(secret.address)
                if mapping is not None:
                    locked = mapping.locked
                    flags = sorted(flag for flag in mapping.flags if flag in _FLAG_NAMES)
                vmlck = _procfs.process_locked_bytes()
            break
        except SecureMemoryError as exc:
            locked, vmlck = False, _procfs.process_locked_bytes()
            error = error or str(exc)
    page_size = int(lib.sm_page_size())  # every backend maps in the system's pages
    cap = holds_cap_ipc_lock()
    core = core_dump_settings()
    swaps = swap_devices()
    swap_present = None if swaps is None else bool(swaps)
    return Report(
        platform=f"{platform.system()} {platform.release()} ({platform.machine()})",
        python=sys.version.split()[0],
        page_size=page_size,
        memlock_soft=soft,
        memlock_hard=hard,
        secrets_of_64_bytes_that_fit=secrets_that_fit(soft, page_size, backend=backend),
        secret_locked=locked,
        secret_flags=flags,
        vmlck_bytes=vmlck,
        error=error,
        backend=backend,
        cap_ipc_lock=cap,
        memlock_applies=not cap,
        core_rlimit_soft=core.rlimit_soft,
        core_rlimit_hard=core.rlimit_hard,
        dumpable=core.dumpable,
        core_pattern=core.core_pattern,
        core_dumps_disabled=core.disabled,
        swap_present=swap_present,
        swap_bytes=None if swaps is None else sum(device.size_bytes for device in swaps),
        memfd_secret_available=secretmem,
        memfd_secret_reason=secretmem_reason,
        required=list(require),
        missing=_missing(require, flags, locked, core.disabled, swap_present, secretmem),
    )


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else f"{value} bytes ({value // 1024} KiB)"


def _yes_no(value: bool | None, yes: str, no: str) -> str:
    return "unknown" if value is None else (yes if value else no)


def render(report: Report) -> str:
    """The report as a user reads it."""
    fit = report.secrets_of_64_bytes_that_fit
    fits = "no limit" if fit is None else f"{fit}"
    if report.cap_ipc_lock:
        fits = "no limit here (CAP_IPC_LOCK held)"
        if fit is not None:
            fits += f"; {fit} for a process without it under this limit"
    core_limit = "unlimited" if report.core_rlimit_soft is None else str(report.core_rlimit_soft)
    lines = [
        "securemem doctor",
        f"  platform:            {report.platform}, Python {report.python}",
        f"  page size:           {report.page_size} bytes",
        f"  RLIMIT_MEMLOCK:      soft {_limit(report.memlock_soft)}, "
        f"hard {_limit(report.memlock_hard)}",
        "  CAP_IPC_LOCK:        "
        + _yes_no(report.cap_ipc_lock, "held (the memlock limit does not apply)", "not held"),
        "  64-byte secrets fit: " + fits,
        f"  core dumps:          RLIMIT_CORE {core_limit}, dumpable "
        + _yes_no(report.dumpable, "yes", "no")
        + f", core_pattern {report.core_pattern!r}"
        + (" -> no core dump possible" if report.core_dumps_disabled else ""),
        "  swap:                "
        + (
            "unknown"
            if report.swap_present is None
            else f"active, {report.swap_bytes} bytes"
            if report.swap_present
            else "none active"
        ),
        "  memfd_secret:        "
        + ("available" if report.memfd_secret_available else report.memfd_secret_reason),
        f"  backend:             {report.backend}",
    ]
    if report.secret_locked is None:
        lines.append("  test secret:         stored; this system has no /proc to confirm the lock")
    else:
        shown = ", ".join(f"{f} ({_FLAG_NAMES[f]})" for f in report.secret_flags) or "none"
        state = "LOCKED" if report.secret_locked else "NOT LOCKED"
        lines.append(f"  test secret:         {state}; smaps flags: {shown}")
    if report.vmlck_bytes is not None:
        lines.append(f"  VmLck:               {report.vmlck_bytes} bytes")
    if report.error:
        lines.append(f"  error:               {report.error}")
    lines.append(f"  required:            {', '.join(report.required) or 'nothing'}")
    if report.ok:
        lines.append("  verdict:             OK")
    else:
        lines.append("  verdict:             PROBLEM: missing " + ", ".join(report.missing))
        lines.extend(f"    - {name}: {REQUIREMENTS[name]}" for name in report.missing)
    return "\n".join(lines)


def to_dict(report: Report) -> dict[str, object]:
    """The report for ``--json``."""
    data = asdict(report)
    data["ok"] = report.ok
    return data
