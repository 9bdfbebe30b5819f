"""Targets (issue 14) as ratios from one run, and the Markdown table and PNG chart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

LABELS = {
    "securemem": "securemem",
    "libsodium": "libsodium sodium_malloc",
    "openssl": "OpenSSL secure heap",
    "naive": "mmap+mlock per secret",
    "bytearray": "bytearray (no protection)",
}
COLORS = {
    "securemem": "#2a7ab0",
    "libsodium": "#d1495b",
    "openssl": "#edae49",
    "naive": "#66a182",
    "bytearray": "#999999",
}


def _ns(cell: dict[str, Any] | None) -> float | None:
    if not cell or "best_ns" not in cell:
        return None
    return float(cell["best_ns"])


def _target(
    name: str, measured: float | None, target: float, at_least: bool, unit: str, why: str = ""
) -> dict[str, Any]:
    """One target: met or missed, and by how much (a factor, >= 1 means met)."""
    factor = None
    if measured is None or measured <= 0:
        measured, why = None, why or "not measured"
    else:
        factor = measured / target if at_least else target / measured
    return {
        "target": name,
        "measured": measured,
        "goal": target,
        "at_least": at_least,
        "unit": unit,
        "met": None if factor is None else factor >= 1,
        "factor": factor,
        "note": why,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14's targets, each computed from this run's own numbers."""
    trip = {name: _ns(row.get("32")) for name, row in results["round_trip"].items()}
    page = {name: _ns(row.get("4096")) for name, row in results["round_trip"].items()}

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    found = [
        _target(
            f"32 B round trip: {label}", ratio(trip[top], trip[bottom]), goal, at_least, "x", why
        )
        for label, top, bottom, goal, at_least, why in (
            ("securemem time / bytearray time", "securemem", "bytearray", 1.5, False, ""),
            ("OpenSSL time / securemem time", "openssl", "securemem", 5, True, ""),
            ("libsodium time / securemem time", "libsodium", "securemem", 30, True, ""),
        )
    ]
    access = results["access"]
    found += [
        _target(
            "copy-in: SecureBytes(b32) time / bytes(b32) time",
            ratio(_ns(access["copy_in"]["securemem"]), _ns(access["copy_in"]["bytes"])),
            3,
            False,
            "x",
        ),
        _target(
            "s[i] time / bytearray[i] time",
            ratio(_ns(access["getitem"]["securemem"]), _ns(access["getitem"]["bytearray"])),
            2,
            False,
            "x",
        ),
        _target(
            "4 KiB round trip: securemem time / bytearray(4096) time",
            ratio(page["securemem"], page["bytearray"]),
            3,
            False,
            "x",
        ),
        _target(
            "32 B round trips, 2 threads / 1 thread: total throughput",
            results["threads"]["securemem"]["speedup"],
            0.8,
            True,
            "x",
            # The GIL's own cost on this machine in this run: a loop that takes no lock
            # at all. Under load, handing the GIL over waits for the OS to run the other
            # thread, and that alone can cost more than the target allows.
            f"bytearray's own 2 / 1 in this run: {results['threads']['bytearray']['speedup']:.2f}x",
        ),
    ]
    found.append(_enclave_target(results.get("enclave")))
    density = results["density"]["securemem"]
    for limit, goal, label in ((64 << 10, 1_024, "64 KiB"), (8 << 20, 131_072, "8 MiB")):
        cell = density.get(str(limit))
        held = cell.get("held") if cell else None
        found.append(
            _target(
                f"live 64 B secrets under RLIMIT_MEMLOCK {label}",
                held,
                goal,
                True,
                "secrets",
                "" if cell else "skipped in --quick",
            )
        )
    scale = results["scale"]["securemem"]
    low, high = (int(key) for key in scale)
    found.append(
        _target(
            f"round trip with {high:,} live / with {low:,} live",
            ratio(_ns(scale[str(high)]), _ns(scale[str(low)])),
            1.5,
            False,
            "x",
            "" if high >= 1_000_000 else "--quick: 10,000 live, not 1,000,000",
        )
    )
    growth = results["growth"]
    floor = growth.get("floor")
    off, on = growth["off"], growth["on"]
    # Growth is an allocation that needed memory the arena was not using (the first on a
    # fresh page: without prefetch the allocating thread locks it, or maps a region). The
    # p99 of all allocations is shown beside it: half of them reuse a page and grow nothing,
    # with or without prefetch, and their tail is the machine's.
    found.append(
        _target(
            "growth p99 latency (allocations that grew the arena): prefetch off / on",
            ratio(off["growing_p99_us"], on["growing_p99_us"]),
            5,
            True,
            "x",
            (
                f"growth p99 {off['growing_p99_us']:.1f} us off, "
                f"{on['growing_p99_us']:.1f} us on; all allocations: p99 "
                f"{off['p99_us']:.1f} us off, {on['p99_us']:.1f} us on "
                f"({off['p99_us'] / on['p99_us']:.2f}x), floor p99 "
                f"{floor['p99_us']:.1f} us; mapping a region: mean "
                f"{off['mean_growth_us']:.1f} us off, {on['mean_growth_us']:.1f} us on"
            )
            if floor
            else "",
        )
    )
    # Kept from issue 6: against memset of the same locked pages through the same kind of
    # call, the one difference left is the wipe itself. Median of back-to-back pairs.
    found.append(
        _target(
            "wipe throughput / memset throughput (same pages)",
            results["wipe"]["ratio_to_memset_same_pages"],
            0.9,
            True,
            "x",
            "issue 6",
        )
    )
    key_load = results.get("key_load")
    for protection in ("plain", "passphrase"):
        found.append(
            _target(
                f"OpenSSH RSA-{key_load['bits'] if key_load else 3072} load ({protection}): "
                "securemem time / cryptography's load_ssh_private_key time",
                key_load[protection]["ratio"] if key_load else None,
                1.5,
                False,
                "x",
                "issue 22",
            )
        )
    return found


def _enclave_target(enclave: dict[str, Any] | None) -> dict[str, Any]:
    """Issue 22: an enclave open + close against one ChaCha20-Poly1305 build + decrypt."""
    times = enclave["times"] if enclave else {}
    opened = _ns(times.get("enclave_open_close"))
    floor = _ns(times.get("chacha20poly1305_build_decrypt"))
    measured, why = None, ""
    if opened is not None and floor:
        measured = opened / floor
        why = f"aim: 2x; {opened / 1000:.2f} us / {floor / 1000:.2f} us"
    return _target(
        "enclave open+close / ChaCha20-Poly1305 build+decrypt 32 B",
        measured,
        3,
        False,
        "x",
        why,
    )


def _status(item: dict[str, Any]) -> str:
    if item["met"] is None:
        return "n/a"
    factor = item["factor"]
    if item["met"]:
        return f"**met** ({factor:.2f}x margin)"
    return f"**missed** by {1 / factor:.2f}x"


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "secrets":
        return f"{value:,.0f}"
    return f"{value:.2f}x"


def _cell_ns(cell: dict[str, Any] | None) -> str:
    value = _ns(cell)
    if value is None:
        return "n/a" if not cell else "error"
    if value >= 10_000_000:
        return f"{value / 1e6:,.0f} ms"
    if value >= 10_000:
        return f"{value / 1000:,.0f} us"
    if value >= 1000:
        return f"{value / 1000:.2f} us"
    return f"{value:.0f} ns"


def _size(size: str) -> str:
    n = int(size)
    if n >= 1 << 20:
        return f"{n >> 20} MiB"
    return f"{n >> 10} KiB" if n >= 1024 else f"{n} B"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    heap = m["openssl_secure_heap"]
    lines = [
        "# securemem benchmarks" + (" (--quick: rough numbers)" if results["quick"] else ""),
        "",
        f"{m['date']}; {m['cpu']} ({m['cpus']} CPUs); {m['kernel']}; {m['python']}; "
        f"libsodium {m['libsodium']}; {m['openssl']} (secure heap "
        + " and ".join(f"{int(size) >> 20} MiB" for size in heap)
        + (", locked" if all(cell["locked"] for cell in heap.values()) else ", NOT locked")
        + "); "
        f"CAP_IPC_LOCK {'held' if m['cap_ipc_lock'] else 'not held'} by the main process; "
        f"load average {m.get('load_average', float('nan')):.1f} at the start. "
        f"All systems called through cffi from the same Python process.",
        "",
        "## Targets (issue 14), as ratios from this run",
        "",
        "| target | goal | measured | status |",
        "|---|---|---|---|",
    ]
    for item in results["targets"]:
        goal = ("at least " if item["at_least"] else "at most ") + _num(item["goal"], item["unit"])
        status = _status(item) + (f" ({item['note']})" if item["note"] else "")
        lines.append(
            f"| {item['target']} | {goal} | {_num(item['measured'], item['unit'])} | {status} |"
        )
    trip = results["round_trip"]
    sizes = list(next(iter(trip.values())))
    lines += [
        "",
        "## 1. Create + close round trip (best batch; lower is better)",
        "",
        "| system | " + " | ".join(_size(s) for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name, row in trip.items():
        lines.append(
            f"| {LABELS[name]} | " + " | ".join(_cell_ns(row.get(s)) for s in sizes) + " |"
        )
    density = results["density"]
    limits = sorted({int(limit) for row in density.values() for limit in row})
    lines += [
        "",
        "## 2. Density: live 64-byte secrets held locked, unprivileged (no CAP_IPC_LOCK)",
        "",
        "| system | "
        + " | ".join(f"RLIMIT_MEMLOCK {_size(str(x))}" for x in limits)
        + " | how counted |",
        "|---|" + "---:|" * len(limits) + "---|",
    ]
    for name, row in density.items():
        cells = []
        how = ""
        for limit in limits:
            cell = row.get(str(limit), {})
            held = cell.get("held")
            cells.append("error" if held is None else f"{held:,}")
            how = cell.get("how", how)
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + f" | {how} |")
    lines.append(
        "| bytearray (no protection) | " + " | ".join("0" for _ in limits) + " | never locked |"
    )
    scale = results["scale"]
    counts = list(next(iter(scale.values())))
    lines += [
        "",
        "## 3. Scale: 32-byte round trip with many secrets alive",
        "",
        "| system | " + " | ".join(f"{int(c):,} live" for c in counts) + " | ratio |",
        "|---|" + "---:|" * (len(counts) + 1),
    ]
    notes = []
    for name, row in scale.items():
        first, last = _ns(row[counts[0]]), _ns(row[counts[-1]])
        ratio = f"{last / first:.2f}x" if first and last else "n/a"
        lines.append(
            f"| {LABELS[name]} | " + " | ".join(_cell_ns(row[c]) for c in counts) + f" | {ratio} |"
        )
        notes += [f"{LABELS[name]}: {row[c]['error']}" for c in counts if "error" in row[c]]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    wipe = results["wipe"]
    memset = wipe["memset_cffi_same_pages"]
    lines += [
        "",
        f"## 4. Wipe throughput on {wipe['bytes'] >> 20} MiB (best of several; GB/s)",
        "",
        "The target uses the median over back-to-back pairs of securemem's wipe and memset of "
        f"the same pages: {wipe['ratio_to_memset_same_pages']:.2f}.",
        "",
        "| method | GB/s | / memset, same pages |",
        "|---|---:|---:|",
    ]
    names = {
        "securemem_wipe": "securemem `SecureBytes.wipe()` (explicit_bzero)",
        "memset_cffi_same_pages": "libc memset via cffi, same locked pages",
        "memset_cffi_bytearray": "libc memset via cffi, bytearray",
        "memset_ctypes_bytearray": "ctypes.memset, bytearray",
        "sodium_memzero_same_pages": "sodium_memzero, same locked pages",
    }
    for key, label in names.items():
        if key in wipe:
            lines.append(f"| {label} | {wipe[key]:.1f} | {wipe[key] / memset:.2f} |")
    growth = results["growth"]
    lines += [
        "",
        f"## 5. Growth: latency of each allocation while fresh arenas grow "
        f"({growth['rounds']} x {growth['secrets']:,} secrets of {growth['size']} B, "
        f"{growth['gap_us']:.0f} us sleep between)",
        "",
        "| prefetch | p50 | p99 | max | p99 of those that grew the arena |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in ("off", "on", "floor"):
        if mode not in growth:
            continue
        row = growth[mode]
        label = "floor: a plain object of the same size" if mode == "floor" else mode
        p50, p99, worst = row["p50_us"], row["p99_us"], row["max_us"]
        grew = "-" if mode == "floor" else f"{row['growing_p99_us']:.1f} us"
        lines.append(f"| {label} | {p50:.1f} us | {p99:.1f} us | {worst:.0f} us | {grew} |")
    lines += [
        "",
        "## 6. Threads: 32-byte round trips per second, one thread versus two",
        "",
        "| system | 1 thread | 2 threads | 2 / 1 |",
        "|---|---:|---:|---:|",
    ]
    for name, row in results["threads"].items():
        lines.append(
            f"| {LABELS[name]} | {row['one_thread_ops_s']:,.0f}/s "
            f"| {row['two_threads_ops_s']:,.0f}/s | {row['speedup']:.2f}x |"
        )
    access = results["access"]
    lines += [
        "",
        f"## 7. Access: copy-in of {access['size']} B and s[i] (best batch; lower is better)",
        "",
        "| operation | securemem | floor | floor is | ratio |",
        "|---|---:|---:|---|---:|",
    ]
    for key, label, floor, floor_label in (
        ("copy_in", "`SecureBytes(b32)`, dropped", "bytes", "`bytes(b32)` of a bytearray"),
        ("getitem", "`s[5]`", "bytearray", "`bytearray[5]`"),
    ):
        mine, base = _ns(access[key]["securemem"]), _ns(access[key][floor])
        shown = f"{mine / base:.2f}x" if mine and base else "n/a"
        lines.append(
            f"| {label} | {_cell_ns(access[key]['securemem'])} | {_cell_ns(access[key][floor])} "
            f"| {floor_label} | {shown} |"
        )
    key_load = results.get("key_load")
    if key_load:
        lines += [
            "",
            f"## 8. Loading an OpenSSH RSA-{key_load['bits']} key (best of "
            f"{key_load['repeats']}, taking turns; lower is better)",
            "",
            "| file | securemem | cryptography's load_ssh_private_key | ratio |",
            "|---|---:|---:|---:|",
        ]
        for protection in ("plain", "passphrase"):
            cells = key_load[protection]
            lines.append(
                f"| {protection} | {_cell_ns(cells['securemem'])} "
                f"| {_cell_ns(cells['cryptography'])} | {cells['ratio']:.2f}x |"
            )
    lines += ["", f"Run took {results['seconds']} s.", ""]
    return "\n".join(lines)


def _grouped_bars(
    ax: Any,
    rows: dict[str, dict[str, Any]],
    keys: list[str],
    value: Callable[[dict[str, Any], str], float],
    ticks: list[str],
    ylabel: str,
    title: str,
) -> None:
    """One group of bars per key, one bar per system in each, on a log scale."""
    width = 0.8 / len(rows)
    for i, (name, row) in enumerate(rows.items()):
        ax.bar(
            [x + i * width for x in range(len(keys))],
            [value(row, key) for key in keys],
            width,
            label=LABELS[name],
            color=COLORS[name],
        )
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(keys))], ticks)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def _us(row: dict[str, Any], key: str) -> float:
    return (_ns(row.get(key)) or 0) / 1000


def chart(results: dict[str, Any], path: Path) -> None:
    """Four panels: round trip by size, density, scale, threads."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    trip = results["round_trip"]
    sizes = list(next(iter(trip.values())))
    ax = axes[0][0]
    _grouped_bars(
        ax,
        trip,
        sizes,
        _us,
        [_size(s) for s in sizes],
        "us per create + close (log)",
        "1. Round trip by secret size (lower is better)",
    )
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    ax.set_ylim(top=ax.get_ylim()[1] * 20)  # head room for the legend

    density = results["density"]
    limits = sorted({int(limit) for row in density.values() for limit in row})
    _grouped_bars(
        axes[0][1],
        density,
        [str(x) for x in limits],
        lambda row, key: max(row.get(key, {}).get("held") or 0, 0.5),
        [f"RLIMIT_MEMLOCK {_size(str(x))}" for x in limits],
        "live 64 B secrets, locked (log)",
        "2. Density, unprivileged (higher is better)",
    )

    scale = results["scale"]
    counts = list(next(iter(scale.values())))
    _grouped_bars(
        axes[1][0],
        scale,
        counts,
        _us,
        [f"{int(c):,} live" for c in counts],
        "us per 32 B round trip (log; missing = n/a)",
        "3. Scale (lower is better)",
    )

    ax = axes[1][1]
    thread_rows = results["threads"]
    names = list(thread_rows)
    for offset, key, label, color in (
        (-0.2, "one_thread_ops_s", "1 thread", "#2a7ab0"),
        (0.2, "two_threads_ops_s", "2 threads", "#edae49"),
    ):
        ax.bar(
            [x + offset for x in range(len(names))],
            [thread_rows[n][key] for n in names],
            0.4,
            label=label,
            color=color,
        )
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("32 B round trips per second (log)")
    ax.set_title("6. One thread versus two (higher is better)")
    ax.legend(fontsize=8)

    m = results["machine"]
    figure.suptitle(
        f"securemem benchmarks - {m['date']} - {m['cpu']} - {m['kernel']} - {m['python']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
