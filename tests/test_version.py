"""One version number, written in securemem/_version.py, reported everywhere the same."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import securemem
from tests.conftest import REPO, child_env


def _version_output(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=REPO,
        check=False,
    )


def test_python_m_securemem_version_prints_the_version_and_exits_0() -> None:
    result = _version_output([sys.executable, "-m", "securemem"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"securemem {securemem.__version__}\n"


def test_the_console_script_prints_the_same_version() -> None:
    script = Path(sys.executable).with_name("securemem")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}: securemem is not pip-installed")
    result = _version_output([str(script)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"securemem {securemem.__version__}\n"


def test_the_installed_metadata_carries_the_same_version() -> None:
    # setuptools reads securemem/_version.py for the metadata (pyproject's dynamic version).
    assert importlib.metadata.version("securemem") == securemem.__version__
