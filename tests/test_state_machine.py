"""A hypothesis state machine over the arena on the real kernel, prefetching or not.

Random sizes are allocated, filled with a per-secret pattern, viewed, wiped,
closed and dropped, and the reserve released, in random order; after every step
each live secret still holds its pattern and sits on pages the kernel reports
locked, no two secrets overlap, and the pages the kernel reports locked are
exactly those the arena counts.
"""

from __future__ import annotations

import gc
import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from securemem import Arena, SecureBytes
from tests.simulated import assert_arena_matches_kernel, assert_nothing_left, kernel_side_locked

sizes = st.one_of(
    st.integers(min_value=0, max_value=64),
    st.integers(min_value=65, max_value=2048),
    st.integers(min_value=2049, max_value=20_000),
)


class ArenaMachine(RuleBasedStateMachine):
    """The rules and invariants; tests/test_simulated.py runs them on every simulated kernel."""

    secrets = Bundle("secrets")

    def __init__(self) -> None:
        super().__init__()
        self.arena = self.make_arena()
        self.expected: dict[int, tuple[SecureBytes, bytes]] = {}
        self.views: list[memoryview] = []
        self.counter = 0

    def make_arena(self) -> Arena:
        return Arena(region_pages=8, reserve_pages=2)

    def _pattern(self, size: int) -> bytes:
        self.counter += 1
        seed = self.counter.to_bytes(4, "little")
        return (seed * (size // 4 + 1))[:size]

    @rule(target=secrets, size=sizes)
    def allocate(self, size: int) -> int:
        secret = SecureBytes(size, arena=self.arena)
        assert bytes(secret.view()) == bytes(size), "fresh memory must be zero"
        pattern = self._pattern(size)
        secret.view()[:] = pattern
        self.expected[id(secret)] = (secret, pattern)
        return id(secret)

    @rule(key=secrets)
    def keep_a_view(self, key: int) -> None:
        if key in self.expected:
            self.views.append(self.expected[key][0].view())

    @rule()
    def drop_views(self) -> None:
        self.views.clear()

    @rule(key=secrets)
    def wipe(self, key: int) -> None:
        if key in self.expected:
            secret, _ = self.expected[key]
            secret.wipe()
            self.expected[key] = (secret, bytes(len(secret)))

    @rule(key=consumes(secrets))
    def close(self, key: int) -> None:
        if key in self.expected:
            secret, _ = self.expected.pop(key)
            secret.close()
            assert secret.closed

    @rule(key=consumes(secrets))
    def drop(self, key: int) -> None:
        if key in self.expected:
            del self.expected[key]
            gc.collect()

    @rule()
    def release_reserve(self) -> None:
        self.arena.release_reserve()

    @invariant()
    def secrets_hold_their_patterns_and_do_not_overlap(self) -> None:
        spans = []
        for secret, pattern in self.expected.values():
            assert secret == pattern
            spans.append((secret.address, secret.address + len(secret)))
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, "two live secrets overlap"

    @invariant()
    def live_secrets_sit_on_pages_locked_exactly_where_the_counts_say(self) -> None:
        # One read of the kernel's view per step (smaps: most of this test's time)
        locked = kernel_side_locked(self.arena)
        page = self.arena.page_size
        for secret, _ in self.expected.values():
            first = secret.address - secret.address % page
            assert set(range(first, secret.address + len(secret), page)) <= locked
        assert_arena_matches_kernel(self.arena, locked)  # nest depths too, when simulated

    def teardown(self) -> None:
        self.views.clear()
        for secret, _ in self.expected.values():
            secret.close()
        self.expected.clear()
        gc.collect()
        assert_nothing_left(self.arena)


class PrefetchingArenaMachine(ArenaMachine):
    def make_arena(self) -> Arena:
        return Arena(region_pages=8, reserve_pages=2, prefetch=True)


ArenaMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestArenaMachine = ArenaMachine.TestCase
PrefetchingArenaMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None
)
TestPrefetchingArenaMachine = PrefetchingArenaMachine.TestCase
