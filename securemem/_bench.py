"""``securemem bench``: run the benchmark suite of a source checkout.

The benchmarks (``benchmarks/`` in the repository, run as ``python -m
benchmarks``) compare securemem with libsodium and OpenSSL's secure heap. They
are kept out of the installed package on purpose, as attrs and h11 do: they need
system libraries and write result files, which have no place in site-packages.
So this command finds a checkout (the one an editable install points at, or the
current directory) and runs the suite there, or says how to get one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SOURCE_URL = "https://github.com/securemem/securemem"


def find_checkout(roots: Sequence[Path] | None = None) -> Path | None:
    """The first of ``roots`` holding ``benchmarks/__main__.py``, or None.

    By default: the tree the imported package lives in (an editable install, or
    a run from the tree) first, so the suite measures this very securemem, then
    the current directory.
    """
    if roots is None:
        roots = [Path(__file__).resolve().parent.parent, Path.cwd()]
    for root in roots:
        if (root / "benchmarks" / "__main__.py").is_file():
            return root.resolve()
    return None


def how_to_get_it() -> str:
    """What to tell a user whose installation has no benchmarks."""
    return (
        "securemem bench: the benchmarks are not part of the installed package; they live in "
        "the source tree (benchmarks/, run as `python -m benchmarks`).\n"
        f"Get the source with `git clone {SOURCE_URL}` (or unpack the sdist: "
        "`pip download --no-binary :all: --no-deps securemem`), then run `securemem bench` "
        "from that directory, or `python -m benchmarks` there; benchmarks/README.md lists what "
        "the comparisons need (`pip install -e '.[bench]'`, libsodium and libcrypto)."
    )


def run(arguments: list[str], roots: Sequence[Path] | None = None) -> int:
    """Run ``python -m benchmarks ARGUMENTS`` in the checkout; its exit status, or 2 if none."""
    root = find_checkout(roots)
    if root is None:
        print(how_to_get_it(), file=sys.stderr)
        return 2
    # The suite runs with this interpreter, so it measures the securemem this
    # command belongs to; cwd=root makes `benchmarks` importable as a package.
    return subprocess.call([sys.executable, "-m", "benchmarks", *arguments], cwd=root)
