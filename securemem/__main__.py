"""The ``securemem`` command line: ``python -m securemem doctor [--json]``, ``stats``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from securemem import _doctor, stats


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; the exit status is 0 when all is well."""
    parser = argparse.ArgumentParser(prog="securemem", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check that secrets really get locked here")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    commands.add_parser("stats", help="print the default arena's statistics as JSON")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        report = _doctor.examine()
        if args.json:
            print(json.dumps(_doctor.to_dict(report), indent=2))
        else:
            print(_doctor.render(report))
        return 0 if report.ok else 1
    print(json.dumps(asdict(stats()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
