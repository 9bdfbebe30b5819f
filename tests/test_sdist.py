"""The source distribution and the wheel install on a fresh machine and work there.

Builds both exactly as a release would (``python -m build``: the sdist, then the wheel from
the sdist), installs the wheel into a new virtual environment that cannot see this checkout,
and runs the installed ``securemem`` from a directory outside the repository, as a user
without CAP_IPC_LOCK under a 64 KiB RLIMIT_MEMLOCK. pip fetches the build requirements
(setuptools, cffi) from the package index; nothing else is downloaded. The C extensions are
compiled from the sdist, so a missing ``build_support/native_build.py``, ``setup.py`` or
package file fails here.

The wheel's own promises (one ``cp311-abi3`` wheel, no C sources or build scripts inside,
stripped extensions) are checked on the wheel built here, or on ``SECUREMEM_WHEEL`` when it
names one: .ci/run's wheel stage sets it to the release wheel it installed, and runs these
tests from a copy of tests/ with no source tree beside it (so the sdist tests skip there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import securemem
from securemem.testing import unprivileged_command
from tests.conftest import REPO

# The version is written once, in securemem/_version.py; this checkout's is the one expected.
VERSION = securemem.__version__
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

needs_source_tree = pytest.mark.skipif(
    not (REPO / "setup.py").is_file(),
    reason="no source tree beside these tests (an installed wheel is under test): "
    "the sdist is built and checked from a checkout",
)


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
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) as ``python -m build`` makes them: the wheel is built from the sdist."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out, timeout=480)
    (archive,) = out.glob("securemem-*.tar.gz")
    (wheel,) = out.glob("securemem-*.whl")
    return archive, wheel


@pytest.fixture(scope="module")
def sdist(release: tuple[Path, Path]) -> Path:
    return release[0]


@pytest.fixture(scope="module")
def wheel(request: pytest.FixtureRequest) -> Path:
    """The wheel under test: SECUREMEM_WHEEL (a release wheel) or the one built here."""
    given = os.environ.get("SECUREMEM_WHEEL")
    if given:
        return Path(given)
    if not (REPO / "setup.py").is_file():
        pytest.skip("no source tree to build a wheel from, and SECUREMEM_WHEEL names none")
    built: tuple[Path, Path] = request.getfixturevalue("release")
    return built[1]


@pytest.fixture(scope="module")
def venv(release: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with the wheel built from the sdist installed; yields its
    python."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(root / "env")], cwd=root)
    python = root / "env" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(release[1])], cwd=root)
    yield python


@needs_source_tree
def test_sdist_carries_what_a_build_and_a_packager_need(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    required = {
        "setup.py",
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "build_support/native_build.py",
        "build_support/zig-cc",
        "build_support/release-wheel.sh",
        "securemem/_c/bignum.c",
        "fuzz/program.py",
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


@needs_source_tree
def test_installed_from_the_sdists_wheel_the_doctor_locks_a_secret_as_a_user(
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
    assert list(package.glob("_core*.so")), "the native core was not built from the sdist"

    # As users run it: no CAP_IPC_LOCK, a 64 KiB limit, outside the repository.
    doctor = _run(
        [*unprivileged_command(65536), str(venv), "-m", "securemem", "doctor", "--json"],
        cwd=tmp_path,
    )
    report = json.loads(doctor.stdout)
    assert report["ok"] is True, doctor.stdout
    assert report["secret_locked"] is True, doctor.stdout
    assert report["memlock_soft"] == 65536


@needs_source_tree
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


@needs_source_tree
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


def _wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_is_one_abi3_wheel_for_every_cpython_from_311(wheel: Path) -> None:
    # cp311-abi3: pip installs it on 3.11, 3.12, 3.13, 3.14... (one wheel per platform). A
    # free-threaded CPython cannot load an abi3 extension: its wheel names its own ABI.
    expected = r"cp3\d+t-cp3\d+t-" if FREE_THREADED else r"cp311-abi3-"
    assert re.fullmatch(rf"securemem-{re.escape(VERSION)}-{expected}[\w.]+\.whl", wheel.name), (
        wheel.name
    )
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"securemem-{VERSION}.dist-info/WHEEL").decode()
    tags = re.findall(r"^Tag: (\S+)$", metadata, re.MULTILINE)
    assert tags, metadata
    assert all(re.match(expected, tag) for tag in tags), tags
    extensions = [n for n in _wheel_names(wheel) if n.endswith(".so")]
    # abi3: ".abi3.so"; built by CPython 3.15+, ".abi3-<platform triplet>.so" (releases are
    # built on 3.11, whose name every later CPython loads).
    suffix = r"\.cpython-3\d+t-[\w-]+\.so" if FREE_THREADED else r"\.abi3(-[\w-]+)?\.so"
    assert sorted(re.sub(suffix, "", n) for n in extensions) == [
        "securemem/_core",
        "securemem/_native",
    ], extensions


def test_the_wheel_carries_no_c_sources_or_build_scripts(wheel: Path) -> None:
    names = _wheel_names(wheel)
    assert not [n for n in names if n.endswith((".c", ".h", ".o"))], names
    assert not [n for n in names if "native_build" in n or "build_support" in n], names
    # Nothing but the package and its metadata: no tests, no setup.py, no securemem/_c.
    outside = [
        n for n in names if not n.startswith(("securemem/", f"securemem-{VERSION}.dist-info/"))
    ]
    assert not outside, outside
    assert not [n for n in names if n.startswith("securemem/_c/")], names
    # Every module of the package is there, subpackages' too (securemem._keyformats: a
    # package setuptools must be told about), and py.typed for type checkers.
    package = Path(securemem.__file__).parent
    modules = {f"securemem/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    assert "securemem/_keyformats/__init__.py" in modules, sorted(modules)
    assert modules <= set(names), sorted(modules - set(names))
    assert "securemem/py.typed" in names


@pytest.mark.skipif(shutil.which("readelf") is None, reason="reads section headers with readelf")
def test_the_wheels_extensions_are_stripped(wheel: Path, tmp_path: Path) -> None:
    # No symbol table and no debug sections: the wheel is a quarter of the size. The functions
    # the extensions export stay named, in the dynamic symbol table the loader needs.
    with zipfile.ZipFile(wheel) as archive:
        extensions = [n for n in archive.namelist() if n.endswith(".so")]
        archive.extractall(tmp_path, members=extensions)
    assert extensions
    for name in extensions:
        sections = subprocess.run(
            ["readelf", "--section-headers", "--wide", str(tmp_path / name)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = set(re.findall(r"\]\s+(\.\S+)", sections))
        assert ".dynsym" in found, f"{name}: {sorted(found)}"
        unstripped = sorted(s for s in found if s == ".symtab" or s.startswith(".debug"))
        assert not unstripped, f"{name} is not stripped: {unstripped}"
