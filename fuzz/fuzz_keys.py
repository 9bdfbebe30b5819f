"""atheris harness: the private-key loaders on mutated keys the tools write (see keys.py).

    python fuzz/fuzz_keys.py -max_total_time=45 -timeout=10     # the short run in .ci/run
    python fuzz/fuzz_keys.py -max_total_time=1200 -timeout=10 corpus/   # a long run

The seeds (ssh-keygen and openssl keys, made at start in a temporary directory) are added
to the corpus directories given, or form the corpus alone. ``-timeout`` is the bound on one
call: an input that runs longer is reported as a finding (libFuzzer's watchdog), so a cost
check that is missing cannot hide as a slow run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import atheris  # type: ignore[import-untyped]  # (atheris ships no type hints)

# Run as a script from anywhere: the repository root makes `fuzz.keys` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    import securemem
    from fuzz.keys import make_seeds, run_one

ARENA = securemem.Arena(region_pages=8, reserve_pages=2)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="securemem-fuzz-keys-"))
    try:
        seeds = make_seeds(work / "seeds")
        windows = seeds.windows()
        corpora = [argument for argument in sys.argv[1:] if not argument.startswith("-")]
        for corpus in corpora:
            Path(corpus).mkdir(parents=True, exist_ok=True)
            for name, seed in seeds.inputs.items():
                (Path(corpus) / f"seed-{name}").write_bytes(seed)
        arguments = sys.argv if corpora else [*sys.argv, str(work / "seeds")]

        def test_one_input(data: bytes) -> None:
            run_one(data, windows, ARENA)

        atheris.Setup(arguments, test_one_input)
        atheris.Fuzz()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
