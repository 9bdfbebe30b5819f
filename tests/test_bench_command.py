"""``securemem bench``: runs a checkout's benchmark suite, or says how to get one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from securemem import _bench
from securemem.__main__ import main

# A stand-in suite that records how it was started, so the test sees exactly what
# `securemem bench` passed on, with which interpreter and from which directory.
RECORDER = """
import json, os, sys
with open(os.environ["BENCH_RECORD"], "w") as out:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "python": sys.executable}, out)
sys.exit(int(os.environ.get("BENCH_STATUS", "0")))
"""


def _checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "benchmarks").mkdir(parents=True)
    (root / "benchmarks" / "__init__.py").write_text("")
    (root / "benchmarks" / "__main__.py").write_text(RECORDER)
    return root


def test_runs_the_suite_of_the_checkout_with_the_arguments_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _checkout(tmp_path)
    record = tmp_path / "record.json"
    monkeypatch.setenv("BENCH_RECORD", str(record))
    monkeypatch.setenv("BENCH_STATUS", "3")
    status = _bench.run(["--quick", "--out", "somewhere"], roots=[tmp_path / "nothing", root])
    assert status == 3  # the suite's own exit status comes back
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["--quick", "--out", "somewhere"]
    assert Path(seen["cwd"]) == root.resolve()
    assert seen["python"] == sys.executable


def test_without_a_checkout_it_says_how_to_get_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _bench.run(["--quick"], roots=[tmp_path]) == 2
    message = capsys.readouterr().err
    assert "git clone" in message and "python -m benchmarks" in message


def test_command_line_passes_unknown_options_to_bench_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["stats", "--quick"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --quick" in capsys.readouterr().err
