"""Every hand-off of a secret to another library stays within the copies the docs promise.

Each case in tests/handoff_cases.py runs in a fresh interpreter (PYTHONHASHSEED=0, so the heap
is laid out the same way every run) and reports how many copies of a marker a scan of that
process finds outside locked memory, at named moments. Where a path's copies are another
library's (OpenSSL's key schedules, what ``ssl`` keeps of a key file), the test asserts the
documented *bound* of tests/copy_bounds.py: fewer copies never fail, more fail this test with
the path, the releases and both numbers. The counts for the releases at hand are what
``python -m benchmarks.audit`` prints; the cases it reports without a bound (what another
library does on its own, without securemem) are not tested here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import copy_bounds
from tests.conftest import REPO
from tests.handoff_cases import CASES, make_keys, measure

BOUNDED = sorted({case for case, _ in copy_bounds.BOUNDS if case in CASES})


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys, a self-signed certificate and a configuration secret, made in another process."""
    keys = tmp_path_factory.mktemp("handoff-keys")
    make_keys(keys)
    return keys


def needs(case: str) -> None:
    if case.startswith("paramiko."):
        pytest.importorskip("paramiko")
    if case.split(".")[0] in {"cryptography", "securemem", "aead", "kdf", "stack", "registers"}:
        pytest.importorskip("cryptography")


def test_every_bound_names_a_case_and_a_moment_it_reports() -> None:
    # The table may not name a case that does not exist (keys.* are tests/test_keys.py's).
    unknown = {case for case, _ in copy_bounds.BOUNDS if not case.startswith("keys.")}
    assert unknown - set(CASES) == set()


@pytest.mark.parametrize("case", BOUNDED)
def test_copies_left_by(case: str, key_dir: Path) -> None:
    needs(case)
    counts = measure(case, key_dir)
    moments = {moment for name, moment in copy_bounds.BOUNDS if name == case}
    assert moments <= set(counts), f"{case} no longer reports {moments - set(counts)}"
    # A case that scans the stack leaves a copy there itself: its scan must have found it.
    assert counts.get("control", 1) >= 1, f"{case}: the scan missed the case's own copy"
    problems = [copy_bounds.excess((case, moment), counts[moment]) for moment in sorted(moments)]
    found = [problem for problem in problems if problem is not None]
    assert not found, "\n".join(found)


def test_the_scan_in_a_child_sees_a_copy_that_exists(key_dir: Path) -> None:
    # The control for every zero above: the case holds the decoded secret in a bytes object
    # of its own while it scans, and the scan must find it.
    counts = measure("env.bytes_fromhex", key_dir)
    assert counts["decoded"] >= 1


def test_a_count_above_its_bound_names_the_path_the_releases_and_both_numbers() -> None:
    path = ("aead.AESGCM", "key_alive")
    bound = copy_bounds.BOUNDS[path]
    assert copy_bounds.excess(path, bound) is None
    assert copy_bounds.excess(path, 0) is None  # fewer copies are never a failure
    message = copy_bounds.excess(path, bound + 1)
    assert message is not None
    cryptography = pytest.importorskip("cryptography")
    from cryptography.hazmat.backends.openssl.backend import backend

    for part in (
        "aead.AESGCM [key_alive]",
        f"{bound + 1} copies",
        f"bound of {bound}",
        f"cryptography {cryptography.__version__}",
        backend.openssl_version_text(),
        f"CPython {__import__('platform').python_version()}",
    ):
        assert part in message, (part, message)
    with pytest.raises(AssertionError, match=r"aead\.AESGCM \[key_alive\]: 3 copies"):
        copy_bounds.assert_within(path, 3)


def test_the_page_names_only_cases_and_tests_that_exist() -> None:
    page = (REPO / "docs" / "other-libraries.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`\[([a-zA-Z0-9_.]+)\]`", page))
    named.discard("case")  # the explanation of the notation
    assert named, "docs/other-libraries.md no longer names its cases"
    assert named <= set(CASES), f"the page names cases that do not exist: {named - set(CASES)}"
    for path, name in re.findall(r"`(tests/[a-z_]+\.py)::(test_[a-z0-9_]+)`", page):
        source = (REPO / path).read_text(encoding="utf-8")
        assert f"def {name}(" in source, f"the page names {path}::{name}, which does not exist"
