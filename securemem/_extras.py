"""What to install when an optional dependency is missing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

CRYPTO_EXTRA = "pip install 'securemem[crypto]'"


@contextlib.contextmanager
def needs_crypto_extra(user: str) -> Iterator[None]:
    """Imports of pyca/cryptography inside the block fail with the command that installs it.

    The error stays a ``ModuleNotFoundError`` with ``name`` set to the missing module, so code
    that catches ``ImportError`` (or ``pytest.importorskip``) behaves as before; a missing
    module that is not part of cryptography passes through untouched.
    """
    try:
        yield
    except ModuleNotFoundError as missing:
        if (missing.name or "").partition(".")[0] != "cryptography":
            raise
        raise ModuleNotFoundError(
            f"{user} needs pyca/cryptography, which is missing or too old ({missing}). "
            f"Install it with: {CRYPTO_EXTRA}",
            name=missing.name,
        ) from None
