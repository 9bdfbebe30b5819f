"""The attacks of ``tests/test_redteam_api.py``, each run in a child interpreter.

No pytest here: a child imports only this module and securemem, and starts in a fraction
of the time a pytest import takes (there are dozens of children).
"""

from __future__ import annotations

from typing import Any

import securemem
from securemem import SecureBytes
from tests.test_redteam_support import MINE, OTHER, SIZE


def hostile_random_size() -> dict[str, Any]:
    """``__index__`` that answers 16 first and 4096 after: the size must be read once."""
    others = [SecureBytes(bytes([OTHER]) * SIZE) for _ in range(8)]

    class Growing:
        calls = 0

        def __index__(self) -> int:
            self.calls += 1
            return 16 if self.calls == 1 else 4096

    try:
        key = SecureBytes.random(Growing())
        outcome, length = "made", len(key)
        key.close()
    except (TypeError, ValueError) as error:
        outcome, length = f"{type(error).__name__}: {error}", None
    corrupted = sum(1 for other in others if bytes(other.view()) != bytes([OTHER]) * SIZE)
    return {"outcome": outcome, "length": length, "corrupted": corrupted}


def reinit_live_secret() -> dict[str, Any]:
    """``s.__init__(...)`` on a live secret holding a marker; afterwards, close it."""
    from tests.memscan import Marker

    marker = Marker(SIZE)
    before = securemem.stats().allocations
    secret = SecureBytes(marker.view())
    try:
        secret.__init__(16)  # type: ignore[misc]
        outcome = "reinitialised"
        length = len(secret)
        content_ok = bytes(secret.view()) == bytes(16)
    except (TypeError, RuntimeError, ValueError) as error:
        outcome = f"refused: {type(error).__name__}"
        length = len(secret)
        content_ok = bytes(secret.view()) == bytes(marker.view())
    secret.close()
    return {
        "outcome": outcome,
        "length": length,
        "content_ok": content_ok,
        "copies_left": len(marker.scan().found),
        "allocations_left": securemem.stats().allocations - before,
    }


def bare_new() -> dict[str, Any]:
    """Every use of ``SecureBytes.__new__(SecureBytes)``, with what each raised."""
    try:
        bare = SecureBytes.__new__(SecureBytes)
    except TypeError as error:
        return {"new": f"TypeError: {error}", "uses": {}}
    uses: dict[str, Any] = {
        "len": lambda: len(bare),
        "repr": lambda: repr(bare),
        "closed": lambda: bare.closed,
        "getitem": lambda: bare[0],
        "setitem": lambda: bare.__setitem__(0, 1),
        "slice": lambda: bare[:],
        "eq": lambda: bare == b"",
        "wipe": lambda: bare.wipe(),
        "view": lambda: bare.view(),
        "memoryview": lambda: memoryview(bare),  # type: ignore[arg-type,unused-ignore]
        "bytes": lambda: bytes(bare),
        "close": lambda: bare.close(),
    }
    outcomes: dict[str, str] = {}
    for name, use in uses.items():
        try:
            use()
            outcomes[name] = "ok"
        except Exception as error:
            outcomes[name] = type(error).__name__
    uses.clear()  # the finaliser of a never-initialised secret runs when this returns
    return {"new": "made", "uses": outcomes}


def use_a_noaccess_secret(operation: str) -> dict[str, Any]:
    """One operation on a guarded secret protected ``"noaccess"``: what it raised."""
    secret = SecureBytes(bytes([MINE]) * SIZE, guarded=True)
    secret.protect("noaccess")
    uses: dict[str, Any] = {
        "s[0]": lambda: secret[0],
        "s[0] = 1": lambda: secret.__setitem__(0, 1),
        "s[:4]": lambda: secret[:4],
        "s == data": lambda: secret == bytes(SIZE),
        "SecureBytes(s)": lambda: SecureBytes(secret),
        "bytes(s)": lambda: bytes(secret.view()),
    }
    try:
        uses[operation]()
        outcome = "completed"
    except Exception as error:
        outcome = type(error).__name__
    secret.protect("readwrite")
    intact = bytes(secret.view()) == bytes([MINE]) * SIZE
    secret.close()
    return {"outcome": outcome, "intact": intact}
