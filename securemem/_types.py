"""Types shared by the public signatures.

``Buffer`` is any object with the buffer protocol: ``bytes``, ``bytearray``, ``memoryview``,
``array``, ``mmap``, a SecureBytes. It is ``collections.abc.Buffer`` (PEP 688) from Python
3.12; on 3.11 type checkers see ``typing_extensions.Buffer`` (they carry it), and nothing
needs typing_extensions at run time.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
elif TYPE_CHECKING:
    from typing_extensions import Buffer
else:
    # Python 3.11 at run time: securemem never evaluates its annotations, so this only
    # matters to typing.get_type_hints(), which then reads object where it is absent.
    try:
        from typing_extensions import Buffer
    except ImportError:
        Buffer = object

__all__ = ["Buffer"]
