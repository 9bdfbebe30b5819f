"""``python -m benchmarks.audit``: what the installed cryptography, OpenSSL and CPython leave of
a secret, path by path, as the markdown tables the docs show.

    python -m benchmarks.audit              # every path (about 30 s on 2 cores)
    python -m benchmarks.audit --only aead  # the paths whose case starts with "aead"
    python -m benchmarks.audit --jobs 1     # one measuring child at a time

Each path is a case of tests/handoff_cases.py, run in a fresh interpreter that scans its own
memory for a marker (tests/memscan.py, tests/stackview.py): the measurement code is the tests'
own, so the tool and the tests cannot come to measure different things. Next to each count
stands the bound the docs promise for any release (tests/copy_bounds.py; the tests assert
it), or "-" where securemem promises nothing: what another library does on its own, shown for
comparison. The tables are headed by the releases they were measured on. A count above its
bound is marked, and the tool then exits with status 1.

Run it from a source checkout with the test extra installed (``pip install -e '.[test]'``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.copy_bounds import BOUNDS, releases
from tests.handoff_cases import CASES, Counts, make_keys, measure

# Sections of the report, by the first part of a case's name, in the order the docs use.
SECTIONS = {
    "aead": "Keys held by an AEAD: `crypto.aead` (copies outside locked memory)",
    "kdf": "Key derivation: `crypto.derive`",
    "stack": "The stack after a call: the last partial block of a 47-byte plaintext",
    "registers": "The vector registers: the AEAD key on the stack after one encryption",
    "securemem": "securemem's own paths: private keys, Fernet",
    "cryptography": "cryptography on its own (for comparison)",
    "hashlib": "hashlib",
    "hmac": "hmac",
    "ssl": "ssl",
    "paramiko": "paramiko",
    "os": "os.write and sockets",
    "socket": "os.write and sockets",
    "env": "Environment variables, JSON and files",
    "json": "Environment variables, JSON and files",
    "file": "Environment variables, JSON and files",
}
# Cases filed under another section than their name's first part says.
SECTION_OF_CASE = {"cryptography.hmac": "hmac"}
# Cases that need a package the test extra may lack, by the first part of their name (every
# case needs cryptography, which made the keys).
OPTIONAL = {"paramiko": "paramiko"}


@dataclass
class Measured:
    case: str
    counts: Counts | None
    problem: str = ""


def _measure(case: str, keys: Path) -> Measured:
    module = OPTIONAL.get(case.split(".")[0])
    if module is not None and importlib.util.find_spec(module) is None:
        return Measured(case, None, f"not measured: {module} is not installed")
    try:
        return Measured(case, measure(case, keys))
    except RuntimeError as error:
        last = str(error).strip().splitlines()[-1]
        return Measured(case, None, f"the measurement failed: {last}")


def _section(case: str) -> str:
    return SECTIONS.get(SECTION_OF_CASE.get(case, case.split(".")[0]), "Other paths")


def _bound_text(case: str, moment: str) -> str:
    bound = BOUNDS.get((case, moment))
    return "-" if bound is None else f"≤ {bound}"


def render(results: list[Measured], heading: str) -> tuple[str, int]:
    """The markdown report, and how many counts are above their bound."""
    lines = [heading, ""]
    over = 0
    section = None
    for result in results:
        title = _section(result.case)
        if title != section:
            section = title
            lines += ["", f"### {title}", "", "| path | moment | copies | bound |"]
            lines.append("|---|---|---|---|")
        if result.counts is None:
            lines.append(f"| `{result.case}` | - | {result.problem} | - |")
            continue
        for moment, count in result.counts.items():
            bound = BOUNDS.get((result.case, moment))
            mark = ""
            if bound is not None and count > bound:
                over += 1
                mark = " **over the bound**"
            bound_text = _bound_text(result.case, moment)
            lines.append(f"| `{result.case}` | {moment} | {count}{mark} | {bound_text} |")
    lines.append("")
    if over:
        lines.append(f"**{over} count(s) above the documented bound**: see tests/copy_bounds.py.")
    return "\n".join(lines), over


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit", description=__doc__)
    parser.add_argument("--only", default="", metavar="PREFIX", help="cases starting with this")
    parser.add_argument("--jobs", type=int, default=2, help="children at once (default: 2)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    cases = [case for case in CASES if case.startswith(args.only)]
    if not cases:
        parser.error(f"no case starts with {args.only!r}")
    order = {title: index for index, title in enumerate(dict.fromkeys(SECTIONS.values()))}
    cases.sort(key=lambda case: order.get(_section(case), len(order)))
    with tempfile.TemporaryDirectory(prefix="securemem-audit-") as directory:
        keys = Path(directory)
        make_keys(keys)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda case: _measure(case, keys), cases))
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    heading = (
        f"## Copies left behind, measured {date}\n\n"
        f"Measured by `python -m benchmarks.audit` with {releases()}."
    )
    report, over = render(results, heading)
    print(report)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
