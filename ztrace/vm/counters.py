"""Guest-side snapshot of the kernel's zram/zswap/zsmalloc counters, as JSON.

Runs inside the VM (stdlib only, so it works before the rest of ztrace imports):

    python3 /mnt/src/ztrace/vm/counters.py LABEL            # -> $ZTRACE_VM_OUT/counters/LABEL.json
    python3 /mnt/src/ztrace/vm/counters.py --inventory      # -> $ZTRACE_VM_OUT/inventory.json

Scenarios take snapshots before and after each phase so tests can compare a capture's event
counts with the kernel's own deltas. The inventory lists what a probe can attach to on this
kernel: symbols, ftrace-able functions, BTF, tracepoints, bcc version, kernel config.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _load_zram_stat() -> Any:
    """ztrace/format/zram_stat.py, the one definition of the sysfs stat fields, loaded by
    its path: importing it as ``ztrace.format.zram_stat`` would run ``ztrace.format``'s
    package imports (pyarrow), which this stdlib-only script must not need."""
    path = Path(__file__).resolve().parents[1] / "format" / "zram_stat.py"
    spec = importlib.util.spec_from_file_location("_ztrace_zram_stat", path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_ZRAM_STAT = _load_zram_stat()
MM_STAT: tuple[str, ...] = _ZRAM_STAT.MM_STAT
IO_STAT: tuple[str, ...] = _ZRAM_STAT.IO_STAT
BD_STAT: tuple[str, ...] = _ZRAM_STAT.BD_STAT
BLOCK_STAT: tuple[str, ...] = _ZRAM_STAT.BLOCK_STAT
VMSTAT_PREFIXES = ("zswp", "pswp", "swap_ra", "pgmajfault", "pgpgin", "pgpgout")
MEMINFO_KEYS = ("MemTotal", "MemFree", "SwapTotal", "SwapFree", "Zswap", "Zswapped")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _num(s: str) -> int | str:
    try:
        return int(s)
    except ValueError:
        return s


def _fields(text: str | None, names: tuple[str, ...]) -> dict[str, int | str]:
    if text is None:
        return {}
    vals = text.split()
    return {(names[i] if i < len(names) else f"f{i}"): _num(v) for i, v in enumerate(vals)}


def zram() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dev in sorted(glob.glob("/sys/block/zram*")):
        d = Path(dev)
        algo = _read(d / "comp_algorithm") or ""
        m = re.search(r"\[(\S+)\]", algo)
        out[d.name] = {
            "disksize": _num(_read(d / "disksize") or "0"),
            "comp_algorithm": m.group(1) if m else algo,
            "mm_stat": _fields(_read(d / "mm_stat"), MM_STAT),
            "io_stat": _fields(_read(d / "io_stat"), IO_STAT),
            "bd_stat": _fields(_read(d / "bd_stat"), BD_STAT),
            "stat": _fields(_read(d / "stat"), BLOCK_STAT),
        }
    return out


def vmstat() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read("/proc/vmstat") or "").splitlines():
        k, _, v = line.partition(" ")
        if k.startswith(VMSTAT_PREFIXES):
            out[k] = int(v)
    return out


def meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        k, _, v = line.partition(":")
        if k in MEMINFO_KEYS:
            out[k + "_kB"] = int(v.split()[0])
    return out


def dir_values(pattern: str) -> dict[str, int | str]:
    out: dict[str, int | str] = {}
    for f in sorted(glob.glob(pattern)):
        v = _read(f)
        if v is not None and os.path.isfile(f):
            out[os.path.basename(f)] = _num(v)
    return out


def cgroups() -> dict[str, Any]:
    # Scenarios put workloads in /sys/fs/cgroup/ztrace-*; memory.stat has per-cgroup zswap counts.
    out: dict[str, Any] = {}
    for cg in sorted(glob.glob("/sys/fs/cgroup/ztrace*")):
        stat = {}
        for line in (_read(f"{cg}/memory.stat") or "").splitlines():
            k, _, v = line.partition(" ")
            if k.startswith(("zswp", "zswap", "swap", "pswp", "file", "anon", "pgmajfault")):
                stat[k] = _num(v)
        out[os.path.basename(cg)] = {
            "memory.max": _read(f"{cg}/memory.max"),
            "memory.swap.current": _num(_read(f"{cg}/memory.swap.current") or "0"),
            "memory.zswap.current": _read(f"{cg}/memory.zswap.current"),
            "memory.events": dict(
                (ln.split()[0], int(ln.split()[1]))
                for ln in (_read(f"{cg}/memory.events") or "").splitlines()
            ),
            "memory.stat": stat,
        }
    return out


def zsmalloc_pools() -> dict[str, str]:
    # debugfs per-pool class table (CONFIG_ZSMALLOC_STAT): objects and pages per size class.
    return {
        os.path.basename(os.path.dirname(f)): _read(f) or ""
        for f in sorted(glob.glob("/sys/kernel/debug/zsmalloc/*/classes"))
    }


def snapshot(label: str) -> dict[str, Any]:
    return {
        "label": label,
        "uptime_s": float((_read("/proc/uptime") or "0").split()[0]),
        "wall_time": time.time(),
        "uname_r": platform.release(),
        "zram": zram(),
        "vmstat": vmstat(),
        "meminfo": meminfo(),
        "zswap_debugfs": dir_values("/sys/kernel/debug/zswap/*"),
        "zswap_params": dir_values("/sys/module/zswap/parameters/*"),
        "swaps": (_read("/proc/swaps") or "").splitlines()[1:],
        "cgroups": cgroups(),
        "zsmalloc_classes": zsmalloc_pools(),
    }


def _grep_lines(path: str, pattern: str) -> list[str]:
    rx = re.compile(pattern)
    try:
        with open(path) as f:
            return [ln.rstrip("\n") for ln in f if rx.search(ln)]
    except OSError:
        return []


def inventory() -> dict[str, Any]:
    rel = platform.release()
    tracing = "/sys/kernel/tracing"
    syms = _grep_lines("/proc/kallsyms", r" (zs_|zswap|zpool_|zram_|__zs_|zs\w*lock)")
    bcc: dict[str, Any] = {}
    try:
        import bcc as _bcc  # type: ignore[import-not-found]

        bcc["version"] = getattr(_bcc, "__version__", "?")
        bcc["support_kfunc"] = bool(_bcc.BPF.support_kfunc())
        bcc["support_raw_tracepoint"] = bool(_bcc.BPF.support_raw_tracepoint())
    except Exception as exc:  # inventory must not fail on a broken bcc: that is what it reports
        bcc["error"] = repr(exc)
    try:
        bpftool = subprocess.run(
            ["bpftool", "version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        bpftool = repr(exc)
    events = sorted(
        os.path.relpath(p, f"{tracing}/events")
        for pat in ("lock/*", "zsmalloc*/*", "zswap*/*", "zram*/*", "kmem/*", "vmscan/mm_vmscan_w*")
        for p in glob.glob(f"{tracing}/events/{pat}")
        if os.path.isdir(p)
    )
    return {
        "uname_r": rel,
        "uname_v": platform.version(),
        "kallsyms": syms,
        "available_filter_functions": _grep_lines(
            f"{tracing}/available_filter_functions", r"^(zs_|zswap|zpool|zram|__zs_)"
        ),
        "btf": sorted(os.path.basename(p) for p in glob.glob("/sys/kernel/btf/*")),
        "tracepoints": events,
        "lock_contention_format": _read(f"{tracing}/events/lock/contention_begin/format"),
        "bcc": bcc,
        "bpftool": bpftool,
        "kernel_config": _grep_lines(
            f"/boot/config-{rel}",
            r"^(# )?CONFIG_(ZSMALLOC|ZSWAP|ZRAM|ZPOOL|ZBUD|Z3FOLD|BPF|KPROBE|FTRACE|FUNCTION_TRACER"
            r"|DYNAMIC_FTRACE|DEBUG_INFO_BTF|LOCKDEP|LOCK_STAT|FPROBE|CGROUP_BPF|MEMCG)",
        ),
        "modules": sorted(
            ln.split()[0] for ln in (_read("/proc/modules") or "").splitlines() if ln
        ),
        "zswap_params": dir_values("/sys/module/zswap/parameters/*"),
    }


def pool_layout(btf_dump: str) -> dict[str, Any]:
    """Members of ``struct zs_pool`` (byte offset, type name) from ``bpftool btf dump`` text.

    The host uses the lock members' offsets to name a contended lock by its address: the pool
    lock is ``pool + offsetof(struct zs_pool, lock)`` (6.1: a spinlock taken for everything;
    6.9+: an rwlock for migration), anything else on a zsmalloc stack is a class or zspage lock.
    """
    types: dict[str, str] = {}
    members: dict[str, tuple[int, str]] = {}
    size = None
    in_pool = False
    for ln in btf_dump.splitlines():
        m = re.match(r"\[(\d+)\] (\w+) '([^']*)'(?: size=(\d+))?", ln)
        if m:
            types[m[1]] = m[3]
            in_pool = m[2] == "STRUCT" and m[3] == "zs_pool"
            if in_pool:
                size = int(m[4]) if m[4] else None
            continue
        if in_pool:
            mm = re.match(r"\s+'(\w+)' type_id=(\d+) bits_offset=(\d+)", ln)
            if mm:
                members[mm[1]] = (int(mm[3]) // 8, mm[2])
    if not members:
        raise ValueError("no struct zs_pool in the BTF dump")
    return {
        "size": size,
        "members": {k: {"offset": off, "type": types.get(t, t)} for k, (off, t) in members.items()},
    }


def main(argv: list[str]) -> int:
    out = Path(os.environ.get("ZTRACE_VM_OUT", "/mnt/out"))
    if argv[:1] == ["--pool-layout"] and len(argv) == 2:
        try:
            data = pool_layout(Path(argv[1]).read_text())
        except (OSError, ValueError) as exc:
            print(f"counters.py: {argv[1]}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(data, indent=1, sort_keys=True))
        return 0
    if argv[:1] == ["--inventory"]:
        path, data = out / "inventory.json", inventory()
    elif len(argv) == 1 and re.fullmatch(r"[\w.-]+", argv[0]):
        path, data = out / "counters" / f"{argv[0]}.json", snapshot(argv[0])
    else:
        print("usage: counters.py LABEL | --inventory | --pool-layout BTF_DUMP", file=sys.stderr)
        return 2
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
