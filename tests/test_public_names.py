"""Public classes and functions are named by the module users import them from.

Tracebacks, pickles (classes and functions are pickled by reference: module and name) and
the API docs show ``securemem.MemoryLockError``, never the private module that defines it.
"""

from __future__ import annotations

import getpass
import pickle
import pickletools
from types import ModuleType

import pytest

import securemem
import securemem.crypto
from tests.conftest import run_python

# Exported as they are, and named by their own package: securemem must not rename them.
REEXPORTED = {"GetPassWarning": getpass.GetPassWarning}
PUBLIC = [
    (module, name)
    for module in (securemem, securemem.crypto)
    for name in module.__all__
    if name not in REEXPORTED
    # securemem.crypto re-exports the key errors of securemem: named there, checked there.
    and not (module is securemem.crypto and name in securemem.__all__)
]


def _pickled_reference(value: object) -> str:
    """Where a pickle says ``value`` lives: ``"module name"`` (protocol 0's GLOBAL opcode)."""
    (reference,) = (
        arg for op, arg, _ in pickletools.genops(pickle.dumps(value, 0)) if op.name == "GLOBAL"
    )
    return str(reference)


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m.__name__}.{n}" for m, n in PUBLIC])
def test_each_public_name_reports_its_public_module(module: ModuleType, name: str) -> None:
    value = getattr(module, name)
    assert value.__module__ == module.__name__
    assert value.__qualname__ == name
    # A pickle of it names the public path, and loads back to the same object.
    assert _pickled_reference(value) == f"{module.__name__} {name}"
    assert pickle.loads(pickle.dumps(value)) is value


def test_a_class_securemem_reexports_keeps_the_name_its_own_package_gives_it() -> None:
    for name, value in REEXPORTED.items():
        assert getattr(securemem, name) is value
        assert value.__module__ == "getpass"
        assert _pickled_reference(value) == f"getpass {name}"


def test_a_slice_of_a_secret_is_the_public_type() -> None:
    with securemem.SecureBytes(b"0123") as secret, secret[1:3] as part:
        assert type(part) is securemem.SecureBytes


def test_an_error_pickles_by_its_public_name_and_loads_as_the_same_error() -> None:
    error = securemem.SecureBytesClosedError("this SecureBytes is closed")
    assert _pickled_reference(error) == "securemem SecureBytesClosedError"
    loaded = pickle.loads(pickle.dumps(error))
    assert type(loaded) is securemem.SecureBytesClosedError and loaded.args == error.args


def test_a_traceback_names_the_public_error() -> None:
    # A real MemoryLockError: nothing may be locked (RLIMIT_MEMLOCK 0, no CAP_IPC_LOCK).
    result = run_python("import securemem\nsecuremem.SecureBytes(32)\n", memlock=0)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("securemem.MemoryLockError: ")
    assert "securemem._errors" not in result.stderr
