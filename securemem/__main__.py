"""The ``securemem`` command line: ``python -m securemem doctor [--json]``, ``stats``, ``bench``,
``--version``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from securemem import __version__, _bench, _doctor, stats


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; the exit status is 0 when all is well."""
    parser = argparse.ArgumentParser(prog="securemem", description=__doc__)
    parser.add_argument("--version", action="version", version=f"securemem {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check that secrets really get locked here")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument(
        "--require",
        default=",".join(_doctor.DEFAULT_REQUIRE),
        metavar="LIST",
        help="protections whose absence fails the check, comma-separated from "
        f"{', '.join(_doctor.REQUIREMENTS)} (default: %(default)s)",
    )
    doctor.add_argument(
        "--backend",
        choices=("anonymous", "secretmem"),
        default="anonymous",
        help="the arena backend to test (secretmem also requires memfd_secret)",
    )
    commands.add_parser("stats", help="print the default arena's statistics as JSON")
    commands.add_parser(
        "bench",
        help="run the benchmarks of a source checkout (python -m benchmarks); "
        "arguments after `bench`, such as --quick, are passed on",
    )
    # parse_known_args: bench hands whatever follows it to the benchmark suite.
    args, passed_on = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench.run(passed_on)
    if passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    if args.command == "doctor":
        try:
            require = _doctor.parse_requirements(args.require)
        except ValueError as exc:
            parser.error(str(exc))
        report = _doctor.examine(require, args.backend)
        if args.json:
            print(json.dumps(_doctor.to_dict(report), indent=2))
        else:
            print(_doctor.render(report))
        return 0 if report.ok else 1
    print(json.dumps(asdict(stats()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
