"""The source distribution installs on a fresh machine and works there.

Builds the sdist exactly as a release would (``python -m build --sdist``),
installs it into a new virtual environment that cannot see this checkout, and
runs the installed ``securemem`` from a directory outside the repository, as a
user without CAP_IPC_LOCK under a 64 KiB RLIMIT_MEMLOCK. pip fetches the build
requirements (setuptools, cffi) from the package index; nothing else is
downloaded. The C extension is compiled from the sdist, so a missing
``_native_build.py``, ``setup.py`` or package file fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import securemem
from securemem.testing import unprivileged_command
from tests.conftest import REPO

# The version is written once, in securemem/_version.py; this checkout's is the one expected.
VERSION = securemem.__version__


def _clean_env() -> dict[str, str]:
    """The environment without anything that would point Python or pip back at this checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(
    command: list[str], cwd: Path, timeout: float = 240, status: int = 0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == status, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(REPO)], cwd=out)
    (archive,) = out.glob("securemem-*.tar.gz")
    return archive


@pytest.fixture(scope="module")
def venv(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with the sdist installed; yields its python."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(root / "env")], cwd=root)
    python = root / "env" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(sdist)], cwd=root)
    yield python


def test_sdist_carries_what_a_build_and_a_packager_need(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    required = {
        "setup.py",
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "securemem/_native_build.py",
        "securemem/py.typed",
        "securemem/_core.pyi",
        "securemem/_c/core/arena.c",
        "securemem/_c/core/securebytes.c",
        "securemem/_c/core/core.h",
        "tools/sanitize.sh",
        "securemem/__init__.py",
        "tests/conftest.py",
        "docs/conf.py",
        "docs/index.md",
    }
    assert required <= names, f"missing from the sdist: {sorted(required - names)}"
    # Build products of this checkout would be wrong for another machine.
    stale = sorted(n for n in names if n.endswith((".so", ".pyc", ".o")) or n.endswith("_native.c"))
    assert not stale, f"build products in the sdist: {stale}"


def test_installed_from_sdist_the_doctor_locks_a_secret_as_a_user(
    venv: Path, tmp_path: Path
) -> None:
    where = _run(
        [str(venv), "-c", "import securemem, sys; print(securemem.__file__)"], cwd=tmp_path
    )
    installed = Path(where.stdout.strip())
    assert venv.parent.parent in installed.parents, f"imported {installed}, not the venv's copy"
    assert REPO not in installed.parents
    package = installed.parent
    assert (package / "py.typed").is_file(), "py.typed missing: type checkers would ignore us"
    assert list(package.glob("_native*.so")), "the C extension was not built from the sdist"

    # As users run it: no CAP_IPC_LOCK, a 64 KiB limit, outside the repository.
    doctor = _run(
        [*unprivileged_command(65536), str(venv), "-m", "securemem", "doctor", "--json"],
        cwd=tmp_path,
    )
    report = json.loads(doctor.stdout)
    assert report["ok"] is True, doctor.stdout
    assert report["secret_locked"] is True, doctor.stdout
    assert report["memlock_soft"] == 65536


def test_console_script_is_installed_and_bench_says_where_benchmarks_are(
    venv: Path, tmp_path: Path
) -> None:
    script = venv.parent / "securemem"
    stats = _run([str(script), "stats"], cwd=tmp_path)
    assert "locked_bytes" in json.loads(stats.stdout)

    # An installed package has no benchmarks/: bench must say how to get them, not crash.
    bench = _run([str(script), "bench"], cwd=tmp_path, timeout=60, status=2)
    assert "python -m benchmarks" in bench.stderr
    assert "git clone" in bench.stderr
    assert "Traceback" not in bench.stderr


def test_version_matches_the_changelog(venv: Path, tmp_path: Path) -> None:
    # What the package says and what pip recorded from the sdist's metadata: the same number.
    version = _run(
        [
            str(venv),
            "-c",
            "import importlib.metadata, securemem; "
            "print(securemem.__version__, importlib.metadata.version('securemem'))",
        ],
        tmp_path,
    )
    assert version.stdout.split() == [VERSION, VERSION]
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{VERSION}] - " in changelog
