"""``python -m benchmarks``: securemem against libsodium, OpenSSL's secure heap, mmap+mlock
and bytearray, side by side in one process; writes results.md, results.json and results.png.

    python -m benchmarks                 # the full run (about a minute), into benchmarks/results/
    python -m benchmarks --quick         # seconds: small counts, 64 KiB density only (smoke test)
    python -m benchmarks --out DIR       # write the three files elsewhere

See benchmarks/README.md for what each workload measures and what it needs installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _keyload, _report, _systems, _workloads
from securemem import _hardening

RESULTS = Path(__file__).resolve().parent / "results"
# OpenSSL's secure heap is one power-of-two buddy arena fixed at init. A buddy heap splits
# a block of the whole heap's size down to the request on every allocation into an empty
# heap and merges it back on free, so a bigger heap makes its round trip slower. The round
# trip and threads workloads get 1 MiB (room for the 64 KiB secret; a usual size); the
# scale workload needs 64 MiB for 1,000,000 live 32-byte secrets.
SECURE_HEAP = 1 << 20
SECURE_HEAP_SCALE = 64 << 20


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "memlock_limit": None if soft == resource.RLIM_INFINITY else soft,
        "cap_ipc_lock": _hardening.holds_cap_ipc_lock(),
        # Other work on the machine skews timings; the ratios (same run, best batches) less so.
        "load_average": os.getloadavg()[0],
        **_systems.versions(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a fast, rough run (seconds)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"output directory ({RESULTS})")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib)")
    args = parser.parse_args(argv)
    quick: bool = args.quick

    started = time.perf_counter()
    try:
        _systems.sodium()
        _systems.crypto()
    except _systems.MissingLibrary as error:
        print(f"python -m benchmarks: {error}", file=sys.stderr)
        return 2
    if not args.no_chart:
        try:
            import matplotlib  # noqa: F401 - only to fail early, before minutes of measuring
        except ImportError:
            print(
                "python -m benchmarks: matplotlib is needed for the chart: "
                "pip install -e '.[bench]' (or pass --no-chart)",
                file=sys.stderr,
            )
            return 2
    info = machine()
    info["openssl_secure_heap"] = {}

    def secure_heap(size: int) -> None:
        answer = _systems.secure_heap_init(size)
        if answer == 0:
            raise SystemExit(f"OpenSSL's secure heap of {size} bytes could not be set up")
        info["openssl_secure_heap"][str(size)] = {"init": answer, "locked": answer == 1}

    secure_heap(SECURE_HEAP)
    systems = [
        _systems.securemem_system(),
        _systems.sodium_system(),
        _systems.openssl_system(),
        _systems.naive_system(),
        _systems.bytearray_system(),
    ]
    # 20 turns of 10 ms batches: the full run stays near a minute on a busy 2-CPU machine.
    budget, repeats = (0.002, 3) if quick else (0.01, 20)
    results: dict[str, Any] = {"machine": info, "quick": quick}

    def step(name: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {name}", file=sys.stderr, flush=True)

    step("round trip")
    results["round_trip"] = _workloads.round_trip(
        systems, _workloads.ROUND_TRIP_SIZES, budget, repeats
    )
    step("density (one unprivileged process per system and limit)")
    limits = [64 << 10] if quick else [64 << 10, 8 << 20]
    results["density"] = _workloads.density(["securemem", "libsodium", "openssl", "naive"], limits)
    step("scale")
    counts = (1_000, 10_000) if quick else (1_000, 1_000_000)
    secure_heap(SECURE_HEAP_SCALE)
    results["scale"] = _workloads.scale(systems, counts, budget, repeats)
    secure_heap(SECURE_HEAP)
    step("wipe")
    results["wipe"] = _workloads.wipe((4 if quick else 64) << 20, 3 if quick else 60)
    step("growth")
    results["growth"] = (
        _workloads.growth(300, 2048, 20e-6, 1) if quick else _workloads.growth(3000, 2048, 20e-6, 5)
    )
    step("threads")
    # Half a second per run: about a hundred of the interpreter's 5 ms switch intervals.
    # At 0.1 s (twenty) bytearray's own two-thread ratio swung from 0.70x to 1.05x between
    # runs: the measure was of when the GIL changed hands, not of the allocator.
    results["threads"] = _workloads.threads(
        systems, 0.02 if quick else 0.5, repeats=3 if quick else 5
    )
    step("access: copy-in and s[i]")
    results["access"] = _workloads.access(budget, repeats)
    step("key loading: OpenSSH RSA-3072")
    results["key_load"] = _keyload.openssh_rsa(3072, 2 if quick else 7)
    step("enclave: open + close against an AEAD build + decrypt")
    results["enclave"] = _workloads.enclave(budget, repeats)
    step("report and chart")
    results["targets"] = _report.targets(results)
    results["seconds"] = round(time.perf_counter() - started, 1)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    markdown = _report.markdown(results)
    (out / "results.md").write_text(markdown, encoding="utf-8")
    if not args.no_chart:
        _report.chart(results, out / "results.png")
    step(f"wrote {out}/results.md, results.json" + ("" if args.no_chart else ", results.png"))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
