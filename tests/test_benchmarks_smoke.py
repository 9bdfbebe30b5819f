"""The benchmark harness runs end to end in its quickest mode and writes well-formed results.

Only the shape of the output is checked, never a timing: speed goals live in
the benchmark's own report (benchmarks/results/), not in assertions.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SYSTEMS = {"securemem", "libsodium", "openssl", "naive", "bytearray"}
WORKLOADS = (
    "round_trip",
    "density",
    "scale",
    "wipe",
    "growth",
    "threads",
    "access",
    "key_load",
    "enclave",
)
# The enclave workload's two loops: open + close, and its floor (an AEAD built + decrypting).
_ENCLAVE_LOOPS = ("enclave_open_close", "chacha20poly1305_build_decrypt")
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)]
    if not HAVE_MATPLOTLIB:
        command.append("--no-chart")
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "## Targets" in result.stdout  # the table is printed as well as written
    return out


def test_json_has_every_workload_and_system(quick_run: Path) -> None:
    results = json.loads((quick_run / "results.json").read_text(encoding="utf-8"))
    assert results["quick"] is True
    machine = results["machine"]
    for key in ("date", "cpu", "kernel", "python", "libsodium", "openssl"):
        assert isinstance(machine[key], str) and machine[key], key
    assert not machine["libsodium"].startswith("missing")
    assert not machine["openssl"].startswith("missing")
    for workload in WORKLOADS:
        assert workload in results, workload
    assert set(results["round_trip"]) == SYSTEMS
    for name, row in results["round_trip"].items():
        assert set(row) == {"16", "32", "64", "1024", "4096", "65536"}, name
        for size, cell in row.items():
            assert _number(cell["best_ns"]) and cell["best_ns"] > 0, (name, size, cell)
            assert cell["median_ns"] >= cell["best_ns"]
    assert set(results["threads"]) == SYSTEMS
    assert set(results["scale"]) == SYSTEMS
    # securemem must have been measured at both scales (the others may be n/a, with a reason)
    assert all(_number(cell["best_ns"]) for cell in results["scale"]["securemem"].values())
    for row in results["scale"].values():
        for cell in row.values():
            assert "best_ns" in cell or cell["error"]
    assert _number(results["wipe"]["securemem_wipe"])
    assert _number(results["growth"]["off"]["p99_us"])
    access = results["access"]
    for key, floor in (("copy_in", "bytes"), ("getitem", "bytearray")):
        for name in ("securemem", floor):
            assert _number(access[key][name]["best_ns"]) and access[key][name]["best_ns"] > 0
    for protection in ("plain", "passphrase"):
        cells = results["key_load"][protection]
        for name in ("securemem", "cryptography"):
            assert _number(cells[name]["best_ns"]) and cells[name]["best_ns"] > 0, protection
        assert cells["ratio"] == cells["securemem"]["best_ns"] / cells["cryptography"]["best_ns"]


def test_density_counts_are_real(quick_run: Path) -> None:
    """Each system ran unprivileged under 64 KiB and held some, but no more than it allows."""
    density = json.loads((quick_run / "results.json").read_text(encoding="utf-8"))["density"]
    assert set(density) == SYSTEMS - {"bytearray"}
    for name, row in density.items():
        cell = row[str(64 << 10)]
        assert cell["memlock_limit"] == 64 << 10, name
        assert isinstance(cell["held"], int) and cell["held"] > 0, (name, cell)
        # 64-byte secrets cannot outnumber the 64-byte slots of 64 KiB of locked pages
        assert cell["held"] <= (64 << 10) // 64, (name, cell)
        assert cell["vm_locked"] <= 64 << 10, (name, cell)


def test_targets_are_each_met_missed_or_explained(quick_run: Path) -> None:
    results = json.loads((quick_run / "results.json").read_text(encoding="utf-8"))
    targets = results["targets"]
    assert len(targets) == 15  # 12, the two OpenSSH RSA key loads and the enclave (issue 22)
    enclave = [item for item in targets if item["target"].startswith("enclave open+close")]
    # Issue 22's ratio, computed from the workload's own best times (no speed verdict here).
    times = results["enclave"]["times"]
    opened, floor = (times[name]["best_ns"] for name in _ENCLAVE_LOOPS)
    assert _number(opened) and _number(floor) and opened > 0 and floor > 0, times
    assert len(enclave) == 1 and enclave[0]["measured"] == opened / floor, enclave
    for item in targets:
        if item["met"] is None:
            assert item["note"], item  # n/a must say why
        else:
            assert item["met"] == (item["factor"] >= 1), item
    markdown = (quick_run / "results.md").read_text(encoding="utf-8")
    assert markdown.count("**met**") + markdown.count("**missed**") == sum(
        item["met"] is not None for item in targets
    )
    for heading in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6.", "## 7.", "## 8."):
        assert heading in markdown
    for label in ("securemem", "libsodium", "OpenSSL", "mmap+mlock", "bytearray"):
        assert f"| {label}" in markdown, label


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib missing: pip install -e '.[bench]'")
def test_chart_is_a_png(quick_run: Path) -> None:
    data = (quick_run / "results.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000  # four panels, not an empty canvas
