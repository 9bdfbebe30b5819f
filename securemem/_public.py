"""Public names report the module users import them from, not the private one defining them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from types import FunctionType


def claim_public_names(namespace: dict[str, object], public: Iterable[str], module: str) -> None:
    """Make ``module`` the ``__module__`` of each public class and function that a private
    module of securemem defines.

    Tracebacks, the ``repr`` of a class, pickles (which store classes and functions by
    reference) and the API docs then say ``securemem.MemoryLockError``, the name users import,
    never ``securemem._errors.MemoryLockError``, a private path that may change. A native type
    that refuses a new ``__module__`` (an immutable type) must carry the public name in its
    ``tp_name`` instead; tests/test_public_names.py checks every public name either way.
    """
    private = module.partition(".")[0] + "._"
    for name in public:
        value = namespace[name]
        # Only what a private module of securemem defines: a re-exported class of another
        # package (the standard library's getpass.GetPassWarning) keeps its own name.
        if isinstance(value, (type, FunctionType)) and value.__module__.startswith(private):
            # An immutable type raises TypeError: a cosmetic name must never break the import.
            with contextlib.suppress(TypeError):
                value.__module__ = module
