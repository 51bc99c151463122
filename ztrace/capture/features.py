"""What the running kernel offers each probe: detected, never assumed from the version alone.

Used by ``ztrace doctor`` (prints it) and by the loader (compiles in what is available).
Imports no bcc, so it runs anywhere, including as an unprivileged user.
"""

from __future__ import annotations

import bisect
import gzip
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ztrace.errors import CaptureError

Status = Literal["available", "fallback", "missing"]
PROBES: tuple[str, ...] = ("zsmalloc", "locks", "zswap")

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
#: capability bits (include/uapi/linux/capability.h)
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39

#: functions whose addresses (and sizes) capture uses or reports
ZS_SYMBOLS = (
    "zs_malloc",
    "zs_free",
    "zs_compact",
    "__zs_compact",
    "zs_page_migrate",
    "zs_map_object",
    "zs_obj_read_begin",
    "zs_obj_write",
    "zswap_store",
    "zswap_load",
    "zswap_invalidate",
    "zswap_frontswap_store",
    "zswap_frontswap_load",
    "zswap_frontswap_invalidate_page",
    "zswap_writeback_entry",
    "zram_free_page",
)


def parse_release(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class Kallsyms:
    """/proc/kallsyms as sorted arrays: name lookup, function ranges, and address → symbol."""

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        addrs: list[int] = []
        names: list[str] = []
        mods: list[str] = []
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 3 or parts[1] not in "tTwW":
                        continue
                    addrs.append(int(parts[0], 16))
                    names.append(parts[2])
                    mods.append(parts[3].strip("[]") if len(parts) > 3 else "")
        except OSError:
            pass
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        self.addrs = [addrs[i] for i in order]
        self.names = [names[i] for i in order]
        self.modules = [mods[i] for i in order]
        self._first: dict[str, int] = {}
        for i, n in enumerate(self.names):
            self._first.setdefault(n, i)
        #: addresses are all zero when kptr_restrict hides them from this user
        self.hidden = bool(self.addrs) and self.addrs[-1] == 0

    def __contains__(self, name: str) -> bool:
        return name in self._first

    def variant(self, name: str) -> str | None:
        """``name`` or its compiler-renamed copy (``name.isra.0``, ``name.constprop.0``)."""
        if name in self._first:
            return name
        for n in self._first:
            if n.startswith(name + ".") and not n.endswith(".cold"):
                return n
        return None

    def module_of(self, name: str) -> str:
        i = self._first.get(name)
        return self.modules[i] if i is not None else ""

    def range(self, name: str) -> tuple[int, int] | None:
        """[start, end) of a function: end is the next higher symbol's address."""
        i = self._first.get(name)
        if i is None or self.hidden:
            return None
        start = self.addrs[i]
        j = bisect.bisect_right(self.addrs, start)
        end = self.addrs[j] if j < len(self.addrs) else start + 4096
        return start, end

    def resolve(self, addr: int) -> str:
        """Function name containing ``addr`` ('' when unknown)."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.names[i] if i >= 0 else ""


@dataclass
class ProbeReport:
    """One probe on this kernel: status, mode, events it can give, what is missing, why."""

    name: str
    status: Status
    mode: str
    detail: str
    events: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    attach: dict[str, str] = field(default_factory=dict)  # role -> kernel function


@dataclass
class Features:
    release: str
    version: tuple[int, int]
    root: bool
    privileged: bool
    privilege_detail: str
    kprobes: bool
    kprobes_detail: str
    tracefs: str | None
    btf: bool
    ringbuf: bool
    bcc: str | None
    kptr_hidden: bool
    #: entries of available_filter_functions (None: unreadable, e.g. no CONFIG_FUNCTION_TRACER)
    ftrace_functions: int | None
    #: BCC's kfunc/fentry check (capture never needs it: kprobes cover modules with BCC 0.26)
    kfunc: bool | None
    probes: dict[str, ProbeReport]
    signatures: dict[str, str]

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["version"] = f"{self.version[0]}.{self.version[1]}"
        return d


def _cap_eff() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def check_privileges() -> tuple[bool, str]:
    """(ok, detail): BPF tracing needs root, or CAP_BPF + CAP_PERFMON (5.8+)."""
    caps = _cap_eff()
    if os.geteuid() == 0 and caps & (1 << CAP_SYS_ADMIN):
        return True, "root"
    if caps & (1 << CAP_SYS_ADMIN):
        return True, "CAP_SYS_ADMIN"
    if caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON):
        return True, "CAP_BPF+CAP_PERFMON"
    return False, f"uid {os.geteuid()} without CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN"


def require_privileges() -> None:
    """Fail first, in one line, before anything compiles or attaches."""
    ok, detail = check_privileges()
    if not ok:
        raise CaptureError(
            f"capture needs root or CAP_BPF+CAP_PERFMON ({detail}); run it with sudo"
        )


def _kernel_config() -> dict[str, str]:
    texts: list[str] = []
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            texts.append(fh.read())
    except OSError:
        pass  # no IKCONFIG: try /boot
    boot = Path(f"/boot/config-{platform.release()}")
    if not texts and boot.exists():
        texts.append(boot.read_text())
    cfg: dict[str, str] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith("CONFIG_"):
                k, _, v = line.partition("=")
                cfg[k] = v
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                cfg[line[2:-11]] = "n"
    return cfg


def _tracefs() -> str | None:
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def _tracepoint(tracefs: str | None, group: str, name: str) -> bool:
    # tracefs unmounted (or unreadable for this user) reads as "no such tracepoint"
    return bool(tracefs) and os.path.isdir(os.path.join(str(tracefs), "events", group, name))


def _tp_fields(tracefs: str | None, group: str, name: str) -> set[str]:
    if not tracefs:
        return set()
    try:
        text = Path(tracefs, "events", group, name, "format").read_text()
    except OSError:
        return set()
    return set(re.findall(r"field:[^;]*?(\w+)(?:\[\d*\])?;", text))


def detect(probes: tuple[str, ...] | list[str] = PROBES) -> Features:
    """Everything capture needs to know about the running kernel."""
    release = platform.release()
    version = parse_release(release)
    root = os.geteuid() == 0
    privileged, priv_detail = check_privileges()
    cfg = _kernel_config()
    tracefs = _tracefs()
    ks = Kallsyms()
    if cfg.get("CONFIG_KPROBES") == "y":
        kprobes, kp_detail = True, "CONFIG_KPROBES=y"
    elif cfg.get("CONFIG_KPROBES") == "n":
        kprobes, kp_detail = False, "CONFIG_KPROBES is not set"
    elif tracefs and os.path.exists(os.path.join(tracefs, "kprobe_events")):
        kprobes, kp_detail = True, f"{tracefs}/kprobe_events exists"
    elif tracefs:
        kprobes, kp_detail = False, f"no {tracefs}/kprobe_events (kernel without kprobes)"
    else:
        kprobes, kp_detail = False, "no kernel config and no tracefs: cannot tell"
    try:
        import bcc

        bcc_version: str | None = getattr(bcc, "__version__", "unknown")
    except Exception:  # missing, or a broken build
        bcc_version = None
    btf = os.path.exists("/sys/kernel/btf/vmlinux")
    ftrace_functions: int | None = None
    if tracefs:
        try:
            with open(os.path.join(tracefs, "available_filter_functions")) as fh:
                ftrace_functions = sum(1 for _ in fh)
        except OSError:
            ftrace_functions = None
    kfunc: bool | None = None
    if bcc_version is not None:
        try:
            from bcc import BPF

            kfunc = bool(BPF.support_kfunc())
        except Exception:  # old bcc without the check
            kfunc = None
    ringbuf = version >= (5, 8)

    sig: dict[str, str] = {}
    sig["zs_malloc"] = (
        "zs_malloc(pool, size, gfp, nid)" if version >= (6, 16) else "zs_malloc(pool, size, gfp)"
    )
    if "zs_obj_read_begin" in ks:
        sig["map"] = "zs_obj_read_begin/zs_obj_read_end/zs_obj_write (no zs_map_object)"
    elif "zs_map_object" in ks:
        sig["map"] = "zs_map_object/zs_unmap_object"
    if "zswap_frontswap_store" in ks:
        sig["zswap"] = "zswap_frontswap_{store,load,invalidate_page}(type, offset, page)"
    elif "zswap_store" in ks:
        sig["zswap"] = "zswap_store(folio)/zswap_load(folio)/zswap_invalidate(swp_entry_t)"
    sig["zswap_load_returns"] = "int (0 = hit)" if version >= (6, 16) else "bool (true = hit)"
    sig["zsmalloc_locks"] = (
        "per-class spinlock + pool rwlock" if version >= (6, 9) else "pool lock (one per pool)"
    )
    if ks.module_of("zs_malloc"):
        sig["zsmalloc_module"] = ks.module_of("zs_malloc")

    reports: dict[str, ProbeReport] = {}
    reports["zsmalloc"] = _zsmalloc_report(ks, kprobes, tracefs, version)
    reports["locks"] = _locks_report(tracefs, kprobes)
    reports["zswap"] = _zswap_report(ks, kprobes, version)
    if not privileged:
        for r in reports.values():
            r.detail += " [not privileged: capture would refuse to start]"
    if ks.hidden:
        for r in reports.values():
            if r.status != "missing":
                r.detail += " [kallsyms addresses hidden from this user]"
    return Features(
        release=release,
        version=version,
        root=root,
        privileged=privileged,
        privilege_detail=priv_detail,
        kprobes=kprobes,
        kprobes_detail=kp_detail,
        tracefs=tracefs,
        btf=btf,
        ringbuf=ringbuf,
        bcc=bcc_version,
        kptr_hidden=ks.hidden,
        ftrace_functions=ftrace_functions,
        kfunc=kfunc,
        probes={k: v for k, v in reports.items() if k in probes},
        signatures=sig,
    )


def _zsmalloc_report(
    ks: Kallsyms, kprobes: bool, tracefs: str | None, version: tuple[int, int]
) -> ProbeReport:
    if "zs_malloc" not in ks:
        return ProbeReport(
            "zsmalloc",
            "missing",
            "-",
            "zs_malloc not in /proc/kallsyms (zsmalloc not built in and its module not loaded; "
            "modprobe zram or zsmalloc first)",
        )
    if kprobes:
        attach = {"malloc": "zs_malloc", "free": "zs_free"}
        events = ["zs_malloc", "zs_free"]
        missing = []
        compact = ks.variant("__zs_compact") or ks.variant("zs_compact")
        if compact:
            attach["compact"] = compact
            events.append("zs_compact")
        else:
            missing.append("zs_compact (no __zs_compact/zs_compact symbol)")
        if ks.variant("zs_page_migrate"):
            attach["migrate"] = ks.variant("zs_page_migrate") or ""
            events.append("zs_migrate")
        else:
            missing.append("zs_migrate (zs_page_migrate not a symbol: no CONFIG_COMPACTION?)")
        # Object access: zs_map_object/zs_unmap_object up to 6.14; zs_obj_read_begin/_end and
        # zs_obj_write from 6.15 (mm/zsmalloc.c).
        for role, sym in (
            ("map", "zs_map_object"),
            ("unmap", "zs_unmap_object"),
            ("read_begin", "zs_obj_read_begin"),
            ("read_end", "zs_obj_read_end"),
            ("obj_write", "zs_obj_write"),
        ):
            if ks.variant(sym):
                attach[role] = ks.variant(sym) or sym
        if ("map" in attach and "unmap" in attach) or "read_begin" in attach:
            events += ["zs_read", "zs_write"]
        else:
            missing.append("zs_read/zs_write (no zs_map_object or zs_obj_read_begin symbol)")
        mod = ks.module_of("zs_malloc")
        where = f"module {mod}, " if mod else ""
        return ProbeReport(
            "zsmalloc",
            "available",
            "kprobe",
            f"kprobe+kretprobe on zs_malloc/zs_free ({where}size, handle, duration)",
            events,
            missing,
            attach,
        )
    have_tp = _tracepoint(tracefs, "kmem", "kmem_cache_alloc") and _tracepoint(
        tracefs, "kmem", "kmem_cache_free"
    )
    if have_tp:
        fields = _tp_fields(tracefs, "kmem", "kmem_cache_alloc")
        if fields and not {"call_site", "ptr", "name", "bytes_req"} <= fields:
            return ProbeReport(
                "zsmalloc",
                "missing",
                "-",
                f"kmem:kmem_cache_alloc lacks call_site/ptr/name/bytes_req (has {sorted(fields)})",
            )
        return ProbeReport(
            "zsmalloc",
            "fallback",
            "kmem-tracepoint",
            "no kprobes: zs_malloc/zs_free from kmem:kmem_cache_alloc/free of the pool's "
            "zs_handle-<pool> cache (alloc call_site inside zs_malloc); gives handle, time, "
            "CPU, task, pool name",
            ["zs_malloc", "zs_free"],
            ["size_bytes (object size)", "duration_ns", "zs_compact", "zs_migrate"],
            {
                "malloc": "tracepoint:kmem:kmem_cache_alloc",
                "free": "tracepoint:kmem:kmem_cache_free",
            },
        )
    return ProbeReport(
        "zsmalloc", "missing", "-", "no kprobes and no kmem:kmem_cache_alloc/free tracepoints"
    )


def _locks_report(tracefs: str | None, kprobes: bool) -> ProbeReport:
    if not (
        _tracepoint(tracefs, "lock", "contention_begin")
        and _tracepoint(tracefs, "lock", "contention_end")
    ):
        return ProbeReport(
            "locks",
            "missing",
            "-",
            "no lock:contention_begin/end tracepoints (added in 5.19; needs tracefs mounted)",
        )
    return ProbeReport(
        "locks",
        "available",
        "tracepoint",
        "lock:contention_begin/end with kernel stacks: wait time, lock address, flags; "
        "kind (class/pool/zspage/other) from zsmalloc functions on the stack",
        ["lock_contention"],
        ["hold_ns (needs probes on every lock release; not captured)"],
        {"begin": "tracepoint:lock:contention_begin", "end": "tracepoint:lock:contention_end"},
    )


def _zswap_report(ks: Kallsyms, kprobes: bool, version: tuple[int, int]) -> ProbeReport:
    frontswap = "zswap_frontswap_store" in ks
    store = "zswap_frontswap_store" if frontswap else ("zswap_store" if "zswap_store" in ks else "")
    if not store:
        return ProbeReport(
            "zswap",
            "missing",
            "-",
            "no zswap_store/zswap_frontswap_store symbol (CONFIG_ZSWAP off)",
        )
    if not kprobes:
        return ProbeReport(
            "zswap",
            "missing",
            "-",
            "zswap has no tracepoints and this kernel has no kprobes (CONFIG_KPROBES off)",
        )
    attach = {
        "store": store,
        "load": "zswap_frontswap_load" if frontswap else "zswap_load",
        "invalidate": "zswap_frontswap_invalidate_page" if frontswap else "zswap_invalidate",
    }
    events = ["zswap_store", "zswap_load", "zswap_invalidate"]
    # the folio's memcg needs the folio: zswap_store/zswap_load(folio), 6.5+ (zt_zswap_memcg)
    missing = ["memcg_id"] if frontswap else []
    wb = ks.variant("zswap_writeback_entry")
    if wb:
        attach["writeback"] = wb
        events.append("zswap_writeback")
    else:
        missing.append("zswap_writeback (zswap_writeback_entry inlined)")
    if frontswap:
        missing.append("swap_entry of zswap_writeback (6.1 passes the zpool handle)")
    else:
        missing.append("reject reason (zswap_store returns bool: stored | reject_other)")
    return ProbeReport(
        "zswap",
        "available",
        "kprobe",
        f"kprobe+kretprobe on {attach['store']}/{attach['load']}/{attach['invalidate']}",
        events,
        missing,
        attach,
    )
