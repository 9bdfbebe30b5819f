"""securemem.secret_file: a key for path-only APIs, in locked memory instead of on disk; and the
libraries of docs/other-libraries.md working with what securemem hands them."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest

import securemem
from securemem import SecureBytes, SecureBytesClosedError, _procfs
from tests.conftest import run_json, run_python
from tests.handoff_cases import MAKE_KEYS
from tests.memscan import Marker
from tests.test_coredump import _gcore, masked_child, needs_gcore


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("secret-file-keys")
    made = run_python(MAKE_KEYS, str(keys))
    assert made.returncode == 0, made.stderr
    return keys


def memfd_mappings() -> list[int]:
    """Start addresses of this process's mappings of secret_file's in-memory files."""
    with open("/proc/self/maps", encoding="ascii") as maps:
        return [
            int(line.split("-", 1)[0], 16) for line in maps if "/memfd:securemem-secret" in line
        ]


def test_the_path_reads_back_the_secret_from_locked_pages_zeroed_afterwards() -> None:
    with Marker(100) as marker, SecureBytes(marker.view()) as secret:
        with securemem.secret_file(secret) as path:
            descriptor = int(path.rsplit("/", 1)[1])
            target = os.readlink(path)
            assert target.startswith("/memfd:securemem-secret"), target  # never on disk
            with open(path, "rb") as file, SecureBytes(200) as back:
                assert file.readinto(back.view()) == 100
                assert back[:100] == secret
            starts = memfd_mappings()
            assert len(starts) == 1
            mapping = _procfs.mapping_at(starts[0])
            assert mapping is not None and mapping.locked, "the file's pages are not locked"
            # Still open: the scan finds the file's mapping and the secret, nothing else.
            assert len(marker.scan().found) == 2
            # Read through the descriptor again after the block: the pages were zeroed.
            kept = os.dup(descriptor)
        try:
            assert os.pread(kept, 100, 0) == bytes(100)
        finally:
            os.close(kept)
        with pytest.raises(OSError):
            os.fstat(descriptor)  # the block closed its descriptor
        assert memfd_mappings() == []


def test_an_exception_in_the_block_still_zeroes_and_closes_the_file() -> None:
    with SecureBytes(b"k" * 64) as secret:
        with pytest.raises(RuntimeError), securemem.secret_file(secret) as path:
            descriptor = int(path.rsplit("/", 1)[1])
            kept = os.dup(descriptor)
            raise RuntimeError("the caller failed")
        try:
            assert os.pread(kept, 64, 0) == bytes(64)
        finally:
            os.close(kept)
        with pytest.raises(OSError):
            os.fstat(descriptor)
        assert memfd_mappings() == []


def test_the_files_mapping_is_locked_undumped_and_not_inherited() -> None:
    with SecureBytes(b"k" * 5000) as secret, securemem.secret_file(secret):
        starts = memfd_mappings()
        assert len(starts) == 1
        mapping = _procfs.mapping_at(starts[0])
        assert mapping is not None
        assert {"lo", "dd", "dc"} <= mapping.flags  # locked, not dumped, not copied on fork


# A child forked inside the block tries every way in it has: the inherited descriptor, the
# path, and the parent's mapping.
FORKED_INSIDE = """
import json, os
import securemem
from securemem import SecureBytes, _procfs
secret = SecureBytes(b"the secret in the file" * 8)
with securemem.secret_file(secret) as path:
    descriptor = int(path.rsplit("/", 1)[1])
    with open("/proc/self/maps", encoding="ascii") as maps:
        start = next(int(line.split("-")[0], 16) for line in maps if "/memfd:securemem" in line)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        seen = {}
        try:
            seen["descriptor"] = os.pread(descriptor, 64, 0).hex()
        except OSError as error:
            seen["descriptor"] = error.errno
        try:
            with open(path, "rb") as file:
                seen["path"] = file.read(64).hex()
        except OSError as error:
            seen["path"] = error.errno
        seen["mapped"] = _procfs.mapping_at(start) is not None
        os.write(write, json.dumps(seen).encode())
        os._exit(0)  # the block's exit in a child is tested below: here, no cleanup
    os.close(write)
    with os.fdopen(read) as pipe:
        child = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    with open(path, "rb") as file:
        child["parent_reads"] = file.read() == bytes(secret.view())

# A child that leaves the block itself must not touch the parent's file or crash.
with securemem.secret_file(secret) as path:
    pid = os.fork()
    if pid == 0:
        pass  # leaves the block: closes nothing of the parent's, writes nothing
    else:
        _, status = os.waitpid(pid, 0)
        child["child_left_the_block"] = os.waitstatus_to_exitcode(status)
        with open(path, "rb") as file:
            child["parent_still_reads"] = file.read() == bytes(secret.view())
if pid == 0:
    os._exit(0 if securemem._binding.lib.sm_secret_file_count() == 0 else 3)
print(json.dumps(child))
"""


def test_a_child_forked_inside_the_block_cannot_read_the_file() -> None:
    result = run_json(FORKED_INSIDE)
    assert result["descriptor"] == errno.EBADF, "the child read the file through its descriptor"
    assert result["path"] == errno.ENOENT, "the child opened the file through the path"
    assert result["mapped"] is False, "the child inherited the mapping of the file"
    assert result["parent_reads"] and result["parent_still_reads"]
    assert result["child_left_the_block"] == 0


HOLDS_A_SECRET_FILE = """
import sys
import securemem
from securemem import SecureBytes
masked = bytes.fromhex(sys.stdin.readline().strip())
secret = SecureBytes(len(masked))
for index, byte in enumerate(masked):
    secret[index] = byte ^ 0x5A
control = bytearray(byte ^ 0x5A for byte in bytes.fromhex(sys.stdin.readline().strip()))
with securemem.secret_file(secret) as path:
    print(path, flush=True)
    sys.stdin.readline()  # hold the file open until the dump is taken
"""


@needs_gcore
def test_a_core_dump_taken_inside_the_block_holds_no_copy_of_the_secret(
    tmp_path: Path,
) -> None:
    secret, control = os.urandom(48), os.urandom(48)
    with masked_child(HOLDS_A_SECRET_FILE, secret, control) as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b"/proc/self/fd/"), "the holder died"
        dump = _gcore(process.pid, tmp_path)
    assert control in dump, "the search cannot find ordinary memory: the test is broken"
    assert secret not in dump


def test_secret_file_refuses_what_is_not_an_open_securebytes() -> None:
    with (
        pytest.raises(TypeError, match="SecureBytes"),
        securemem.secret_file(b"key"),  # type: ignore[arg-type]
    ):
        pass
    closed = SecureBytes(b"key")
    closed.close()
    with pytest.raises(SecureBytesClosedError), securemem.secret_file(closed):
        pass


def test_an_empty_secret_is_an_empty_file() -> None:
    with SecureBytes(0) as empty, securemem.secret_file(empty) as path, open(path, "rb") as f:
        assert f.read() == b""


def test_ssl_handshake_with_a_key_loaded_through_secret_file(key_dir: Path) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with (
        SecureBytes.from_file(key_dir / "ed25519.pem") as key,
        securemem.secret_file(key) as path,
    ):
        server_context.load_cert_chain(key_dir / "ed25519.crt", path)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(key_dir / "ed25519.crt")
    server_socket, client_socket = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_socket, server_side=True) as tls:
                tls.sendall(tls.recv(5).upper())
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    server = threading.Thread(target=serve)
    server.start()
    with client_context.wrap_socket(client_socket, server_hostname="localhost") as tls:
        tls.sendall(b"hello")
        assert tls.recv(5) == b"HELLO"
        assert tls.version() == "TLSv1.3"
    server.join(10)
    assert not errors, errors


def test_paramiko_rsa_key_from_a_key_object_signs_what_the_file_key_verifies(
    key_dir: Path,
) -> None:
    paramiko = pytest.importorskip("paramiko")
    pytest.importorskip("cryptography")
    from securemem import crypto

    with SecureBytes.from_file(key_dir / "rsa.pem") as pem:
        key = paramiko.RSAKey(key=crypto.load_private_key(pem))
    signature = key.sign_ssh_data(b"message", "rsa-sha2-256")
    reference = paramiko.RSAKey.from_private_key_file(str(key_dir / "rsa.pem"))
    signature.rewind()
    assert reference.verify_ssh_sig(b"message", signature)
    assert key.get_fingerprint() == reference.get_fingerprint()


def test_paramiko_ecdsa_key_from_a_key_object_signs_what_its_public_key_verifies(
    key_dir: Path,
) -> None:
    paramiko = pytest.importorskip("paramiko")
    pytest.importorskip("cryptography")
    from securemem import crypto

    with SecureBytes.from_file(key_dir / "ec.pem") as pem:
        private = crypto.load_private_key(pem)
    key = paramiko.ECDSAKey(vals=(private, private.public_key()))
    signature = key.sign_ssh_data(b"message")
    public = paramiko.ECDSAKey(data=key.asbytes())
    signature.rewind()
    assert not public.can_sign() and public.verify_ssh_sig(b"message", signature)
