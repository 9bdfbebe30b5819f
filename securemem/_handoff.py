"""Hand a secret to an API that only takes a file path, without writing it to disk.

``ssl.SSLContext.load_cert_chain`` (and many C libraries behind Python bindings) read a key
from a path and nothing else. Writing the key to a temporary file puts it on disk, in the page
cache and in every backup of ``/tmp``. :func:`secret_file` instead puts it in an anonymous,
never-linked in-memory file (``memfd_create``), whose pages are locked while the file exists
and zeroed before it is closed, and yields its ``/proc/self/fd/N`` path. Opening that path
opens the same in-memory file, at offset 0.

What it does not change: whatever the reading library does with the bytes it reads (OpenSSL's
``FILE`` buffer, its decoded key) is the same as for a file on disk. docs/other-libraries.md
gives the measured counts.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager

from securemem._lockmemory import lock_memory
from securemem._securebytes import SecureBytes


@contextmanager
def secret_file(secret: SecureBytes, *, name: str = "securemem-secret") -> Iterator[str]:
    """A path (``/proc/self/fd/N``) to an in-memory file holding a copy of ``secret``, valid
    inside the ``with`` block, for APIs that read a key only from a path::

        with SecureBytes.from_file("server.key") as key, securemem.secret_file(key) as path:
            context.load_cert_chain("server.crt", path)

    The file exists only in memory (``memfd_create``, Linux 3.17+), was never linked into any
    directory, and is not inherited across ``exec`` (close-on-exec). Its pages are locked
    (``mlock``) while the block runs and zeroed when it ends, before the file is closed. It is
    readable by this process only through the path, and by anyone who could read this
    process's memory anyway (same user, ptrace access).
    """
    if not isinstance(secret, SecureBytes):
        raise TypeError(
            f"secret_file() takes a SecureBytes, not {type(secret).__name__}: read the key "
            "with SecureBytes.from_file(path) or decode it with SecureBytes(...)"
        )
    create = getattr(os, "memfd_create", None)
    if create is None:
        raise OSError(
            "secret_file() needs memfd_create (Linux 3.17+), which this system lacks: pass the "
            "key file's own path instead (keep it chmod 600 on an encrypted disk)"
        )
    source = secret.view()  # raises SecureBytesClosedError for a closed secret
    descriptor = create(name, os.MFD_CLOEXEC)
    try:
        size = source.nbytes
        if size == 0:
            yield f"/proc/self/fd/{descriptor}"
            return
        os.ftruncate(descriptor, size)
        with (
            mmap.mmap(descriptor, size, mmap.MAP_SHARED) as pages,
            lock_memory(pages),
        ):
            try:
                pages[:size] = source  # a memmove from locked memory: no Python copy
                source.release()
                yield f"/proc/self/fd/{descriptor}"
            finally:
                # The file's pages are the only copy the kernel keeps: zero them while we
                # still can (closing a memfd frees its pages without clearing them).
                pages[:size] = bytes(size)
    finally:
        source.release()
        os.close(descriptor)
