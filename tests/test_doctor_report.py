"""The doctor's full report: limits, privilege, core dumps, swap, memfd_secret, requirements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_python

DOCTOR = "from securemem.__main__ import main; raise SystemExit(main({args!r}))"


def doctor(*args: str, memlock: int | None = None, before: str = "") -> tuple[int, str, str]:
    result = run_python(before + "\n" + DOCTOR.format(args=["doctor", *args]), memlock=memlock)
    return result.returncode, result.stdout, result.stderr


def test_json_report_has_every_setting_that_decides_protection() -> None:
    code, stdout, stderr = doctor("--json", memlock=65536)
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["cap_ipc_lock"] is False and report["memlock_applies"] is True
    assert report["memlock_soft"] == report["memlock_hard"] == 65536
    swaps = Path("/proc/swaps").read_text().splitlines()[1:]
    assert report["swap_present"] is bool(swaps)
    assert report["core_pattern"] == Path("/proc/sys/kernel/core_pattern").read_text().strip()
    assert report["dumpable"] is True
    from securemem._secretmem import secretmem_available

    assert report["memfd_secret_available"] is secretmem_available()[0]
    assert report["required"] == ["lo", "dd", "wf"] and report["missing"] == []
    assert set(report["secret_flags"]) == {"lo", "dd", "wf"}


def test_with_cap_ipc_lock_the_limit_is_said_not_to_apply() -> None:
    from securemem._hardening import holds_cap_ipc_lock

    if not holds_cap_ipc_lock():
        pytest.skip("needs CAP_IPC_LOCK")
    code, stdout, _ = doctor()
    assert code == 0
    assert "CAP_IPC_LOCK:        held (the memlock limit does not apply)" in stdout


def test_required_core_dump_protection_fails_until_core_dumps_are_disabled() -> None:
    enable = (
        "import resource; "
        "resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)"
    )
    code, stdout, _ = doctor("--require", "lo,nocore", before=enable)
    assert code == 1
    assert "PROBLEM: missing nocore" in stdout and "cannot write a core dump" in stdout
    disable = "; import securemem; securemem.disable_core_dumps()"
    code, stdout, _ = doctor("--require", "lo,nocore", before=enable + disable)
    assert code == 0, stdout
    assert "dumpable no" in stdout and "no core dump possible" in stdout


def test_missing_lock_is_named_and_fails() -> None:
    code, stdout, _ = doctor("--json", memlock=0)
    assert code == 1
    report = json.loads(stdout)
    assert report["missing"] == ["lo"] and report["ok"] is False
    assert set(report["secret_flags"]) == {"dd", "wf"}  # the rest of the protection still holds


def test_unknown_requirement_is_a_usage_error() -> None:
    code, _, stderr = doctor("--require", "lo,nothing")
    assert code == 2
    assert "unknown requirement nothing" in stderr and "secretmem" in stderr


def test_secretmem_backend_report() -> None:
    from securemem._secretmem import secretmem_available

    available, _ = secretmem_available()
    code, stdout, _ = doctor("--json", "--backend", "secretmem", memlock=65536)
    report = json.loads(stdout)
    assert "secretmem" in report["required"]
    if available:
        assert code == 0 and report["missing"] == []
        assert {"lo", "dd", "dc"} <= set(report["secret_flags"])
    else:
        assert code == 1 and "secretmem" in report["missing"]
