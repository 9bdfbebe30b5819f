"""Second red-team round on issue 20's fixes: attacks by someone other than their authors.

Each test here is a finding that failed on the merged fixes (c70a53c) and passes with the
fix beside it; the attacks that held are listed in the round's report.
"""

from __future__ import annotations

import pytest

from securemem import Arena, SecureBytes, purge
from securemem._binding import ffi
from securemem.testing import SimulatedKernel

MARK = b"M" * 32


class _UnmapWatcher(SimulatedKernel):
    """Records what the watched secret's data held when its pages went back to the kernel
    (simulated pages are real memory: reading them is what a later owner could see)."""

    def __init__(self) -> None:
        super().__init__("linux", superuser=True)
        self.watched: int | None = None
        self.left_at_unmap: list[bytes] = []

    def unmap(self, address: int, length: int) -> None:
        watched = self.watched
        if watched is not None and address <= watched < address + length:
            self.left_at_unmap.append(bytes(ffi.buffer(ffi.cast("char *", watched), len(MARK))))
        super().unmap(address, length)


@pytest.mark.parametrize("closer", ["close", "purge"])
def test_a_guarded_secret_written_through_a_view_after_its_close_is_wiped_before_unmap(
    closer: str,
) -> None:
    # A thread writing through a view (a codec, a copy) when another thread's close or
    # purge lands: the close wipes, the view keeps the pages mapped, the writer finishes
    # its bytes into them. When the view goes, the pages go back to the kernel: they must
    # hold zeros by then, as a packed slot is wiped again before it is reused.
    kernel = _UnmapWatcher()
    secret = SecureBytes(len(MARK), arena=Arena(kernel=kernel), guarded=True)
    kernel.watched = secret.address
    view = secret.view()
    if closer == "close":
        secret.close()
    else:
        purge()
    assert secret.closed
    view[:] = MARK  # the writer, still inside its export
    view.release()
    assert kernel.left_at_unmap == [bytes(len(MARK))], "the pages went back holding the write"
