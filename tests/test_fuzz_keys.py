"""The key-loader fuzz target's harness (fuzz/keys.py), driven by hypothesis so it cannot rot
where atheris is not installed; CI also runs it under atheris (fuzz/fuzz_keys.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("cryptography")
pytest.importorskip("bcrypt")

from fuzz.keys import Seeds, _check_error, make_seeds, run_one
from securemem import Arena
from securemem.crypto import KeyFormatError

ARENA = Arena(region_pages=8, reserve_pages=2)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    return make_seeds(tmp_path_factory.mktemp("fuzz-keys") / "seeds")


def test_every_seed_loads_under_the_fuzzing_limits(seeds: Seeds) -> None:
    # Options byte 0 (no password) or 1 (the right one), encoding auto: each seed is a key.
    assert len(seeds.inputs) >= 10
    windows = seeds.windows()
    for name, seed in seeds.inputs.items():
        assert run_one(seed, windows, ARENA) == "key", name


def test_the_message_check_finds_a_secret_in_base64_or_raw(seeds: Seeds) -> None:
    windows = seeds.windows()
    secret = max(seeds.secrets, key=len)
    quoted = [base64.b64encode(secret[1:]).decode(), secret.hex(), secret.decode("latin-1")]
    for leak in quoted:
        with pytest.raises(AssertionError, match="holds a secret"):
            _check_error(KeyFormatError(f"cannot load the private key: {leak}"), windows)
    with pytest.raises(AssertionError, match="holds a secret"):
        _check_error(KeyFormatError("cannot load the private key", secret), windows)
    _check_error(KeyFormatError("cannot load the private key (PEM): damaged"), windows)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_seeds_give_a_key_or_a_documented_error(seeds: Seeds, data: st.DataObject) -> None:
    seed = bytearray(data.draw(st.sampled_from(sorted(seeds.inputs.values()))))
    seed[0] = data.draw(st.integers(0, 255))  # any password and encoding
    for _ in range(data.draw(st.integers(0, 4))):
        seed[data.draw(st.integers(1, len(seed) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del seed[data.draw(st.integers(1, len(seed) - 1)) :]
    run_one(bytes(seed), seeds.windows(), ARENA)


def test_seeds_are_made_at_run_time_not_committed() -> None:
    assert not (Path(__file__).parent.parent / "fuzz" / "seeds").exists()
