"""The examples in examples/ run, both on a real terminal (pty) and without one (CI)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, child_env

EXAMPLES = REPO / "examples"
ENV = child_env()


def run_without_terminal(script: str, *args: str, stdin: bytes = b"") -> str:
    # start_new_session: no controlling terminal, as under cron or CI.
    process = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        input=stdin,
        capture_output=True,
        start_new_session=True,
        env=ENV,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr.decode()
    return process.stdout.decode()


def run_on_a_pty(script: str, answer: bytes) -> bytes:
    master, slave = os.openpty()
    bootstrap = (
        "import os, runpy, sys; os.close(os.open(os.ttyname(0), os.O_RDWR)); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", bootstrap, str(EXAMPLES / script)],
        stdin=slave, stdout=slave, stderr=slave,
        start_new_session=True, env=ENV, cwd=REPO,
    )
    output = b""
    try:
        deadline = time.monotonic() + 60
        while b": " not in output:
            assert time.monotonic() < deadline, output
            if select.select([master], [], [], 1)[0]:
                output += os.read(master, 4096)
        os.write(master, answer + b"\r")
        assert process.wait(timeout=60) == 0, output
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
        os.close(slave)
    return output


def test_store_password_on_a_terminal() -> None:
    output = run_on_a_pty("store_password.py", b"not-echoed-pw")
    assert b"kept 13 bytes in locked memory" in output
    assert b"not-echoed-pw" not in output
    assert b"password wiped" in output


def test_store_password_without_a_terminal() -> None:
    output = run_without_terminal("store_password.py", stdin=b"from-a-pipe\n")
    assert "kept 11 bytes in locked memory" in output


def test_aes_gcm_key_with_a_random_key() -> None:
    pytest.importorskip("cryptography")
    output = run_without_terminal("aes_gcm_key.py")
    assert "decrypted 23 bytes into locked memory" in output
    assert "forged message rejected: InvalidTag" in output


def test_aes_gcm_key_from_a_key_file(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    key_file = tmp_path / "aes.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    output = run_without_terminal("aes_gcm_key.py", str(key_file))
    assert "decrypted 23 bytes" in output


def test_argon2id_derive() -> None:
    pytest.importorskip("cryptography")
    output = run_without_terminal("argon2id_derive.py", stdin=b"correct horse battery\n")
    assert "derived a 32-byte key in locked memory" in output
