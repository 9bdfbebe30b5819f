"""Sealed secrets: :class:`Enclave`, a secret kept encrypted in ordinary memory.

Locked memory is scarce (``RLIMIT_MEMLOCK`` is 64 KiB on some systems, 8 MiB under
Docker); ordinary memory is not. An enclave holds its secret encrypted, so the
ciphertext may live in ordinary memory: swapped out, written into a core dump or
inherited by a forked child, it reveals nothing. Only the key needs protecting, and
there is one per process, so a million enclaves cost the locked memory of one key.

The choices, and why:

* **AES-GCM-SIV** (RFC 8452), from pyca/cryptography, with a fresh random 96-bit
  nonce per seal. GCM-SIV derives a new key from each nonce and is nonce-misuse
  resistant: were two seals ever to draw the same nonce, an observer learns only
  whether the two plaintexts were equal, never their XOR, and forging stays out of
  reach (ChaCha20-Poly1305 or AES-GCM would lose both). Random nonces need no
  counter, so a parent and a child that share the key after fork (see
  :meth:`Enclave.share_with_children`) cannot collide by construction the way two
  copies of one counter would. The bound: with random 96-bit nonces the chance
  that *any* two of q seals share a nonce is below q**2 / 2**97; at 2**32 seals it
  is 2**-33, and even then the loss is the equality of two plaintexts. RFC 8452's
  own analysis allows far more messages per key than that. So the key is not
  rotated: a long-lived process would need 2**32 seals (about six hours of nothing
  but sealing at this module's speed) before the collision chance reached 2**-33.
* **The key** is 32 random bytes that are never stored whole: two halves, key =
  left XOR right, each in a guarded :class:`~securemem.SecureBytes` of its own
  (its own locked page between guard pages, out of core dumps, wiped on fork, made
  read-only). Either half alone is uniformly random and independent of the key, so
  a read of any one page (an overread, a stray pointer, a page that leaks) learns
  nothing. A third guarded page, the scratch, holds the whole key while a seal or
  an open runs and zeros otherwise. Several threads may seal and open at once; a
  count of users fills the scratch for the first and wipes it after the last, so
  no thread's wipe pulls the key from under another. The count and the scratch
  change in one native call with the GIL held (see below). This replaced a single
  key page kept ``"noaccess"`` between operations: its two ``mprotect`` calls per
  operation cost 1.9 us, more than half an open; combining and wiping 32 bytes
  costs nanoseconds. What it gave up, and why that is acceptable, is in
  docs/threat-model.md.
* **The AEAD object** lives only for one seal or open. OpenSSL keeps the expanded
  key in its ordinary (unlocked) heap while such an object is alive; building one
  per operation and dropping it at once bounds that copy to the operation (it is
  the same per-operation cost memguard's design pays). ``benchmarks/enclave.py``
  measures it.
* **Associated data** is a fixed label naming this format. The plaintext's length
  is authenticated by GCM-SIV itself (its length block), and each enclave's nonce
  is unique and authenticated. Binding an enclave's identity as well would not stop
  anyone real: the ciphertext never leaves the process (an enclave cannot be
  pickled), so only code running in the process could swap two enclaves' private
  fields, and such code can call :meth:`Enclave.open` directly.

After each call into cryptography the vector registers are cleared and the stack the
call used is wiped (``securemem._scrub``): OpenSSL returns with the AES key schedule in
vector registers and AES-GCM-SIV leaves the last partial plaintext block on the stack.

A ``KeyboardInterrupt`` (or any exception) may cut a seal or an open short, in any
thread's process-directed signal, and never leaves the key whole: the key's use
count and the scratch change together inside one native call (``ReadGate.call``,
securemem/_c/core/readgate.c), which wipes the scratch again before any exception
leaves it. A half-written plaintext is closed (wiped) on the way out, or wiped when
its SecureBytes is dropped.

**Closing.** An enclave's ciphertext is one ``bytearray``, written in place by the
seal (``encrypt_into``: no other copy is made) and zeroed in place by
:meth:`Enclave.close` before the enclave counts as closed, so an interrupt cannot
leave it behind. An :meth:`Enclave.open` that a close overlaps (another thread, or
code that runs inside the open: a finalizer, a profiler, a signal handler) returns
nothing: it checks after the decryption that the enclave is still open, and closes
(wipes) the plaintext if not.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn, SupportsIndex, cast

from securemem._binding import ReadGate, ffi, lib, purge_count
from securemem._errors import EnclaveError, SecureBytesClosedError, SecureMemoryError
from securemem._extras import needs_crypto_extra
from securemem._scrub import scrub_after_native
from securemem._securebytes import SecureBytes, as_byte_view, wipe_view, writable_byte_view
from securemem._types import Buffer

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

__all__ = ["Enclave"]

_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_ASSOCIATED_DATA = b"securemem.Enclave/AES-GCM-SIV/1"

_cipher: tuple[type[AESGCMSIV], type[Exception]] | None = None


def _aead() -> tuple[type[AESGCMSIV], type[Exception]]:
    """AES-GCM-SIV and InvalidTag from cryptography, imported on first use (optional)."""
    global _cipher
    if _cipher is None:
        with needs_crypto_extra("securemem.Enclave"):
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
        _cipher = (AESGCMSIV, InvalidTag)
    return _cipher


@contextlib.contextmanager
def readable_view(secret: SecureBytes) -> Iterator[memoryview]:
    """A view of ``secret`` that may be read, opening a no-access guarded one meanwhile."""
    try:
        protection = secret.protection
    except SecureBytesClosedError:
        raise
    except ValueError:
        protection = "readwrite"  # not guarded: always readable
    with contextlib.ExitStack() as stack:
        if protection == "noaccess":
            stack.enter_context(secret.accessible("readonly"))
        view = secret.view()
        try:
            yield view
        finally:
            view.release()


_KeyParts = tuple[SecureBytes, SecureBytes, SecureBytes]


class _ProcessKey:
    """The one sealing key of this process.

    ``gate`` holds the key as two halves and puts it together only while a seal or an
    open runs (:class:`securemem._core.ReadGate`: the count of users and the whole key
    change together in one native call, so no interrupt can part them). ``epoch``
    names the key: an enclave remembers the epoch it was sealed under, and a process
    that no longer holds that key (a forked child that was not given it, or one
    after a purge) refuses to open it with a clear error instead of failing
    authentication.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gate: ReadGate | None = None
        self.epoch = 0
        self.share = False
        self.lost_reason = ""
        self.transfer: mmap.mmap | None = None

    @property
    def parts(self) -> _KeyParts | None:
        """(left half, right half, scratch) of the key (None before the first seal,
        after a purge or a fork). The key is left XOR right; the scratch holds it
        whole only while a seal or an open runs, and zeros otherwise."""
        gate = self.gate
        return None if gate is None else cast(_KeyParts, gate.parts)

    @property
    def users(self) -> int:
        """Seals and opens using the key right now, in every thread."""
        gate = self.gate
        return 0 if gate is None else gate.users

    def current(self, epoch: int | None) -> tuple[ReadGate, int]:
        """The gate of the key, and its epoch (made on first use).

        ``epoch``: the one an enclave was sealed under (None for a new seal). Changes
        no count: an interrupt anywhere in here leaves nothing to undo.

        Once the key exists this takes no lock: a KeyboardInterrupt can land between a
        lock's acquire and its release (CPython does not make a ``with`` block atomic
        against asynchronous exceptions), and a lock left held would hang every later
        seal and open. Only making the key (first use, after a purge or a fork) locks.
        """
        gate, current_epoch = self.gate, self.epoch
        if gate is not None and not gate.closed and epoch in (None, current_epoch):
            return gate, current_epoch  # the usual case, in as few steps as it takes
        self.forget_if_purged()
        self._check_epoch(epoch)
        gate, current_epoch = self.gate, self.epoch
        if gate is not None:
            return gate, current_epoch
        with self.lock:
            self.forget_if_purged()
            self._check_epoch(epoch)
            if self.gate is None:
                self._make_key(None)
            assert self.gate is not None
            return self.gate, self.epoch

    def _check_epoch(self, epoch: int | None) -> None:
        if epoch is not None and epoch != self.epoch:
            raise EnclaveError(
                "this enclave was sealed under a key this process does not hold: "
                f"{self.lost_reason or 'it was sealed by another process'}"
            )

    def forget_if_purged(self) -> None:
        """After :func:`securemem.purge` closed the key: drop it, and with it every
        enclave sealed under it (a new key is made on the next seal).

        Takes no lock: :func:`securemem.purge` calls it from signal handlers too, and
        each step is one assignment (a concurrent :meth:`current` doing the same
        only bumps the epoch once more). Operations still running on the old key
        hold its gate themselves; each call builds its own view of the key, so
        dropping the gate here takes nothing from under them.
        """
        gate = self.gate
        if gate is None or not gate.closed:
            return
        self.epoch += 1
        self.lost_reason = (
            "securemem.purge() wiped the sealing key this enclave was sealed under, "
            "and with it every enclave sealed before the purge. Seal the secret again "
            "from its source."
        )
        self.gate = None

    def _make_key(self, source: memoryview | None) -> None:
        """A new key: random, or copied from ``source`` (the parent's, after fork).

        Two random halves make a random key; a given key is split as source XOR a
        random half. An interrupt before the gate is stored drops the new parts, and
        dropping a SecureBytes wipes it.
        """
        left = SecureBytes.random(_KEY_SIZE, guarded=True)
        if source is None:
            right = SecureBytes.random(_KEY_SIZE, guarded=True)
        else:
            right = SecureBytes(_KEY_SIZE, guarded=True)
            with left.view() as mask, right.view() as target:
                for index in range(_KEY_SIZE):  # small ints: no copy of a key byte is made
                    target[index] = source[index] ^ mask[index]
        scratch = SecureBytes(_KEY_SIZE, guarded=True)
        self.gate = ReadGate(left, right, scratch)  # halves read-only from here

    # -- fork -----------------------------------------------------------------

    def before_fork(self) -> None:
        """With sharing on, copy the key where the child will find it (see after_fork_*)."""
        if not self.share or self.gate is None:
            return
        # A private mapping of our own: inherited copy-on-write (the key's own page is
        # wiped in the child), kept out of core dumps, locked where the limit allows.
        # Private, not mmap's default MAP_SHARED: the parent's wipe right after the
        # fork would otherwise race the child's read.
        transfer = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        with contextlib.suppress(OSError, AttributeError):
            transfer.madvise(mmap.MADV_DONTDUMP)
        address = int(ffi.cast("uintptr_t", ffi.from_buffer(transfer)))
        with contextlib.suppress(SecureMemoryError):
            _kernel().lock(address, mmap.PAGESIZE)
        gate, _ = self.current(None)
        gate.call(_copy_key_into, transfer)
        # Another thread's fork may be between its own hooks: its copy is wiped and
        # unlocked here, never dropped unwiped (its child then starts without the key).
        self._drop_transfer(unlock=True)
        self.transfer = transfer

    def after_fork_in_parent(self) -> None:
        self._drop_transfer(unlock=True)

    def after_fork_in_child(self) -> None:
        # Whatever another thread of the parent was doing with the key is gone with it.
        self.lock = threading.Lock()
        self.gate = None  # the parent's key parts: wiped here, and not ours to free
        if self.transfer is None:
            self.epoch += 1
            self.lost_reason = (
                "it was sealed by the parent of this forked process, and a child does "
                "not inherit the sealing key (it is wiped on fork like every secret). "
                "Call Enclave.share_with_children() in the parent before forking to "
                "give children the key, or seal the secret again in the child."
            )
            return
        try:
            # Both views released before the mapping is closed (close refuses otherwise).
            with memoryview(self.transfer) as whole, whole[:_KEY_SIZE] as inherited:
                self._make_key(inherited)
        except BaseException:
            self.epoch += 1
            self.lost_reason = (
                "the parent shared its key with this forked child, but the child could "
                "not put it in locked memory (see securemem.stats() and the memory "
                "lock limit)"
            )
        finally:
            self._drop_transfer(unlock=False)  # locks are not inherited across fork

    def _drop_transfer(self, *, unlock: bool) -> None:
        transfer, self.transfer = self.transfer, None
        if transfer is None:
            return
        # Wiped through a buffer export held for the wipe, not a bare address: were the
        # mapping closed meanwhile (two threads' fork hooks dropping the same copy), the
        # close would refuse while the export is held instead of unmapping under the wipe.
        with memoryview(transfer) as page:
            wipe_view(page)
            address = int(ffi.cast("uintptr_t", ffi.from_buffer(page)))
        if unlock:
            with contextlib.suppress(SecureMemoryError):
                _kernel().unlock(address, mmap.PAGESIZE)
        transfer.close()


def _copy_key_into(key: SecureBytes, transfer: mmap.mmap) -> None:
    transfer[:_KEY_SIZE] = key


def _kernel() -> Any:
    from securemem._arena import default_arena

    return default_arena().kernel


_KEY = _ProcessKey()


def forget_key_if_purged() -> None:
    """securemem.purge() closed the key: drop it (see _ProcessKey.forget_if_purged)."""
    _KEY.forget_if_purged()

os.register_at_fork(
    before=_KEY.before_fork,
    after_in_parent=_KEY.after_fork_in_parent,
    after_in_child=_KEY.after_fork_in_child,  # after securemem._fork's: the arenas are reset
)


def _check_no_purge(before: int, done: str) -> None:
    """Refuse the result of a seal or open that a :func:`securemem.purge` overlapped.

    A purge wipes the key (and the secret being sealed, and the plaintext being
    opened) wherever another thread is in its operation. ``before`` is the purge
    count read before the key was taken; a purge that finished earlier closed the
    key, and :meth:`_ProcessKey.current` then made a new one.
    """
    if purge_count() != before:
        raise EnclaveError(
            f"securemem.purge() ran while this enclave was being {done}: the key and "
            "the secret were wiped mid-way, so nothing is returned. Seal or open again "
            "if the process is to go on."
        )


# The two operations, each called by the key's gate with the key readable (and
# no-access again when they return or raise, whatever they raise).


def _encrypt_into(
    key: SecureBytes,
    cipher_class: type[AESGCMSIV],
    nonce: bytes,
    plaintext: memoryview,
    ciphertext: bytearray,
) -> None:
    try:
        # Built, used and dropped while the key is whole: the expanded key in
        # OpenSSL's heap lives no longer than this seal. Written straight into the
        # enclave's own buffer, the one copy close() wipes.
        # cryptography takes any buffer, though its hints name only bytes, bytearray
        # and memoryview: the SecureBytes itself, no view to make and release. The
        # cipher is never bound to a name: a traceback keeps a frame's locals alive,
        # and with them a cipher's expanded key.
        cipher_class(key).encrypt_into(  # type: ignore[arg-type]
            nonce, plaintext, _ASSOCIATED_DATA, ciphertext
        )
    finally:
        # Here, in the calling function: OpenSSL returns with the key schedule in
        # vector registers and the last plaintext block on the stack (_scrub).
        scrub_after_native()


def _decrypt_into(
    key: SecureBytes,
    cipher_class: type[AESGCMSIV],
    nonce: bytes,
    ciphertext: bytearray,
    plaintext: SecureBytes,
) -> None:
    # The SecureBytes itself as the target: its buffer export refuses once a purge
    # closed it (the caller turns that into EnclaveError). Any buffer, and no name for
    # the cipher (see _encrypt_into): an InvalidTag's traceback must not keep it alive.
    try:
        cipher_class(key).decrypt_into(  # type: ignore[arg-type]
            nonce, ciphertext, _ASSOCIATED_DATA, plaintext  # type: ignore[arg-type]
        )
    finally:
        scrub_after_native()  # also after InvalidTag: the plaintext was there


class Enclave:
    """A secret sealed (encrypted and authenticated) in ordinary memory.

    ``Enclave(secret)`` seals a copy of a :class:`~securemem.SecureBytes` or any
    bytes-like object and leaves the source as it was; :meth:`take` also wipes a
    writable source; :meth:`random` seals fresh random bytes. :meth:`open` returns the
    secret in a new SecureBytes (use it in a ``with`` block, which closes and wipes
    it). The ciphertext costs no locked memory, so enclaves scale past the memory lock
    limit: a million 32-byte enclaves cost the locked page of the one process key.

    Sealing uses AES-GCM-SIV (nonce-misuse resistant) with a random 96-bit nonce per
    seal under a per-process key held as two halves on guarded pages of their own and
    put together only during a seal or an open; the documentation's memguard page
    explains each choice, and the bound on seals per key. :meth:`close` (or a ``with``
    block) wipes the ciphertext; a closed enclave can no longer be opened. An enclave
    whose ciphertext was altered raises :class:`~securemem.EnclaveError` when opened,
    and so does one sealed by another process (a forked child does not get the key,
    unless :meth:`share_with_children` was called). Needs ``securemem[crypto]``.

    ``len()`` is the secret's size. Nothing reveals its content: ``repr`` shows the
    size only, and ``==``, ``hash`` and ``pickle`` raise ``TypeError`` (open both and
    compare the SecureBytes, which compares in constant time).
    """

    __slots__ = ("_ciphertext", "_epoch", "_nonce")

    _ciphertext: bytearray | None  # None once closed (wiped first)

    def __init__(self, secret: SecureBytes | Buffer) -> None:
        if isinstance(secret, (str, int)) or secret is None:
            raise TypeError(
                f"Enclave() seals a SecureBytes or a bytes-like object, not "
                f"{type(secret).__name__}"
            )
        if isinstance(secret, SecureBytes):
            with readable_view(secret) as view:
                self._seal(view)
            return
        source = as_byte_view(secret)
        try:
            if not source.c_contiguous:
                with SecureBytes(source) as flat, flat.view() as view:
                    self._seal(view)
            else:
                self._seal(source)
        finally:
            source.release()

    def _seal(self, plaintext: memoryview) -> None:
        nonce = os.urandom(_NONCE_SIZE)
        cipher_class, _ = _aead()
        purges = purge_count()  # before the key is taken: see _check_no_purge
        try:
            gate, epoch = _KEY.current(None)
            ciphertext = bytearray(plaintext.nbytes + _TAG_SIZE)
            gate.call(_encrypt_into, cipher_class, nonce, plaintext, ciphertext)
        except Exception:
            _check_no_purge(purges, "sealed")  # a purge's doing: say so, one error type
            raise
        _check_no_purge(purges, "sealed")
        self._nonce, self._ciphertext, self._epoch = nonce, ciphertext, epoch

    @classmethod
    def take(cls, buffer: SecureBytes | Buffer) -> Enclave:
        """Seal a writable buffer, then wipe it (zeros; the buffer stays usable).

        For a ``bytearray``, a writable ``memoryview``, an ``array``, an ``mmap`` or a
        SecureBytes (wiped, still open: close it yourself). A read-only source
        (``bytes``, a read-only ``memoryview``) raises ``TypeError``: it cannot be
        wiped. If sealing fails the source is left untouched.
        """
        if isinstance(buffer, SecureBytes):
            enclave = cls(buffer)
            buffer.wipe()  # opens a protected guarded secret for the wipe
            return enclave
        source = writable_byte_view(buffer, "Enclave.take")
        try:
            enclave = cls(source)
            wipe_view(source)
        finally:
            source.release()
        return enclave

    @classmethod
    def random(cls, size: SupportsIndex) -> Enclave:
        """Seal ``size`` bytes from the OS CSPRNG (made in locked memory, wiped after)."""
        with SecureBytes.random(size) as secret:
            return cls(secret)

    def open(self) -> SecureBytes:
        """The secret, decrypted into a new SecureBytes (close it, or use ``with``).

        Raises :class:`~securemem.EnclaveError` if the enclave was closed (also by a
        :meth:`close` that overlapped this call: the plaintext is wiped, nothing is
        returned), if the ciphertext was altered (nothing is returned, the partial
        output is wiped) or if this process does not hold the key it was sealed under.
        """
        ciphertext = self._ciphertext
        if ciphertext is None:
            self._fail_closed("opened")
        size = len(ciphertext) - _TAG_SIZE
        if size < 0:
            self._fail_authentication()
        cipher_class, invalid_tag = _cipher or _aead()
        plaintext = SecureBytes(size)  # before the key: a full memory lock costs it nothing
        purges = purge_count()
        try:
            gate = _KEY.gate  # the usual case inline (an open is a hot path); else current()
            if gate is None or gate.closed or self._epoch != _KEY.epoch:
                gate, _ = _KEY.current(self._epoch)
            gate.call(_decrypt_into, cipher_class, self._nonce, ciphertext, plaintext)
        except BaseException as error:
            # On InvalidTag cryptography has written unauthenticated bytes: close wipes them.
            plaintext.close()
            if isinstance(error, Exception):
                _check_no_purge(purges, "opened")  # a wiped key fails the tag too: say why
            if isinstance(error, invalid_tag):
                if self._ciphertext is not ciphertext or not any(ciphertext):
                    self._fail_closed("opened")  # a close() overlapped: it wiped first
                self._fail_authentication()
            raise
        if purge_count() != purges or self._ciphertext is not ciphertext:
            plaintext.close()  # a purge or a close() overlapped: return nothing
            _check_no_purge(purges, "opened")
            self._fail_closed("opened")
        return plaintext

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Wipe the ciphertext and refuse every later :meth:`open` (idempotent).

        The ciphertext's bytes are zeroed in place, the enclave's one copy, before the
        enclave counts as closed: an interrupt cannot leave them behind. After this,
        :meth:`open` and ``len()`` raise :class:`~securemem.EnclaveError`. An
        :meth:`open` running at the same time in another thread returns nothing.
        ``with Enclave(secret) as enclave:`` closes on leaving the block.
        """
        ciphertext = self._ciphertext
        if ciphertext is None:
            return
        if ciphertext:
            lib.sm_wipe(ffi.from_buffer(ciphertext, require_writable=True), len(ciphertext))
        self._ciphertext = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (the ciphertext is wiped)."""
        return self._ciphertext is None

    def __enter__(self) -> Enclave:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fail_closed(self, verb: str) -> NoReturn:
        raise EnclaveError(
            f"this enclave is closed: close() wiped its ciphertext, so it cannot be {verb}. "
            "Seal the secret again from its source if it is still needed."
        ) from None

    def _fail_authentication(self) -> NoReturn:
        ciphertext = self._ciphertext or b""
        raise EnclaveError(
            f"an enclave of {max(0, len(ciphertext) - _TAG_SIZE)} bytes failed "
            "authentication: its ciphertext was altered (memory corruption, or code "
            "writing into the enclave's private fields). Nothing was decrypted; seal "
            "the secret again from its source."
        ) from None

    @staticmethod
    def share_with_children(share: bool = True) -> None:
        """Let children forked from now on open this process's enclaves.

        Off by default: a child gets no secrets of its parent, and the sealing key is
        one of them. Turned on, each ``os.fork()`` (and ``multiprocessing``'s fork
        start method) hands the child a copy of the key, through one page that lives
        only during the fork (out of core dumps, locked where the limit allows, wiped
        on both sides right after). The risk: every such child can open *every*
        enclave the parent holds, including ones sealed after the fork if it ever
        gets their ciphertext, and a compromised child exposes them all. Share only
        with children you trust as much as the parent, e.g. pre-forked workers of one
        server. Random nonces keep parent and child from ever colliding on a nonce.
        """
        _KEY.share = bool(share)

    # -- what an enclave is not ------------------------------------------------

    def __len__(self) -> int:
        ciphertext = self._ciphertext
        if ciphertext is None:
            self._fail_closed("measured")
        return len(ciphertext) - _TAG_SIZE

    def __repr__(self) -> str:
        if self._ciphertext is None:
            return "<Enclave closed>"
        return f"<Enclave size={len(self)}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        raise TypeError(
            "enclaves cannot be compared: open both and compare the SecureBytes "
            "(a constant-time comparison)"
        )

    def __ne__(self, other: object) -> bool:
        return self.__eq__(other)

    def __hash__(self) -> int:
        raise TypeError("Enclave is unhashable: it has no value to compare (== refuses too)")

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError(
            "an Enclave cannot be pickled: its key never leaves this process, so the "
            "copy could not be opened anywhere else. Open it and handle the secret "
            "explicitly if you must move it."
        )

    def __copy__(self) -> Enclave:
        # The same enclave, never a second ciphertext: close() wipes the one it holds, and
        # a copy's would be left behind (closing a "copy" closes the original too).
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Enclave:
        return self
