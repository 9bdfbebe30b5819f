"""Paths through the native allocator that nest: a release inside a release.

Each test leaves the arena in a state the kernel confirms (smaps), and each runs in the
sanitizer stage too (tools/sanitize.sh), where a use of freed bookkeeping aborts.
"""

from __future__ import annotations

from typing import Any

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


def test_growth_takes_a_free_page_of_an_early_region_before_mapping_another() -> None:
    # The arena counts its regions' unused pages so that growing a full arena maps at once
    # without reading every region; the count must never hide a free page or a free run.
    arena = Arena(region_pages=4, reserve_pages=0)
    pages = [SecureBytes(4096, arena=arena) for _ in range(12)]  # three full regions
    assert len(arena.mapped_ranges()) == 3
    freed = pages.pop(1)
    address = freed.address
    freed.close()
    again = SecureBytes(4096, arena=arena)
    assert again.address == address, "the free page in the first region was skipped"
    assert len(arena.mapped_ranges()) == 3
    # two free pages, in two regions: no run of two anywhere, so a fourth region
    for index in (2, 8):
        pages.pop(index).close()
    two = SecureBytes(8192, arena=arena)
    assert len(arena.mapped_ranges()) == 4
    pages += [SecureBytes(4096, arena=arena) for _ in range(2)]  # the fourth is full too
    assert len(arena.mapped_ranges()) == 4
    # two adjacent free pages in one region: the run is found, nothing new is mapped
    first, second = pages.pop(4), pages.pop(4)
    assert second.address == first.address + 4096
    start = first.address
    first.close()
    second.close()
    run = SecureBytes(8192, arena=arena)
    assert run.address == start and len(arena.mapped_ranges()) == 4
    assert_locks_match_kernel(arena)
    for secret in [*pages, again, two, run]:
        secret.close()
    assert arena.stats().allocations == 0
    assert arena.mapped_ranges() == [] and arena.locked_pages() == {}


def test_the_arena_keyword_alone_and_with_others_parses_alike() -> None:
    # SecureBytes(x, arena=a) skips the general argument parser; every other spelling
    # still goes through it, with the same errors.
    arena = Arena()
    assert SecureBytes(3, arena=arena).arena is arena
    keywords: dict[str, Any] = {"arena": arena}
    assert SecureBytes(b"abc", **keywords).arena is arena
    assert SecureBytes(3, arena=None).arena is SecureBytes(3).arena
    assert SecureBytes(3, arena=arena, guarded=False).arena is arena
    bad: dict[str, Any]
    for bad, message in (
        ({"arena": "default"}, "arena must be a securemem.Arena"),
        ({"arenas": arena}, "arenas"),
        ({"guarded": "no"}, "guarded must be True or False"),
    ):
        try:
            SecureBytes(3, **bad)
        except TypeError as error:
            assert message in str(error)
        else:
            raise AssertionError(f"SecureBytes(3, **{bad!r}) was accepted")
