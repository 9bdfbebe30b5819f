"""Red team: strided access must not leave the secret in ordinary heap memory (issue 14).

CPython copies a non-contiguous memoryview through a temporary ``PyMem_Malloc`` buffer that
it frees without wiping. On main, ``s[::2]``, ``s[::2] = data``, ``SecureBytes(strided)``
and ``s == strided`` all went through such a copy, so the secret's bytes stayed in the heap.

Each scenario builds its secret byte by byte from a :class:`~tests.memscan.Marker` (small
ints, no ``bytes`` ever holds it) interleaved with filler, runs the operation, and scans the
whole process for the marker: the only copy allowed is the one inside locked memory that
the operation was asked to make, and none once that is closed. It runs in a child, whose
heap holds nothing but this scenario.
"""

from __future__ import annotations

import pytest

from tests.test_redteam_support import in_child

MODULE = "tests.test_redteam_copies_attacks"


@pytest.mark.parametrize(
    "operation", ["s[::2]", "s[::2] = data", "SecureBytes(strided)", "s == strided"]
)
def test_strided_access_leaves_no_copy_outside_locked_memory(operation: str) -> None:
    result = in_child(MODULE, "strided_scenario", operation=operation)
    assert result["missing"] == [], f"the scan did not find the secret itself: {result}"
    assert result["stray_while_open"] == [], f"copies outside the secret: {result}"
    assert result["left_after_close"] == [], f"copies left after close: {result}"
