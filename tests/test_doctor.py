"""``python -m securemem doctor`` as users run it."""

from __future__ import annotations

import json

from tests.conftest import run_python


def test_doctor_reports_a_locked_secret_and_exits_zero() -> None:
    result = run_python("from securemem.__main__ import main; raise SystemExit(main(['doctor']))")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOCKED" in result.stdout and "lo (locked)" in result.stdout
    assert "page size:           4096 bytes" in result.stdout


def test_doctor_json_counts_the_secrets_that_fit_under_the_users_limit() -> None:
    result = run_python(
        "from securemem.__main__ import main; raise SystemExit(main(['doctor', '--json']))",
        memlock=65536,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["memlock_soft"] == 65536
    assert report["secrets_of_64_bytes_that_fit"] == 16 * 64
    assert report["secret_locked"] is True and report["ok"] is True
    assert set(report["secret_flags"]) == {"lo", "dd", "wf"}


def test_doctor_exits_nonzero_when_nothing_can_be_locked() -> None:
    result = run_python(
        "from securemem.__main__ import main; raise SystemExit(main(['doctor']))", memlock=0
    )
    assert result.returncode == 1
    assert "NOT LOCKED" in result.stdout and "EPERM" in result.stdout
