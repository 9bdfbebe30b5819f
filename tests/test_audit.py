"""``python -m benchmarks.audit`` runs and prints a row for every path it measures, headed by
the releases it measured. Only the report's shape is checked, never a count: the counts'
bounds are tests/test_handoffs.py's."""

from __future__ import annotations

import platform
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.copy_bounds import BOUNDS
from tests.handoff_cases import CASES

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def report() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.audit"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    # Status 1 means a count above its bound: the report must then say which.
    assert (result.returncode == 1) == ("over the bound" in result.stdout), result.stdout
    return result.stdout


def test_the_report_is_headed_by_the_releases_it_measured(report: str) -> None:
    import cryptography

    heading = report.splitlines()[2]
    assert f"cryptography {cryptography.__version__}" in heading
    assert f"CPython {platform.python_version()}" in heading
    assert "OpenSSL" in heading and platform.machine() in heading


def test_every_path_has_a_row_with_a_count_and_its_bound(report: str) -> None:
    rows = re.findall(r"^\| `([^`]+)` \| ([a-z_]+) \| (\d+)[^|]* \| (≤ \d+|-) \|$", report, re.M)
    measured = {(case, moment): bound for case, moment, _, bound in rows}
    skipped = set(re.findall(r"^\| `([^`]+)` \| - \| not measured", report, re.M))
    assert {case for case, _ in measured} | skipped == set(CASES)
    for path, bound in BOUNDS.items():
        if path[0] in CASES and path[0] not in skipped:
            assert measured.get(path) == f"≤ {bound}", path
