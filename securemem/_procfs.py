"""Reading what Linux says about this process's memory (/proc/self/...).

Used by the doctor and the tests to check, from the kernel's side, that a page
really is locked (``Locked:`` and the ``lo`` flag), not dumped (``dd``) and
wiped on fork (``wf``). Returns None where /proc is absent (other systems).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mapping:
    """One entry of /proc/PID/smaps."""

    start: int
    end: int
    rss_bytes: int
    locked_bytes: int
    flags: frozenset[str]

    @property
    def locked(self) -> bool:
        """True when the whole mapping is mlocked (VmFlags ``lo``)."""
        return "lo" in self.flags


def _kib(line: str) -> int:
    return int(line.split()[1]) * 1024


def mappings(pid: int | str = "self") -> list[Mapping] | None:
    """Every mapping of a process, or None where /proc/PID/smaps cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps", encoding="ascii", errors="replace") as smaps:
            text = smaps.read()
    except OSError:
        return None
    result: list[Mapping] = []
    start = end = rss = locked = 0
    for line in text.splitlines():
        head = line.split(" ", 1)[0]
        if "-" in head and not head.endswith(":"):
            low, high = head.split("-")
            start, end, rss, locked = int(low, 16), int(high, 16), 0, 0
        elif head == "Rss:":
            rss = _kib(line)
        elif head == "Locked:":
            locked = _kib(line)
        elif head == "VmFlags:":
            flags = frozenset(line.split()[1:])
            result.append(Mapping(start, end, rss, locked, flags))
    return result


def mapping_at(address: int, pid: int | str = "self") -> Mapping | None:
    """The mapping that contains ``address`` (munlock splits mappings, so look it up)."""
    for mapping in mappings(pid) or ():
        if mapping.start <= address < mapping.end:
            return mapping
    return None


def status_line(name: str, pid: int | str = "self") -> str | None:
    """The ``name:`` line of /proc/PID/status, or None where there is none to read."""
    try:
        # errors="replace": the Name: line is the process's own, in any encoding.
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(f"{name}:"):
                    return line
    except OSError:
        return None
    return None


def process_locked_bytes(pid: int | str = "self") -> int | None:
    """VmLck from /proc/PID/status: the bytes this process has locked."""
    line = status_line("VmLck", pid)
    return None if line is None else _kib(line)


def address_ranges(pid: int | str = "self") -> list[tuple[int, int]] | None:
    """(start, end) of every mapping in /proc/PID/maps, or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return None
    ranges = []
    for line in lines:
        low, high = line.split(" ", 1)[0].split("-")
        ranges.append((int(low, 16), int(high, 16)))
    return ranges


def read_text(path: str) -> str | None:
    """A whole file under /proc (``sys/kernel/core_pattern``, ``swaps``), or None."""
    try:
        with open(f"/proc/{path}", encoding="utf-8") as file:
            return file.read()
    except OSError:
        return None

