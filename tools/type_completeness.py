"""Fail when pyright's type completeness of the installed securemem falls under a minimum.

    python tools/type_completeness.py [--minimum 0.95] [--pyright PATH]

Runs ``pyright --verifytypes securemem --ignoreexternal`` against the securemem installed
for this interpreter (a regular install: pyright does not follow setuptools' editable import
hook), from an empty directory so a checkout's sources cannot stand in for the package.
pyright comes from npm (``npm install -g pyright``). Prints the score and, when it is under
the minimum, every symbol pyright could not type.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def verify_types(pyright: str) -> dict[str, Any]:
    """pyright's JSON report on the securemem this interpreter imports."""
    # pyright finds the environment through the `python` on PATH (its --pythonpath is not
    # used by --verifytypes), so this interpreter's directory goes first.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with tempfile.TemporaryDirectory() as empty:
        result = subprocess.run(
            [pyright, "--verifytypes", "securemem", "--ignoreexternal", "--outputjson"],
            cwd=empty,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    # The exit status is 1 whenever any symbol is incomplete: the score decides here. Any
    # other status (a crash, a bad option) leaves no report to read: say so, with pyright's own.
    if result.returncode not in (0, 1):
        raise SystemExit(
            f"{pyright} --verifytypes failed (exit status {result.returncode}); its output:\n"
            f"{result.stderr or result.stdout}"
        )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minimum", type=float, default=0.95, help="fraction, default 0.95")
    parser.add_argument("--pyright", default=shutil.which("pyright") or "pyright")
    args = parser.parse_args()
    completeness = verify_types(args.pyright)["typeCompleteness"]
    if not completeness.get("pyTypedPath"):
        print("pyright found no installed securemem (with py.typed) for", sys.executable)
        return 1
    score = float(completeness["completenessScore"])
    print(f"pyright type completeness of securemem: {score:.1%} (minimum {args.minimum:.0%})")
    if score >= args.minimum:
        return 0
    for symbol in completeness["symbols"]:
        if symbol["isTypeKnown"] and not symbol["isTypeAmbiguous"]:
            continue  # its diagnostics are about docstrings, which the score does not count
        for diagnostic in symbol["diagnostics"]:
            print(f"  {symbol['name']}: {diagnostic['message']}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
