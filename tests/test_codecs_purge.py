"""purge() while a codec writes into its result without the GIL (issue 20, the second HIGH
finding), and the rule that keeps it from coming back.

The hex and base64 codecs are C functions called through cffi, which lets the GIL go for the
call: another thread's purge() runs while they write. The result is held as a buffer export
for the whole write, so the purge only wipes it (the memory stays the secret's and stays
mapped) and the codec raises ``SecureBytesClosedError``; the slot is wiped again and freed
when the export goes, so the next secret is handed out zeroed.

The interleaving is driven: the result's class is a subclass whose ``__init__`` wakes a
purging thread just before the codec starts, and the text is large (megabytes), so the
purge, which needs the GIL, gets it while the codec runs without it. The arena's count of
secrets closed under a live export says where a purge landed (before the write, or during
it); the rounds are a fixed number, and at least one purge must have landed during a write
for the test to have tested anything. Each case runs in a child process, where a SIGSEGV is
an exit status.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from .conftest import run_python

PACKAGE = Path(__file__).resolve().parent.parent / "securemem"

CODEC_RACE = """
import base64, json, sys, threading
from securemem import Arena, SecureBytes, SecureBytesClosedError, purge

CODEC = sys.argv[1]
SIZE = 8 << 20  # decoded bytes: the codec writes megabytes without the GIL
arena = Arena()
payload = bytes(range(256)) * (SIZE // 256)
armed, started, purged = threading.Event(), threading.Event(), threading.Event()
landed = []

class WakesThePurger(SecureBytes):
    __slots__ = ()
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if armed.is_set():  # only the codec's result, made right before the write
            armed.clear()
            started.set()

def purger(rounds, under_export):
    for _ in range(rounds):
        started.wait()
        started.clear()
        purge()
        # the result (and for an encoder its source) closed with an export held: the
        # purge landed while the codec was writing
        landed.append(arena.stats().awaiting_views >= under_export)
        purged.set()

if CODEC == "from_hex":
    text = payload.hex()
    def run():
        armed.set()
        return WakesThePurger.from_hex(text, arena=arena)
    expected, under_export = payload, 1
elif CODEC == "from_base64":
    text = base64.b64encode(payload)
    def run():
        armed.set()
        return WakesThePurger.from_base64(text, arena=arena)
    expected, under_export = payload, 1
else:
    expected = payload.hex().encode() if CODEC == "to_hex" else base64.b64encode(payload)
    under_export = 2  # the source's view is held too
    def run():
        source = WakesThePurger(payload, arena=arena)
        armed.set()  # the next secret made is the codec's result
        try:
            return getattr(source, CODEC)()
        finally:
            source.close()

ROUNDS = 12
thread = threading.Thread(target=purger, args=(ROUNDS, under_export))
thread.start()
outcomes, dirty, wrong = [], 0, 0
for _ in range(ROUNDS):
    purged.clear()
    try:
        result = run()
    except SecureBytesClosedError:
        outcomes.append("closed")
        purged.wait()
    else:  # the purge came after the codec returned: it closed the result too
        outcomes.append("returned")
        purged.wait()
        wrong += not result.closed
    # what the codec wrote after the purge must not reach the next secret of the arena
    for size in (len(expected), 4096, 64):
        fresh = SecureBytes(size, arena=arena)
        dirty += not fresh == bytes(size)
        fresh.close()
thread.join()
purge()
stats = arena.stats()
print(json.dumps({"outcomes": outcomes, "landed": sum(landed), "dirty": dirty,
                  "wrong": wrong, "live": stats.allocations, "waiting": stats.awaiting_views}))
"""


@pytest.mark.parametrize("codec", ["from_hex", "from_base64", "to_hex", "to_base64"])
def test_purge_in_another_thread_while_the_codec_writes(codec: str) -> None:
    completed = run_python(CODEC_RACE, codec)
    assert completed.returncode == 0, completed.stderr  # -11: the codec wrote into freed memory
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["landed"] >= 1, result  # the case under test happened
    assert result["dirty"] == 0, "a fresh secret was handed out holding the codec's output"
    assert result["wrong"] == 0, result
    assert set(result["outcomes"]) <= {"closed", "returned"}, result
    assert result["live"] == 0 and result["waiting"] == 0, result


# -- the rule: no raw address outside the native core ------------------------------------

# ``SecureBytes.address`` is for native code a user writes. Inside the package the only
# reader is the doctor, which looks the address up in /proc/self/smaps and never touches
# the memory. Everything else reaches a secret's bytes inside the core (GIL held) or
# through a buffer export held for the whole access.
ALLOWED_MODULES = {"_doctor.py"}
# Receivers in a module that are not secrets but objects of the module's own class with an
# attribute of that name (testing.py's simulated aio requests).
ALLOWED_RECEIVERS = {"testing.py": {"request", "self"}, "_lockmemory.py": {"self"}}
ADDRESS_NAMES = {"address", "_address"}


def _address_uses(tree: ast.AST, allowed_receivers: set[str]) -> list[int]:
    """Lines that read ``x.address`` / ``x._address`` (or getattr them by name)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ADDRESS_NAMES:
            receiver = node.value.id if isinstance(node.value, ast.Name) else None
            if receiver not in allowed_receivers:
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in ADDRESS_NAMES
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_package_code_touches_a_secret_through_its_address() -> None:
    offences = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in ALLOWED_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        lines = _address_uses(tree, ALLOWED_RECEIVERS.get(path.name, set()))
        if lines:
            offences[path.name] = lines
    assert offences == {}, "use a buffer export (ffi.from_buffer in a with block) instead"


def test_the_address_finder_sees_a_raw_address() -> None:
    code = "p = ffi.cast('char *', secret.address)\nq = getattr(key, '_address')\n"
    assert _address_uses(ast.parse(code), set()) == [1, 2]
    assert _address_uses(ast.parse("n = self.address\n"), {"self"}) == []
