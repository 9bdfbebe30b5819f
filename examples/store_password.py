"""Ask for a password and keep it in locked memory, never as a str or bytes.

    python examples/store_password.py

Reads from the terminal with echo off. Without a terminal (cron, CI: `echo pw | python
examples/store_password.py`) it warns like the standard library's getpass and reads one line
from standard input instead. Prints only the length, never the password.
"""

from __future__ import annotations

import securemem


def main() -> None:
    with securemem.getpass("Password to keep: ") as password:
        print(f"kept {len(password)} bytes in locked memory")
        # Hand password.view() to whatever needs it (a KDF, a database driver that takes a
        # buffer) inside this block: a memoryview reads the locked bytes without a copy.
    print("password wiped")


if __name__ == "__main__":
    main()
