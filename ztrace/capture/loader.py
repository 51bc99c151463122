"""Compile the probe program for this kernel and attach it: a thin layer over BCC.

The program text is ``probes/zs_capture.bpf.c``; this module only chooses its ``-D``
constants from :mod:`ztrace.capture.features` (filters become load-time constants, so they
cost nothing per event) and attaches the kprobes whose names differ between kernels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ztrace.capture.events import DROP_SLOTS, RingReader
from ztrace.capture.features import Features, Kallsyms
from ztrace.errors import CaptureError, ConfigError, FeatureMissingError

if TYPE_CHECKING:
    import numpy as np

PROGRAM = "zs_capture.bpf.c"
HANDLE_SIZE = 8  # ZS_HANDLE_SIZE = sizeof(unsigned long)
#: default ring buffer size in pages: 64 MiB with 4 KiB pages, ~800 k events, i.e. about a
#: second of a 1 M events/s burst while the consumer is descheduled on a loaded host (the CLI
#: and docs/capture.md quote this constant)
DEFAULT_RINGBUF_PAGES = 16384
#: events per ring record: one ring reserve/commit per 64 events (zs_capture.bpf.c: zt_emit)
DEFAULT_BATCH = 64
#: how often the consumer flushes every CPU's partial batch (zt_flush_cpu) before a read: a
#: batch that stopped growing waits at most about this long (plus the poll interval)
TICK_NS = 40_000_000


def probes_dir() -> Path:
    """``probes/`` in a source tree, or ``ztrace/_probes`` in an installed wheel."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent.parent / "probes", here.parent / "_probes"):
        if (cand / PROGRAM).exists():
            return cand
    raise CaptureError(f"cannot find {PROGRAM} (looked in ../probes and ztrace/_probes)")


def pool_id(name: str) -> int:
    """The kmem-mode pool id: the first 8 bytes of the pool name as a little-endian u64."""
    raw = name.encode()[:8]
    return int.from_bytes(raw.ljust(8, b"\0"), "little")


def pool_name(pid: int) -> str:
    return pid.to_bytes(8, "little").rstrip(b"\0").decode(errors="replace")


def kmem_cache_name_offset() -> int | None:
    """Offset of ``kmem_cache.name`` when the raw kmem tracepoints carry the cache (6.2+)."""
    from ztrace.capture import btf

    b = btf.vmlinux()
    if b is None:
        return None
    for event, want in (
        ("kmem_cache_alloc", ["long unsigned int", "void *", "struct kmem_cache *"]),
        ("kmem_cache_free", ["long unsigned int", "void *", "struct kmem_cache *"]),
    ):
        args = b.raw_tracepoint_args(event)
        if args is None or args[: len(want)] != want:
            return None
    return b.member_offset("kmem_cache", "name")


def raw_tp_ok(sig: tuple[str, list[str]]) -> bool:
    """True when BTF shows tracepoint ``sig[0]`` with exactly the argument types ``sig[1]``."""
    from ztrace.capture import btf

    b = btf.vmlinux()
    return b is not None and b.raw_tracepoint_args(sig[0]) == sig[1]


@dataclass
class Plan:
    """What to compile and attach, and why."""

    probes: list[str]
    modes: dict[str, str]
    cflags: list[str]
    kprobes: list[tuple[str, str, str]] = field(default_factory=list)  # (kernel fn, entry, ret)
    optional_kprobes: set[str] = field(default_factory=set)
    missing: dict[str, list[str]] = field(default_factory=dict)
    ringbuf_bytes: int = 0
    #: events per ring record (ZT_BATCH); 1 when the per-CPU flush timer cannot attach
    batch: int = DEFAULT_BATCH
    #: --cgroup directory (its fd goes into the cgroup_filter map before attaching)
    cgroup: str | None = None


#: (attach role, entry function, return function) of the object-access probes
_READ_ROLES = (
    ("map", "zt_map_entry", ""),
    ("unmap", "", "zt_access_return"),
    ("read_begin", "zt_read_begin_entry", ""),
    ("read_end", "", "zt_access_return"),
    ("obj_write", "zt_obj_write_entry", "zt_access_return"),
)


def make_plan(
    feats: Features,
    probes: list[str],
    *,
    pool: str | None = None,
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES,
    target_tgid: int = 0,
    ksyms: Kallsyms | None = None,
    batch: int = DEFAULT_BATCH,
    cpus: list[int] | None = None,
    cgroup: str | None = None,
) -> Plan:
    """Turn requested probes into compile flags; a probe the kernel cannot serve is an error."""
    if ringbuf_pages <= 0 or ringbuf_pages & (ringbuf_pages - 1):
        raise ConfigError(f"`--ringbuf-pages` must be a power of two, got {ringbuf_pages}")
    if batch <= 0 or batch & (batch - 1) or batch > 256:
        raise ConfigError(f"batch must be a power of two in 1..256, got {batch}")
    ks = ksyms or Kallsyms()
    flags = [
        f"-I{probes_dir()}",
        f"-DZT_RINGBUF_PAGES={ringbuf_pages}",
        f"-DZT_TARGET_TGID={target_tgid}",
    ]
    plan = Plan(probes=list(probes), modes={}, cflags=flags, batch=batch)
    if cpus is not None:
        if not cpus or min(cpus) < 0 or max(cpus) > 255:
            raise ConfigError(f"`--cpu` must list CPUs 0..255, got {cpus}")
        masks = [0, 0, 0, 0]
        for c in cpus:
            masks[c // 64] |= 1 << (c % 64)
        flags += [f"-DZT_CPU_MASK{i}={m:#x}ULL" for i, m in enumerate(masks)]
    if cgroup is not None:
        cg = Path(cgroup)
        if not (cg / "cgroup.procs").exists():
            raise ConfigError(f"`--cgroup` {cgroup}: not a cgroup v2 directory (no cgroup.procs)")
        flags.append("-DZT_CGROUP")
        plan.cgroup = str(cg)
    plan.ringbuf_bytes = ringbuf_pages * os.sysconf("SC_PAGE_SIZE")
    pool_flag = 0  # struct zs_pool address (kprobe mode)
    pool_name_flag = pool_id(pool) if pool and not pool.startswith("0x") else 0
    for name in probes:
        rep = feats.probes.get(name)
        if rep is None:
            raise ConfigError(f"unknown probe `{name}` (probes: zsmalloc, locks, zswap)")
        if rep.status == "missing":
            raise FeatureMissingError(
                f"probe `{name}` unavailable on {feats.release} ({rep.detail})"
            )
        plan.modes[name] = rep.mode
        plan.missing[name] = list(rep.missing)
        if name == "locks":
            flags.append("-DZT_LOCKS")
            if raw_tp_ok(("contention_begin", ["void *", "unsigned int"])) and raw_tp_ok(
                ("contention_end", ["void *", "int"])
            ):
                flags.append("-DZT_RAW_TP")
            # The tracepoint misses qspinlock's pending-bit waiter (probes/zs_capture.bpf.c,
            # ZT_SPIN_SLOWPATH); where kprobes exist, also time every slowpath entry.
            # x86 with CONFIG_PARAVIRT_SPINLOCKS (Debian) names it native_queued_spin_lock_slowpath.
            slow = ks.variant("native_queued_spin_lock_slowpath") or ks.variant(
                "queued_spin_lock_slowpath"
            )
            if feats.kprobes and slow:
                flags.append("-DZT_SPIN_SLOWPATH")
                plan.kprobes.append((slow, "zt_spin_slow_entry", "zt_spin_slow_return"))
                plan.optional_kprobes.add(slow)
        elif name == "zsmalloc" and rep.mode == "kmem-tracepoint":
            rng = ks.range("zs_malloc")
            if rng is None:
                raise FeatureMissingError("zs_malloc address unknown (kallsyms hidden?)")
            off = kmem_cache_name_offset()
            if off is not None:
                flags.append(f"-DZT_KC_NAME_OFF={off}")
            flags += [
                "-DZT_KMEM",
                f"-DZT_MALLOC_LO={rng[0]}ULL",
                f"-DZT_MALLOC_HI={rng[1]}ULL",
                f"-DZT_HANDLE_SIZE={HANDLE_SIZE}",
            ]
            if pool and pool.startswith("0x"):
                raise ConfigError(
                    "`--pool` takes a pool name (e.g. zram0) on tracepoint kernels: the kmem "
                    "tracepoints carry no pool address"
                )
        elif name == "zsmalloc":
            flags.append("-DZT_KPROBE_ZS")
            plan.kprobes += [
                ("zs_malloc", "zt_zs_malloc_entry", "zt_zs_malloc_return"),
                ("zs_free", "zt_zs_free_entry", "zt_zs_free_return"),
            ]
            for role, entry, ret in (
                ("compact", "zt_compact_entry", "zt_compact_return"),
                ("migrate", "zt_migrate_entry", "zt_migrate_return"),
            ):
                if role in rep.attach:
                    plan.kprobes.append((rep.attach[role], entry, ret))
                    plan.optional_kprobes.add(rep.attach[role])
            # Object access (reads and writes): map/unmap up to 6.15, obj_read/obj_write 6.16+.
            reads = [(rep.attach[r], e, t) for r, e, t in _READ_ROLES if r in rep.attach]
            if reads:
                flags.append("-DZT_READS")
                plan.kprobes += reads
                plan.optional_kprobes.update(fn for fn, _, _ in reads)
            # struct zspage's class bitfield follows huge:1 and fullness:FULLNESS_BITS, which
            # grew from 2 to 4 bits in 6.4 (mm/zsmalloc.c).
            flags.append(f"-DZT_ZSPAGE_CLASS_SHIFT={5 if feats.version >= (6, 4) else 3}")
            if pool and pool.startswith("0x"):
                if not re.fullmatch(r"0x[0-9a-fA-F]+", pool):
                    raise ConfigError(f"`--pool` {pool!r} is not a hex address")
                pool_flag = int(pool, 16)
        elif name == "zswap":
            flags.append("-DZT_ZSWAP")
            if rep.attach["store"].startswith("zswap_frontswap"):
                flags.append("-DZT_ZSWAP_FRONTSWAP")
            if feats.version >= (6, 16):
                flags.append("-DZT_ZSWAP_LOAD_INT")
            plan.kprobes += [
                (rep.attach["store"], "zt_zswap_store_entry", "zt_zswap_store_return"),
                (rep.attach["load"], "zt_zswap_load_entry", "zt_zswap_load_return"),
                (rep.attach["invalidate"], "zt_zswap_inval_entry", "zt_zswap_inval_return"),
            ]
            if "writeback" in rep.attach:
                plan.kprobes.append(
                    (rep.attach["writeback"], "zt_zswap_wb_entry", "zt_zswap_wb_return")
                )
                plan.optional_kprobes.add(rep.attach["writeback"])
    flags.append(f"-DZT_BATCH={batch}")
    flags.append(f"-DZT_POOL={pool_flag}ULL")
    flags.append(f"-DZT_POOL_NAME={pool_name_flag}ULL")
    return plan


def check_fentry(function: str = "vfs_read") -> tuple[bool, str]:
    """Does fentry work here, for real: load and attach a KFUNC_PROBE on ``function``,
    make the kernel call it, and count what the program saw.

    BCC's ``support_kfunc()`` only checks that the kernel has BTF and a trampoline symbol;
    on this project's 6.18 host it says yes while every fentry load fails with EPERM.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", function):
        raise ConfigError(f"not a kernel function name: {function!r}")
    try:
        from bcc import BPF
    except ImportError as exc:
        return False, f"bcc is not importable ({exc})"
    text = (
        "BPF_ARRAY(seen, u64, 1);\n"
        f"KFUNC_PROBE({function})\n"
        "{ int k = 0; u64 *v = seen.lookup(&k); if (v) __sync_fetch_and_add(v, 1); return 0; }\n"
    )
    try:
        b = BPF(text=text.encode())
    except Exception as exc:  # bcc raises bare Exceptions for load/attach failures
        why = str(exc)
        if "super-user" in why and os.geteuid() == 0:
            why = "the kernel refused the program with EPERM, although we are root"
        return False, f"load/attach of fentry:{function} failed ({why})"
    try:
        if function == "vfs_read":
            for _ in range(8):
                with open("/proc/self/stat", "rb") as f:
                    f.read()
        n = int(b.get_table("seen")[0].value)
    finally:
        b.cleanup()
    if n == 0:
        return False, f"fentry:{function} attached but saw no calls"
    return True, f"fentry:{function} attached and saw {n} calls"


class Loaded:
    """A compiled, attached program: the ring reader, the stack map and the drop counters."""

    def __init__(self, plan: Plan) -> None:
        try:
            from bcc import BPF
        except ImportError as exc:
            raise FeatureMissingError(
                f"bcc is not importable ({exc}); install python3-bpfcc"
            ) from None
        self.plan = plan
        self.notes: list[str] = []
        src = (probes_dir() / PROGRAM).read_bytes()
        self.bpf = self._compile(BPF, src, plan.cflags)
        self._flusher: BatchFlusher | None = None
        if plan.batch > 1 and not self._load_flusher():
            # Without the flush an idle CPU would hold its last events until the end (and
            # past the writer's reorder window): write every event as its own record instead.
            self.bpf.cleanup()
            plan.cflags = [f for f in plan.cflags if not f.startswith("-DZT_BATCH=")]
            plan.cflags.append("-DZT_BATCH=1")
            plan.batch = 1
            self.bpf = self._compile(BPF, src, plan.cflags)
        if plan.cgroup is not None:
            # until this slot is set every probe skips (the helper returns an error), so
            # nothing outside the cgroup is recorded in between
            try:
                self.bpf.get_table("cgroup_filter")[0] = plan.cgroup
            except Exception as exc:
                self.bpf.cleanup()
                raise CaptureError(f"`--cgroup` {plan.cgroup}: cannot use it ({exc})") from None
        self.skipped: list[str] = []
        for fn, entry, ret in plan.kprobes:
            try:
                # "" = no probe on that side (the read probes pair one function's entry
                # with another's return: zs_map_object .. zs_unmap_object)
                if entry:
                    self.bpf.attach_kprobe(event=fn.encode(), fn_name=entry.encode())
                if ret:
                    self.bpf.attach_kretprobe(event=fn.encode(), fn_name=ret.encode())
            except Exception as exc:
                if fn in plan.optional_kprobes:
                    self.skipped.append(f"{fn} ({exc})")
                    continue
                self.close()
                raise FeatureMissingError(f"cannot attach kprobe to `{fn}` ({exc})") from None
        table = self.bpf.get_table("events")
        self.reader = RingReader(table.map_fd, plan.ringbuf_bytes)
        self.map_fd = table.map_fd
        self._stacks = self.bpf.get_table("stacks") if "-DZT_LOCKS" in plan.cflags else None

    @staticmethod
    def _compile(bpf_cls: type, src: bytes, cflags: list[str]):  # type: ignore[no-untyped-def]
        try:
            # Tracepoint functions (TRACEPOINT_PROBE) attach themselves here.
            return bpf_cls(text=src, cflags=cflags)
        except Exception as exc:
            raise CaptureError(f"cannot compile/load the BPF program ({exc})") from None

    def _load_flusher(self) -> bool:
        """Load ``zt_flush_cpu`` and check that it runs on every CPU; False (with a note) if not."""
        try:
            from bcc import BPF

            fd = self.bpf.load_func(b"zt_flush_cpu", BPF.RAW_TRACEPOINT).fd
            flusher = BatchFlusher(fd)
            flusher.flush_all()
        except Exception as exc:
            self.notes.append(f"no per-CPU batch flush ({exc}); one event per ring record")
            return False
        self._flusher = flusher
        return True

    def read(self, max_events: int = 1 << 16) -> np.ndarray:
        """Read the ring, first flushing every CPU's partial batch if the last flush is older
        than :data:`TICK_NS`. Everything stamped before the flush began is then in the ring
        (or in this read), except events a probe was adding at that very instant."""
        if self._flusher is not None:
            self._flusher.flush_if_due()
        return self.reader.read(max_events)

    def final_flush(self) -> None:
        """Flush every CPU's partial batch before the last read."""
        if self._flusher is not None:
            self._flusher.flush_all()

    @property
    def attached(self) -> list[str]:
        """Exactly what is attached, as ``kind:name`` (for the trace metadata)."""
        out = []
        names = (
            ("tracepoint", "tracepoint_fds"),
            ("raw_tracepoint", "raw_tracepoint_fds"),
            ("kprobe", "kprobe_fds"),
        )
        for kind, attr in names:
            for k in getattr(self.bpf, attr, {}):
                name = k.decode() if isinstance(k, bytes) else str(k)
                out.append(f"{kind}:{name}")
        if self.plan.batch > 1:
            out.append(f"test_run:zt_flush_cpu/{TICK_NS // 1_000_000}ms")
        return sorted(out)

    def pool_names(self) -> dict[int, str]:
        """struct zs_pool address -> name, as learnt by the kprobes (empty in kmem mode)."""
        if "-DZT_KPROBE_ZS" not in self.plan.cflags:
            return {}
        t = self.bpf.get_table("pool_names")
        return {
            int(k.value): bytes(v.name).split(b"\0", 1)[0].decode(errors="replace")
            for k, v in t.items()
        }

    def drops(self) -> dict[str, int]:
        t = self.bpf.get_table("drops")
        return {name: int(t.sum(i).value) for i, name in enumerate(DROP_SLOTS)}

    def walk_stack(self, stack_id: int) -> list[int]:
        if self._stacks is None:
            return []
        return list(self._stacks.walk(stack_id))

    def close(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()
        self.bpf.cleanup()


class BatchFlusher:
    """Runs ``zt_flush_cpu`` on each online CPU through ``BPF_PROG_TEST_RUN`` with
    ``BPF_F_TEST_RUN_ON_CPU`` (Linux 5.10+; net/bpf/test_run.c: bpf_prog_test_run_raw_tp runs
    the program in an IPI on that CPU). A timer inside BPF would need bpf_timer pinned per
    CPU (6.7+) and a cpu-clock perf event does not tick on idle CPUs; the consumer is awake
    whenever it reads, so it is the one clock that always runs when a flush matters."""

    _NR_BPF: ClassVar[dict[str, int]] = {"x86_64": 321, "aarch64": 280}
    _PROG_TEST_RUN = 10
    _F_TEST_RUN_ON_CPU = 1

    def __init__(self, prog_fd: int) -> None:
        import ctypes
        import platform
        import struct

        machine = platform.machine()
        if machine not in self._NR_BPF:
            raise CaptureError(f"no bpf(2) syscall number known for {machine}")
        self._nr = self._NR_BPF[machine]
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._cpus = online_cpus()
        self._last = 0
        # union bpf_attr.test: prog_fd, retval, data_size_in/out, data_in/out, repeat,
        # duration, ctx_size_in/out, ctx_in/out, flags, cpu, batch_size (include/uapi/linux/bpf.h)
        self._attrs: list[ctypes.Array[ctypes.c_uint8]] = []
        for cpu in self._cpus:
            attr = (ctypes.c_uint8 * 80)()
            fields = (prog_fd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, self._F_TEST_RUN_ON_CPU, cpu, 0)
            struct.pack_into("<IIIIQQIIIIQQIII", attr, 0, *fields)
            self._attrs.append(attr)

    def flush_all(self) -> None:
        import ctypes
        import time

        self._last = time.monotonic_ns()
        for cpu, attr in zip(self._cpus, self._attrs, strict=True):
            if self._libc.syscall(self._nr, self._PROG_TEST_RUN, attr, len(attr)):
                err = ctypes.get_errno()
                if err == 6:  # ENXIO: the CPU went offline since we listed them
                    continue
                raise OSError(err, f"BPF_PROG_TEST_RUN on CPU {cpu}: {os.strerror(err)}")

    def flush_if_due(self) -> None:
        import time

        if time.monotonic_ns() - self._last >= TICK_NS:
            self.flush_all()


def online_cpus() -> list[int]:
    """The online CPUs, from /sys/devices/system/cpu/online (``0-3,6``)."""
    try:
        text = Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return sorted(os.sched_getaffinity(0))
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out
