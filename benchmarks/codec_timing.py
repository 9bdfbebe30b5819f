"""Does the codecs' decoding time depend on the secret? A dudect-style leakage test.

dudect (Reparaz, Balasch and Verbauwhede, "Dude, is my code constant time?", 2017) times one
operation on two classes of input, interleaved at random so drift hits both alike, and applies
Welch's t-test to the two timing distributions, also after cropping the slow tail at several
percentiles (a leak often hides in the bulk, under noise in the tail). |t| above 4.5 says the
classes are told apart; dudect reads above 10 as "definitely not constant time".

Each case holds the text's length and layout fixed and varies only the secret:

* hex, fixed vs random: all-zero secret vs a fresh random one;
* hex, digits vs letters: every digit 0-9 vs every digit a-f (a decoder that branches on
  "is it a letter?" shows here);
* base64, fixed vs random.

The positive control is ``bytes.__eq__`` (memcmp, which stops at the first difference) on a
difference in the first byte vs in the last: a leak the harness must see, or its silence about
the codecs means nothing.

    python3 benchmarks/codec_timing.py              # 200,000 measurements per case
    python3 benchmarks/codec_timing.py --quick      # 20,000: a smoke run

Timing is wall-clock around a cffi call from Python, so the noise floor is Python's call
overhead (~100 ns); secrets of 512 bytes make the decoder's own time (~microseconds) dominate.
Never used as a test assertion: a timing verdict on a shared machine is not reproducible.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import random
import time
from collections.abc import Callable

from securemem._native import ffi, lib

SECRET_SIZE = 512
PERCENTILES = (100, 99, 95, 90, 75, 50)


class Welch:
    """Running means and variances of two classes (Welford), for Welch's t."""

    def __init__(self) -> None:
        self.count = [0, 0]
        self.mean = [0.0, 0.0]
        self.m2 = [0.0, 0.0]

    def add(self, group: int, value: float) -> None:
        self.count[group] += 1
        delta = value - self.mean[group]
        self.mean[group] += delta / self.count[group]
        self.m2[group] += delta * (value - self.mean[group])

    def t(self) -> float:
        if min(self.count) < 2:
            return 0.0
        variances = [self.m2[g] / (self.count[g] - 1) for g in (0, 1)]
        spread = math.sqrt(variances[0] / self.count[0] + variances[1] / self.count[1])
        return (self.mean[0] - self.mean[1]) / spread if spread else 0.0


Operation = Callable[[], object]


def measure(prepare: tuple[Operation, Operation], run: Operation, samples: int) -> dict[int, float]:
    """t statistic per cropping percentile for ``samples`` timings of ``run``, each after one
    of the two ``prepare`` steps (untimed) chosen at random."""
    rng = random.Random(int.from_bytes(os.urandom(8), "big"))
    classes = [rng.getrandbits(1) for _ in range(samples)]
    timings: list[tuple[int, int]] = []
    clock = time.perf_counter_ns
    for index in range(min(1000, samples // 10)):  # warm-up: caches, branch predictors
        prepare[index & 1]()
        run()
    for group in classes:
        prepare[group]()
        start = clock()
        run()
        timings.append((group, clock() - start))
    ordered = sorted(duration for _, duration in timings)
    results = {}
    for percentile in PERCENTILES:
        limit = ordered[min(len(ordered) - 1, len(ordered) * percentile // 100)]
        welch = Welch()
        for group, duration in timings:
            if duration <= limit:
                welch.add(group, float(duration))
        results[percentile] = welch.t()
    return results


class Case:
    """Two texts of one length decoded from the same buffers, so that only the content differs
    between the classes (separate buffers would differ in address, alignment and cache sets)."""

    def __init__(self, kind: str, first: bytes, second: bytes) -> None:
        assert len(first) == len(second)
        self.texts = (first, second)
        self.source = ffi.new("unsigned char[]", len(first))
        self.out = ffi.new("unsigned char[]", SECRET_SIZE)
        self.written = ffi.new("size_t *")
        self.error_at = ffi.new("size_t *")
        self.kind = kind

    def prepare(self, group: int) -> Operation:
        text = self.texts[group]
        source = self.source

        def copy() -> object:
            ffi.memmove(source, text, len(text))
            return None

        return copy

    def run_operation(self) -> Operation:
        out, source, written, error_at = self.out, self.source, self.written, self.error_at
        length = len(self.texts[0])
        if self.kind == "hex":
            decode_hex = lib.sm_hex_decode

            def run() -> object:
                return decode_hex(out, SECRET_SIZE, source, length, written, error_at)

        else:
            decode_base64 = lib.sm_base64_decode

            def run() -> object:
                return decode_base64(out, SECRET_SIZE, source, length, 43, 47, written, error_at)

        return run

    def check(self) -> None:
        for group in (0, 1):
            self.prepare(group)()
            assert self.run_operation()() == lib.SM_CODEC_OK


def codec_cases() -> dict[str, Case]:
    zeros = bytes(SECRET_SIZE)
    noise = os.urandom(SECRET_SIZE)
    return {
        "hex: all-zero vs random secret": Case("hex", zeros.hex().encode(), noise.hex().encode()),
        "hex: digits 0-9 vs letters a-f": Case(
            "hex",
            (b"0123456789" * SECRET_SIZE)[: 2 * SECRET_SIZE],
            (b"abcdef" * SECRET_SIZE)[: 2 * SECRET_SIZE],
        ),
        "base64: all-zero vs random secret": Case(
            "base64", base64.b64encode(zeros), base64.b64encode(noise)
        ),
    }


def control() -> tuple[tuple[Operation, Operation], Operation]:
    """bytes == (memcmp) on a difference in the first byte vs the last: a leak to be seen."""
    reference = os.urandom(1 << 16)
    candidates = (
        bytes([reference[0] ^ 1]) + reference[1:],
        reference[:-1] + bytes([reference[-1] ^ 1]),
    )
    current = [candidates[0]]

    def choose(group: int) -> Operation:
        def set_candidate() -> object:
            current[0] = candidates[group]
            return None

        return set_candidate

    def compare() -> object:
        return reference == current[0]

    return (choose(0), choose(1)), compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 measurements per case")
    arguments = parser.parse_args()
    samples = 20_000 if arguments.quick else arguments.samples
    header = " ".join(f"{'<=p' + str(p):>8}" for p in PERCENTILES)
    print(f"Welch's t by cropping percentile, {samples} measurements per case")
    print(f"{'case':<58} {header}  verdict")
    rows: list[tuple[str, dict[int, float]]] = []
    for name, case in codec_cases().items():
        case.check()
        rows.append(
            (name, measure((case.prepare(0), case.prepare(1)), case.run_operation(), samples))
        )
    prepare, compare = control()
    rows.append(
        (
            "control, bytes ==: first vs last byte differs (must leak)",
            measure(prepare, compare, samples),
        )
    )
    for name, results in rows:
        worst = max(abs(value) for value in results.values())
        verdict = (
            "LEAK (|t| > 10)"
            if worst > 10
            else "leak? (|t| > 4.5)"
            if worst > 4.5
            else "no leak seen"
        )
        row = " ".join(f"{results[p]:8.2f}" for p in PERCENTILES)
        print(f"{name:<58} {row}  {verdict}")


if __name__ == "__main__":
    main()
