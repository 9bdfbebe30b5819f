"""Paths through the native allocator that nest: a release inside a release.

Each test leaves the arena in a state the kernel confirms (smaps), and each runs in the
sanitizer stage too (tools/sanitize.sh), where a use of freed bookkeeping aborts.
"""

from __future__ import annotations

from securemem import Arena, SecureBytes
from tests.conftest import assert_locks_match_kernel


def test_a_trim_inside_a_trim_that_unmaps_the_region_reads_nothing_freed() -> None:
    # Found by the AddressSanitizer build running the fuzz program: freeing a run pushes
    # its pages into the reserve; trimming the reserve dissolves an empty slab, whose
    # release trims again and unmaps the slab's region, which the first release then read.
    arena = Arena(region_pages=2, reserve_pages=2)
    small = SecureBytes(16, arena=arena)  # slab page P1 of region R
    large = SecureBytes(4096, arena=arena)  # page P2 of R
    small.close()  # reserve: [empty slab P1]
    large.close()  # reserve: [empty slab P1, P2]
    two_pages = SecureBytes(8192, arena=arena)  # no two free pages in R: region R2
    assert len(arena.mapped_ranges()) == 2
    two_pages.close()  # reserve overflows by two: P1's slab is dissolved, then P2 evicted
    assert_locks_match_kernel(arena)
    assert arena.stats().allocations == 0
    assert len(arena.mapped_ranges()) == 1  # R is gone, R2 keeps the two reserve pages
    arena.release_reserve()
    assert arena.mapped_ranges() == [] and arena.locked_pages() == {}
    assert_locks_match_kernel(arena)
