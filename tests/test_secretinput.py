"""securemem.getpass through a real pty, and SecureBytes.from_file, with memory scans."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import termios
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import securemem
from securemem import InsecureFileWarning, SecureBytes
from securemem._secretinput import IUTF8
from tests.conftest import REPO, child_env, run_python
from tests.memscan import Marker, assert_only_in_and_gone_after_close

PROMPT = "Secret please: "

# The child makes the pty its controlling terminal (as login/sshd do: a new session opening a
# terminal acquires it), so /dev/tty is the pty. It reports through a pipe, not the pty.
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    os.close(os.open(os.ttyname(0), os.O_RDWR))
    # Ctrl-C must raise KeyboardInterrupt as in an interactive program, even when this
    # run inherited SIGINT ignored (a job started in the background with `&` does,
    # and Python then installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import securemem
    from tests.memscan import Marker
    report = os.fdopen(int(sys.argv[1]), "w")
    marker = Marker(int(sys.argv[3]), seed=int(sys.argv[2]))
    result = {}
    try:
        secret = securemem.getpass(sys.argv[5], max_size=int(sys.argv[4]))
    except BaseException as error:
        result["error"] = type(error).__name__
    else:
        result["length"] = len(secret)
        result["matches"] = secret == marker.view()
        secret.close()
        result["found"] = marker.scan().describe()
    report.write(json.dumps(result))
    report.close()
    """
)


class PtyChild:
    """A Python child whose controlling terminal is a fresh pty we hold the master of."""

    def __init__(self, marker: Marker, max_size: int = 1024) -> None:
        self.master, self.slave = os.openpty()
        read_end, self._write_end = os.pipe()
        self._report = os.fdopen(read_end)
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(self._write_end), str(marker.seed),
             str(marker.length), str(max_size), PROMPT],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            pass_fds=(self._write_end,),
            start_new_session=True,
            cwd=REPO,
            env=child_env(),
        )
        os.close(self._write_end)
        self.output = b""

    def wait_for(self, text: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out waiting for {text!r}; got {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.output += os.read(self.master, 4096)
                except OSError:
                    break

    def lflag(self) -> int:
        return int(termios.tcgetattr(self.slave)[3])

    def type(self, data: bytes | memoryview) -> None:
        os.write(self.master, data)

    def result(self, timeout: float = 30) -> dict[str, object]:
        # Bounded: a child stuck in getpass must fail the test, not hang the run.
        ready, _, _ = select.select([self._report], [], [], timeout)
        if not ready:
            self.process.kill()
            pytest.fail(f"the child did not finish in {timeout} s; its terminal showed "
                        f"{self.output!r}")
        report = self._report.read()
        self.process.wait(timeout=timeout)
        # Drain what the child echoed (it must not have echoed the secret).
        while select.select([self.master], [], [], 0.1)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        assert report, f"child reported nothing; its terminal showed {self.output!r}"
        return json.loads(report)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._report.close()
        os.close(self.master)
        os.close(self.slave)

    def __enter__(self) -> PtyChild:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture
def marker() -> Iterator[Marker]:
    with Marker(24) as fresh:
        yield fresh


def test_getpass_reads_from_the_terminal_with_echo_off_and_leaves_no_copy(
    marker: Marker,
) -> None:
    with PtyChild(marker) as child:
        echo_before = child.lflag() & termios.ECHO
        child.wait_for(PROMPT.encode())
        during = child.lflag()
        assert not during & termios.ECHO, "echo is on while the password is typed"
        assert not during & termios.ICANON
        # Some editing on the way: a typo erased with DEL, half a try killed with Ctrl-U.
        child.type(b"x\x7f")
        child.type(marker.view()[:10])
        child.type(b"\x15")
        child.type(marker.view())
        child.type(b"\r")
        result = child.result()
        assert result == {"length": marker.length, "matches": True, "found": ""}, result
        assert child.lflag() & termios.ECHO == echo_before, "echo was not restored"
        assert child.lflag() & termios.ICANON
        # Nothing the user typed was echoed back to the terminal.
        assert child.output.count(PROMPT.encode()) == 1
        assert bytes(marker.view()[:4]) not in child.output


def test_getpass_restores_the_terminal_after_ctrl_c(marker: Marker) -> None:
    with PtyChild(marker) as child:
        child.wait_for(PROMPT.encode())
        assert not child.lflag() & termios.ECHO
        child.type(marker.view()[:5])
        child.type(b"\x03")  # the line discipline turns it into SIGINT for the child
        assert child.result() == {"error": "KeyboardInterrupt"}
        assert child.lflag() & termios.ECHO, "Ctrl-C left the terminal with echo off"
        assert child.lflag() & termios.ICANON


def test_getpass_ctrl_d_on_an_empty_line_is_eof(marker: Marker) -> None:
    with PtyChild(marker) as child:
        child.wait_for(PROMPT.encode())
        child.type(b"\x04")
        assert child.result() == {"error": "EOFError"}
        assert child.lflag() & termios.ECHO
        assert child.lflag() & termios.ICANON


def test_getpass_backspace_erases_a_whole_utf8_character() -> None:
    with Marker(8) as marker, PtyChild(marker) as child:
        attributes = termios.tcgetattr(child.slave)
        attributes[0] |= IUTF8
        termios.tcsetattr(child.slave, termios.TCSANOW, attributes)
        child.wait_for(PROMPT.encode())
        child.type(marker.view()[:4])
        child.type("é".encode() + b"\x7f")  # two bytes, one character, one backspace
        child.type(marker.view()[4:])
        child.type(b"\n")
        result = child.result()
        assert result == {"length": marker.length, "matches": True, "found": ""}, result


def test_getpass_refuses_more_than_max_size(marker: Marker) -> None:
    with PtyChild(marker, max_size=8) as child:
        child.wait_for(PROMPT.encode())
        child.type(marker.view())
        child.type(b"\r")
        assert child.result() == {"error": "ValueError"}
        assert child.lflag() & termios.ECHO
        assert child.lflag() & termios.ICANON


def test_getpass_accepts_exactly_max_size_bytes(marker: Marker) -> None:
    with PtyChild(marker, max_size=marker.length) as child:
        child.wait_for(PROMPT.encode())
        child.type(marker.view())
        child.type(b"\r")
        assert child.result() == {"length": marker.length, "matches": True, "found": ""}


def test_random_is_written_only_into_locked_memory() -> None:
    assert_only_in_and_gone_after_close(SecureBytes.random(32))


def test_getpass_without_a_terminal_warns_and_reads_stdin(marker: Marker) -> None:
    code = """
        import json, sys, warnings
        import securemem
        from tests.memscan import Marker
        marker = Marker(int(sys.argv[2]), seed=int(sys.argv[1]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            secret = securemem.getpass()
        matches = secret == marker.view()
        secret.close()
        print(json.dumps({"warnings": [w.category.__name__ for w in caught],
                          "matches": matches, "found": marker.scan().describe()}))
        """
    # A new session has no controlling terminal: opening /dev/tty fails, as under cron.
    process = run_python(
        code,
        str(marker.seed),
        str(marker.length),
        stdin=bytes(marker.view()).decode() + "\nnext line\n",
        new_session=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout) == {
        "warnings": ["GetPassWarning"],
        "matches": True,
        "found": "",
    }
    assert "Password: " in process.stderr


def test_getpass_rejects_a_bad_max_size() -> None:
    with pytest.raises(ValueError, match="max_size"):
        securemem.getpass(max_size=0)
    with pytest.raises(TypeError, match="max_size"):
        securemem.getpass(max_size="10")  # type: ignore[arg-type]


# -- files ------------------------------------------------------------------------------------


def write_file(path: Path, data: bytes | memoryview, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)  # a memoryview of a marker: no bytes copy in this process
    finally:
        os.close(fd)
    os.chmod(path, mode)
    return path


def test_from_file_reads_straight_into_locked_memory(tmp_path: Path, marker: Marker) -> None:
    path = write_file(tmp_path / "key", marker.view())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mode 600: no warning
        secret = SecureBytes.from_file(path)
    assert len(secret) == marker.length
    assert secret == marker.view()
    secret.close()
    result = marker.scan()
    assert result.found == [], result.describe()


def test_from_file_strips_one_newline_only_when_asked(tmp_path: Path) -> None:
    path = write_file(tmp_path / "password", b"hunter2\r\n")
    with SecureBytes.from_file(path, strip_newline=True) as secret:
        assert secret == b"hunter2"
    with SecureBytes.from_file(path) as secret:
        assert secret == b"hunter2\r\n"
    path = write_file(tmp_path / "password", b"x\n\n")
    with SecureBytes.from_file(path, strip_newline=True) as secret:
        assert secret == b"x\n"


def test_from_file_warns_when_others_may_read_the_file(tmp_path: Path) -> None:
    path = write_file(tmp_path / "key", b"k" * 32, mode=0o644)
    with pytest.warns(InsecureFileWarning, match="chmod 600") as caught:
        SecureBytes.from_file(path).close()
    assert caught[0].filename == __file__  # points at the caller, not at securemem
    assert "kkkk" not in str(caught[0].message)


def test_from_file_refuses_a_file_over_max_size(tmp_path: Path) -> None:
    path = write_file(tmp_path / "big", b"s" * 100)
    with pytest.raises(ValueError, match=r"100 bytes, more than max_size=64") as error:
        SecureBytes.from_file(path, max_size=64)
    assert "sss" not in str(error.value)
    with SecureBytes.from_file(path, max_size=100) as secret:
        assert len(secret) == 100


def test_from_file_reads_a_pipe_larger_than_its_first_buffer() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes: the 4096-byte start buffer must grow
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
        os.close(write_end)
        with SecureBytes.from_file(f"/proc/self/fd/{read_end}") as secret:
            assert secret == data
    finally:
        os.close(read_end)


def test_from_file_stops_a_pipe_at_max_size() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"p" * 5000)
        os.close(write_end)
        with pytest.raises(ValueError, match="more than max_size=4500"):
            SecureBytes.from_file(f"/proc/self/fd/{read_end}", max_size=4500)
    finally:
        os.close(read_end)


def test_from_file_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a directory"):
        SecureBytes.from_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        SecureBytes.from_file(tmp_path / "missing")
    path = write_file(tmp_path / "empty", b"")
    with SecureBytes.from_file(path) as secret:
        assert len(secret) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
