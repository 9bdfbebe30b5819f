"""Hand a secret to an API that only takes a file path, without writing it to disk.

``ssl.SSLContext.load_cert_chain`` (and many C libraries behind Python bindings) read a key
from a path and nothing else. Writing the key to a temporary file puts it on disk, in the page
cache and in every backup of ``/tmp``. :func:`secret_file` instead puts it in an anonymous,
never-linked in-memory file (``memfd_create``), whose pages are locked while the file exists,
kept out of core dumps and out of forked children, and zeroed before it is closed, and yields
its ``/proc/self/fd/N`` path. Opening that path opens the same in-memory file, at offset 0.
The kernel work is in C (securemem/_c/secretfile.c), where a fork cannot land between making
the descriptor and listing it for closing in the child.

What it does not change: whatever the reading library does with the bytes it reads (OpenSSL's
``FILE`` buffer, its decoded key) is the same as for a file on disk. docs/other-libraries.md
gives the measured counts.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from securemem._binding import ffi, lib
from securemem._errors import KernelError, SecureMemoryError
from securemem._kernel import kernel_failure
from securemem._securebytes import SecureBytes

_STEPS = {
    lib.SM_FILE_CREATE: "memfd_create",
    lib.SM_FILE_SIZE: "ftruncate",
    lib.SM_FILE_MAP: "mmap",
    lib.SM_FILE_DONTDUMP: "madvise(dontdump)",
    lib.SM_FILE_DONTFORK: "madvise(dontfork)",
    lib.SM_FILE_LOCK: "mlock",
}


def _refusal(step: int, number: int, size: int) -> SecureMemoryError:
    if step == lib.SM_FILE_TABLE_FULL:
        return KernelError(
            number,
            "secret_file(): too many secret files are open at once in this process "
            "(256); leave the blocks you no longer need first",
        )
    if step == lib.SM_FILE_CREATE and number == errno.ENOSYS:
        return KernelError(
            number,
            "secret_file() needs memfd_create, MADV_DONTDUMP and MADV_DONTFORK (Linux "
            "3.17+), which this system lacks: pass the key file's own path instead (keep "
            "it chmod 600 on an encrypted disk)",
        )
    from securemem._arena import default_arena

    return kernel_failure(_STEPS.get(step, "memfd_create"), number, size, default_arena().kernel)


@contextmanager
def secret_file(secret: SecureBytes, *, name: str = "securemem-secret") -> Iterator[str]:
    """A path (``/proc/self/fd/N``) to an in-memory file holding a copy of ``secret``, valid
    inside the ``with`` block, for APIs that read a key only from a path::

        with SecureBytes.from_file("server.key") as key, securemem.secret_file(key) as path:
            context.load_cert_chain("server.crt", path)

    The file exists only in memory (``memfd_create``, Linux 3.17+), was never linked into any
    directory, and is not inherited across ``exec`` (close-on-exec). The mapping that holds
    its bytes has SecureBytes's guarantees: locked (``mlock``), left out of core dumps
    (``MADV_DONTDUMP``) and not inherited by a forked child (``MADV_DONTFORK``); its pages
    are zeroed when the block ends, before the file is closed. A child forked inside the
    block does not get the file either: its inherited descriptor is closed in the child
    before the child runs any code (a ``pthread_atfork`` handler), so the path names
    nothing there, and leaving the block in the child touches nothing of the parent's.
    Descriptors that the reading library opened on the path are its own, and a child
    inherits those like any other (they stay readable until that library closes them).
    While the block runs, a process allowed to inspect this one (the same user, a forked
    child included) can reopen the file as ``/proc/PID/fd/N``, as it could read this
    process's memory; :func:`securemem.disable_core_dumps` shuts both out.
    Where the system cannot give one of these guarantees the call raises, rather than
    hand out a weaker file. Otherwise the file is readable by this process only through
    the path, and by anyone who could read this process's memory anyway (same user,
    ptrace access).
    """
    if not isinstance(secret, SecureBytes):
        raise TypeError(
            f"secret_file() takes a SecureBytes, not {type(secret).__name__}: read the key "
            "with SecureBytes.from_file(path) or decode it with SecureBytes(...)"
        )
    if not isinstance(name, str):
        raise TypeError(f"secret_file() name must be a str, not {type(name).__name__}")
    encoded = name.encode("utf-8", "surrogateescape")
    if b"\0" in encoded or len(encoded) > 249:  # memfd_create: at most 249 bytes
        raise ValueError("secret_file() name must have no NUL byte and at most 249 bytes")
    with secret.view() as source:  # raises SecureBytesClosedError for a closed secret
        mapping = ffi.new("void **")
        serial = ffi.new("unsigned long long *")
        failed = ffi.new("int *")
        # The export is held for the copy: a purge elsewhere wipes the secret but
        # cannot free its memory under this view.
        descriptor = lib.sm_secret_file_open(
            encoded, ffi.from_buffer(source), source.nbytes, mapping, serial, failed
        )
        if descriptor < 0:
            raise _refusal(failed[0], ffi.errno, source.nbytes)
        pages, size = mapping[0], source.nbytes
    try:
        yield f"/proc/self/fd/{descriptor}"
    finally:
        # The native table decides whose file this is, by a serial no other file of this
        # process or its children shares. In a child forked inside the block (or anywhere
        # after the file was made: user code runs between, in a subclass's view() say),
        # the descriptor was closed at the fork and the mapping never came: nothing of
        # the child's is touched, even a file of its own with the same number and address.
        lib.sm_secret_file_close(descriptor, pages, size, serial[0])
