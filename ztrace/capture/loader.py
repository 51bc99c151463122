"""Compile the probe program for this kernel and attach it: a thin layer over BCC.

The program text is ``probes/zs_capture.bpf.c``; this module only chooses its ``-D``
constants from :mod:`ztrace.capture.features` (filters become load-time constants, so they
cost nothing per event) and attaches the kprobes whose names differ between kernels.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

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
#: events per ring record: one ring reserve/commit per 64 events (zs_capture.bpf.c: zt_end)
DEFAULT_BATCH = 64
#: how often the consumer flushes every CPU's partial batch (zt_flush_cpu) before a read: a
#: batch that stopped growing waits at most about this long (plus the poll interval)
TICK_NS = 40_000_000
#: kretprobe instances per probed function: how many calls of it may be in flight at once
#: (all tasks, all CPUs). The kernel's default is max(10, 2 * possible CPUs) (6.12
#: kernel/kprobes.c: register_kretprobe); a call entered while all are in use is not hooked
#: (pre_handler_kretprobe: rp->nmissed++) and its event is lost. Given, BCC creates the probe
#: through tracefs ("r1024:..."), whose kprobe_profile shows that miss count. The tracefs
#: limit is 4096 (kernel/trace/trace_kprobe.c: KRETPROBE_MAXACTIVE_MAX).
KRETPROBE_MAXACTIVE = 1024
#: the lock tracepoint programs (their skipped runs are reported on their own line)
_EVENT_PROG_MARK = "contention_"
#: the spinlock slowpath probe (loader: ZT_SPIN_SLOWPATH), whose misses are re-entries
_SPIN_SLOWPATH = "queued_spin_lock_slowpath"
_SPIN_PROGS = "zt_spin_slow_"
#: Maps whose entries are events the kernel has begun and not yet emitted: each is emitted
#: later, at the wait's end or the call's return, stamped with the entry's ``ts`` (its begin;
#: zs_capture.bpf.c: ZT_LOCK_BEGIN, zt_spin_slow_entry, zt_enter). Keyed by the cflags that
#: compile them in. The writer's reorder watermark stays behind the oldest of them
#: (:meth:`Loaded.oldest_inflight_ns`).
_INFLIGHT_MAPS = (
    ("lock_begin", ("-DZT_LOCKS",)),
    ("spin_begin", ("-DZT_SPIN_SLOWPATH",)),
    ("calls", ("-DZT_KPROBE_ZS", "-DZT_ZSWAP")),
)


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


def size_class_offsets() -> tuple[int, int] | None:
    """Offsets of ``index`` and ``size`` in ``struct size_class`` when its ``lock`` is the first
    member (6.12 and 6.18 mm/zsmalloc.c), so that a class lock's address is the struct's: the
    probes then read the class of each waited-on lock (probes/zs_capture.bpf.c, zt_note_lock).
    None where the BTF has no such struct (zsmalloc built as a module: its BTF is split, not
    read here) or the lock sits elsewhere."""
    from ztrace.capture import btf

    b = btf.vmlinux()
    if b is None or b.member_offset("size_class", "lock") != 0:
        return None
    index, size = b.member_offset("size_class", "index"), b.member_offset("size_class", "size")
    return None if index is None or size is None else (index, size)


def task_mm_offset() -> int | None:
    """Offset of ``task_struct.mm`` (BTF), for the probes' page-table switch stamp
    (probes/zs_capture.bpf.c, ZT_MM_OFF), when the ``sched_switch`` raw tracepoint has the
    (preempt, prev, next, ...) arguments it reads."""
    from ztrace.capture import btf

    b = btf.vmlinux()
    if b is None:
        return None
    args = b.raw_tracepoint_args("sched_switch")
    if args is None or args[1:3] != ["struct task_struct *", "struct task_struct *"]:
        return None
    return b.member_offset("task_struct", "mm")


#: zs_malloc/zs_free's kprobe pairs (kernel function, entry program, return program)
ZS_KPROBES = [
    ("zs_malloc", "zt_zs_malloc_entry", "zt_zs_malloc_return"),
    ("zs_free", "zt_zs_free_entry", "zt_zs_free_return"),
]


def zs_fentry_nargs() -> int | None:
    """zs_malloc's argument count when zs_malloc(pool, size, gfp[, nid]) and zs_free(pool,
    handle) are in vmlinux BTF, i.e. zsmalloc built in, so fentry/fexit can attach to them
    (BCC 0.26 resolves fentry targets in vmlinux only: the 6.1 guest's zsmalloc module is not
    one); None otherwise. 3 before 6.16, 4 after (6.12 and 6.18 mm/zsmalloc.c)."""
    from ztrace.capture import btf

    b = btf.vmlinux()
    if b is None or b.func_arg_count("zs_free") != 2:
        return None
    n = b.func_arg_count("zs_malloc")
    return n if n in (3, 4) else None


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
    #: kernel functions probed through fentry/fexit instead of a kprobe pair (ZT_FENTRY_ZS)
    fentry: list[str] = field(default_factory=list)
    #: why fentry was not used where it was planned (the load or attach refused it)
    fentry_refused: str = ""


#: ``--lock-stacks``: walk the stack of every lock wait (``each``), or of a lock's first wait
#: and every STACK_REWALK-th after it, the others reusing that lock's last stack
#: (``per-lock``: the walk idles the waiter before it spins; probes/zs_capture.bpf.c,
#: zt_cached_stack)
LOCK_STACKS = ("each", "per-lock")
STACK_REWALK = 64

#: (attach role, entry function, return function) of the object-access probes
_READ_ROLES = (
    ("map", "zt_map_entry", ""),
    ("unmap", "", "zt_access_return"),
    ("read_begin", "zt_read_begin_entry", ""),
    ("read_end", "", "zt_access_return"),
    ("obj_write", "zt_obj_write_entry", "zt_access_return"),
)


#: --ringbuf-pages at most: 65536 pages = 256 MiB with 4 KiB pages (larger rings fail to load)
MAX_RINGBUF_PAGES = 65536


def check_ringbuf_pages(pages: int) -> int:
    """The BPF ring's size in pages: a power of two (the kernel's ring buffer map requires
    one), at most MAX_RINGBUF_PAGES. The CLI calls it before anything is loaded."""
    if pages <= 0 or pages & (pages - 1):
        raise ConfigError(f"--ringbuf-pages {pages}: not a power of two")
    if pages > MAX_RINGBUF_PAGES:
        raise ConfigError(f"--ringbuf-pages {pages}: too large (at most {MAX_RINGBUF_PAGES})")
    return pages


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
    lock_stacks: str = "each",
    fentry: bool = True,
) -> Plan:
    """Turn requested probes into compile flags; a probe the kernel cannot serve is an error.
    With ``fentry``, zs_malloc/zs_free go through fentry/fexit where zsmalloc is built in
    (:func:`zs_fentry_nargs`); :class:`Loaded` falls back to their kprobes if the kernel
    refuses."""
    check_ringbuf_pages(ringbuf_pages)
    if batch <= 0 or batch & (batch - 1) or batch > 256:
        raise ConfigError(f"batch must be a power of two in 1..256, got {batch}")
    if lock_stacks not in LOCK_STACKS:
        raise ConfigError(f"--lock-stacks {lock_stacks}: not one of {', '.join(LOCK_STACKS)}")
    ks = ksyms or Kallsyms()
    flags = [
        f"-I{probes_dir()}",
        f"-DZT_RINGBUF_PAGES={ringbuf_pages}",
        f"-DZT_TARGET_TGID={target_tgid}",
    ]
    plan = Plan(probes=list(probes), modes={}, cflags=flags, batch=batch)
    if cpus is not None:
        if not cpus:
            raise ConfigError("--cpu: no CPU given")
        if min(cpus) < 0 or max(cpus) > 255:
            bad = min(cpus) if min(cpus) < 0 else max(cpus)
            raise ConfigError(f"--cpu {bad}: the probes filter CPUs 0..255 only")
        masks = [0, 0, 0, 0]
        for c in cpus:
            masks[c // 64] |= 1 << (c % 64)
        flags += [f"-DZT_CPU_MASK{i}={m:#x}ULL" for i, m in enumerate(masks)]
    if cgroup is not None:
        cg = Path(cgroup)
        if not (cg / "cgroup.procs").exists():
            raise ConfigError(f"--cgroup {cgroup}: not a cgroup v2 directory (no cgroup.procs)")
        flags.append("-DZT_CGROUP")
        plan.cgroup = str(cg)
    plan.ringbuf_bytes = ringbuf_pages * os.sysconf("SC_PAGE_SIZE")
    pool_flag = 0  # struct zs_pool address (kprobe mode)
    pool_name_flag = pool_id(pool) if pool and not pool.startswith("0x") else 0
    for name in probes:
        rep = feats.probes.get(name)
        if rep is None:
            raise ConfigError(f"--probes {name}: unknown probe (probes: zsmalloc, locks, zswap)")
        if rep.status == "missing":
            raise FeatureMissingError(
                f"--probes {name}: unavailable on {feats.release} ({rep.detail})"
            )
        plan.modes[name] = rep.mode
        plan.missing[name] = list(rep.missing)
        if name == "locks":
            flags.append("-DZT_LOCKS")
            if lock_stacks == "per-lock":
                flags.append(f"-DZT_STACK_REWALK={STACK_REWALK}")
            if raw_tp_ok(("contention_begin", ["void *", "unsigned int"])) and raw_tp_ok(
                ("contention_end", ["void *", "int"])
            ):
                flags.append("-DZT_RAW_TP")
            offs = size_class_offsets()
            if offs is not None:
                flags += [f"-DZT_CLASS_INDEX_OFF={offs[0]}", f"-DZT_CLASS_SIZE_OFF={offs[1]}"]
            # The tracepoint misses qspinlock's pending-bit waiter (probes/zs_capture.bpf.c,
            # ZT_SPIN_SLOWPATH); where kprobes exist, also time every slowpath entry.
            # x86 with CONFIG_PARAVIRT_SPINLOCKS (Debian) names it native_queued_spin_lock_slowpath.
            slow = ks.variant("native_queued_spin_lock_slowpath") or ks.variant(
                "queued_spin_lock_slowpath"
            )
            if feats.kprobes and slow:
                flags.append("-DZT_SPIN_SLOWPATH")
                mm = task_mm_offset()
                if mm is not None:  # each slowpath row's gap since a page-table switch
                    flags.append(f"-DZT_MM_OFF={mm}")
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
                    f"--pool {pool}: give a pool name (e.g. zram0); the kmem tracepoints "
                    "this kernel is traced with carry no pool address"
                )
        elif name == "zsmalloc":
            # ZT_OFFCPU: each call's switched-out time (sched:sched_switch), which the replay
            # takes out of the duration before the hold share (issue 10, session 9)
            flags += ["-DZT_KPROBE_ZS", "-DZT_OFFCPU"]
            nargs = zs_fentry_nargs() if fentry else None
            if nargs is not None:  # issue 12: fentry where it works (Loaded checks for real)
                flags += ["-DZT_FENTRY_ZS", f"-DZT_MALLOC_NARGS={nargs}"]
                plan.fentry = ["zs_malloc", "zs_free"]
            else:
                plan.kprobes += ZS_KPROBES
            for role, entry, ret in (
                ("compact", "zt_compact_entry", "zt_compact_return"),
                ("migrate", "zt_migrate_entry", "zt_migrate_return"),
            ):
                if role in rep.attach:
                    plan.kprobes.append((rep.attach[role], entry, ret))
                    plan.optional_kprobes.add(rep.attach[role])
            # Object access (reads and writes): map/unmap up to 6.14, obj_read/obj_write 6.15+.
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
                    raise ConfigError(
                        f"--pool {pool}: not a hex address (or a pool name, e.g. zram0)"
                    )
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


@contextmanager
def fd2_captured() -> Iterator[list[str]]:
    """Send what is written to file descriptor 2 (libbpf's and BCC's C code print there, not
    through ``sys.stderr``) to a temporary file while the block runs; the list it yields then
    holds the non-blank lines written. fd 2 is restored even if the block raises."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield lines
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                tmp.seek(0)
                text = tmp.read(1 << 16).decode("utf-8", "replace")
                lines += [ln.strip() for ln in text.splitlines() if ln.strip()]
    finally:
        os.close(saved)


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
    # libbpf reports a refused load on fd 2 ("bpf: Failed to load program: ..."): kept out
    # of the terminal and put in the result, which doctor prints in its own line
    with fd2_captured() as said:
        try:
            b = BPF(text=text.encode())
        except Exception as exc:  # bcc raises bare Exceptions for load/attach failures
            b, why = None, str(exc)
    if b is None:
        if "super-user" in why and os.geteuid() == 0:
            why = "the kernel refused the program with EPERM, although we are root"
        libbpf = f"; libbpf said: {said[0]}" if said else ""
        return False, f"load/attach of fentry:{function} failed ({why}{libbpf})"
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
        try:
            self.bpf = self._compile(BPF, src, plan.cflags)
        except CaptureError as exc:
            if not plan.fentry:
                raise
            # fentry refused (no trampolines here, a locked-down kernel): the kprobe pairs
            plan.fentry_refused = str(exc)
            self.notes.append(f"fentry on {', '.join(plan.fentry)} refused: kprobes used")
            plan.fentry = []
            plan.cflags = [
                f
                for f in plan.cflags
                if f != "-DZT_FENTRY_ZS" and not f.startswith("-DZT_MALLOC_NARGS=")
            ]
            plan.kprobes[:0] = ZS_KPROBES
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
                raise CaptureError(f"--cgroup {plan.cgroup}: cannot use it ({exc})") from None
        self.skipped: list[str] = []
        self.maxactive = KRETPROBE_MAXACTIVE
        for fn, entry, ret in plan.kprobes:
            # entry before return, always: a call the kretprobe hooks entered after its entry
            # probe was attached, so a return without an entry is a skipped entry program
            # (zs_capture.bpf.c: zt_return, ZT_DROP_NO_ENTRY)
            done: list[str] = []
            try:
                # "" = no probe on that side (the read probes pair one function's entry
                # with another's return: zs_map_object .. zs_unmap_object)
                if entry:
                    self.bpf.attach_kprobe(event=fn.encode(), fn_name=entry.encode())
                    done.append("entry")
                if ret:
                    self.bpf.attach_kretprobe(
                        event=fn.encode(), fn_name=ret.encode(), maxactive=self.maxactive
                    )
            except Exception as exc:
                if fn in plan.optional_kprobes:
                    # an entry without its return would leave every call's state behind
                    if done:
                        self.bpf.detach_kprobe(event=fn.encode(), fn_name=entry.encode())
                    self.skipped.append(f"{fn} ({exc})")
                    continue
                self.close()
                raise FeatureMissingError(f"cannot attach kprobe to `{fn}` ({exc})") from None
        #: CLOCK_MONOTONIC ns when every probe was attached: an in-flight entry older than this
        #: may be a call whose return probe was not attached yet (never emitted)
        self.armed_ns = time.monotonic_ns()
        if "-DZT_KPROBE_ZS" in plan.cflags or "-DZT_ZSWAP" in plan.cflags:
            # from now on an entry left in `calls` by the same thread is a missed return;
            # before, it may be a call that entered while its return probe was not attached
            armed = self.bpf.get_table("zt_armed")
            armed[armed.Key(0)] = armed.Leaf(self.armed_ns)
        table = self.bpf.get_table("events")
        self.reader = RingReader(table.map_fd, plan.ringbuf_bytes, plan.batch)
        self.map_fd = table.map_fd
        self._stacks = self.bpf.get_table("stacks") if "-DZT_LOCKS" in plan.cflags else None
        self._inflight = [
            self.bpf.get_table(name)
            for name, flags in _INFLIGHT_MAPS
            if any(f in plan.cflags for f in flags)
        ]

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

    def oldest_inflight_ns(self, not_before_ns: int) -> int | None:
        """The earliest begin time of an event the kernel has begun but not emitted (a lock
        wait, a probed call), among those that began at or after ``not_before_ns``; None if
        there is none. Entries before it are left out: a call entered while its return probe
        was not attached, a return the kernel missed (kretprobe instances exhausted, a skipped
        program), whose events never come. One batch lookup per map: ~20 us of CPU per look on
        this host (benchmarks/README.md, "Session 20")."""
        oldest: int | None = None
        for table in self._inflight:
            try:
                values = [v for _, v in table.items_lookup_batch()]
            except Exception:  # no BPF_MAP_LOOKUP_BATCH (kernels before 5.6): one at a time
                values = list(table.values())
            for v in values:
                ts = int(v.ts)  # 0: a tombstone in `calls`, far below not_before_ns
                if ts >= not_before_ns and (oldest is None or ts < oldest):
                    oldest = ts
        return oldest

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
            ("fentry", "kfunc_entry_fds"),
            ("fexit", "kfunc_exit_fds"),
        )
        for kind, attr in names:
            for k in getattr(self.bpf, attr, {}):
                name = k.decode() if isinstance(k, bytes) else str(k)
                out.append(f"{kind}:{name.removeprefix('kfunc__').removeprefix('kretfunc__')}")
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
        """Events dropped before user space got them (the per-CPU ``drops`` map, by slot)
        and records the reader had to skip (``ring_malformed``)."""
        t = self.bpf.get_table("drops")
        out = {name: int(t.sum(i).value) for i, name in enumerate(DROP_SLOTS)}
        out["ring_malformed"] = self.reader.malformed_events  # dropped in user space
        return out

    def probe_misses(self, *, pair_seen: bool = True) -> ProbeMisses:
        """What the kernel says our probes missed: kprobe/kretprobe ``nmissed`` (tracefs
        kprobe_profile, for the probes made through tracefs) and each program's skipped runs
        (bpf_prog_info.recursion_misses); with ``pair_seen``, which functions the probes'
        own pair counters come from."""
        pid_tag = f"_bcc_{os.getpid()}"
        nmissed = {
            name[: -len(pid_tag)]: miss
            for name, miss in kprobe_profile().items()
            if name.endswith(pid_tag)
        }
        kprobe_progs = {p for _, e, r in self.plan.kprobes for p in (e, r) if p}
        # the fentry/fexit pairs: each skipped run of one is one lost event, as a kprobe's
        kprobe_progs |= {f"{k}__{fn}" for fn in self.plan.fentry for k in ("kfunc", "kretfunc")}
        seen: dict[str, int] = {}
        kprobes = "-DZT_KPROBE_ZS" in self.plan.cflags or "-DZT_ZSWAP" in self.plan.cflags
        if pair_seen and kprobes:  # 32 lookups: only when the drop counters say there is any
            from ztrace.format.events import EVENT_NAMES

            t = self.bpf.get_table("pair_misses")
            for i in range(32):
                n = int(t.sum(i).value)
                if n:
                    what = "return_missed" if i < 16 else "entry_missed"
                    seen[f"{what}:{EVENT_NAMES.get(i % 16, i % 16)}"] = n
        skipped: dict[str, int] = {}
        for name, fn in getattr(self.bpf, "funcs", {}).items():
            n = prog_recursion_misses(fn.fd)
            if n:
                skipped[name.decode() if isinstance(name, bytes) else str(name)] = n
        return ProbeMisses(nmissed, skipped, kprobe_progs, seen)

    def lock_class_table(self) -> Any:
        """The probes' ``lock_class`` map (lock address -> index, size), or None when the
        program reads no class (zs_capture.bpf.c: ZT_CLASS_INDEX_OFF)."""
        if not any(f.startswith("-DZT_CLASS_INDEX_OFF=") for f in self.plan.cflags):
            return None
        return self.bpf.get_table("lock_class")

    def walk_stack(self, stack_id: int) -> list[int]:
        if self._stacks is None:
            return []
        return list(self._stacks.walk(stack_id))

    def close(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()
        self.bpf.cleanup()


@dataclass
class ProbeMisses:
    """Probe runs the kernel did not make, by probe (kprobe_profile name) and by program."""

    #: kprobe_profile ``missed`` of our tracefs probes (kretprobes: no free instance, or
    #: re-entered), by event name without its ``_bcc_PID`` suffix
    nmissed: dict[str, int]
    #: bpf_prog_info.recursion_misses by program name: runs skipped because a BPF program
    #: was already running on that CPU (6.12 kernel/trace/bpf_trace.c: trace_call_bpf,
    #: bpf_prog_active; raw tracepoints: the program's own `active` counter)
    skipped: dict[str, int]
    #: names of the kprobe-pair programs (each skipped run of one is one lost event)
    kprobe_progs: set[str]
    #: the probes' own pair counters by function: ``return_missed:zswap_store`` ...
    seen: dict[str, int] = field(default_factory=dict)

    @property
    def pair_nmissed(self) -> int:
        """kprobe_profile misses of the kprobe pairs (the spinlock slowpath's are re-entries)."""
        return sum(v for k, v in self.nmissed.items() if _SPIN_SLOWPATH not in k)

    @property
    def pair_lost(self) -> int:
        """Events of kprobe pairs that these counters say were lost (an upper bound: with
        --pid/--cgroup a miss may be for a task the capture would have skipped)."""
        progs = (k for k in self.kprobe_progs if not k.startswith(_SPIN_PROGS))
        return self.pair_nmissed + sum(self.skipped.get(k, 0) for k in progs)

    @property
    def spin_reentry(self) -> int:
        """Misses of the spinlock slowpath probe: re-entries, not losses. The slowpath cannot
        sleep, so at most one call per CPU and context (task, softirq, hardirq, NMI) is in
        flight, far below the kretprobe's instances; what it misses is a contended spinlock
        taken inside a probe handler (6.12 kernel/kprobes.c: a probe hit while
        kprobe_running() only counts nmissed), e.g. the ring buffer's or a hash map
        bucket's lock in our own programs: waits the capture itself caused, which no probe
        can observe. Its programs' skipped runs likewise: a BPF program or a map syscall
        (which holds bpf_prog_active: kernel/bpf/syscall.c, bpf_disable_instrumentation)
        was running on that CPU when the lock it took was contended."""
        nmissed = sum(v for k, v in self.nmissed.items() if _SPIN_SLOWPATH in k)
        return nmissed + sum(v for k, v in self.skipped.items() if k.startswith(_SPIN_PROGS))

    @property
    def lock_lost(self) -> int:
        """Skipped runs of the lock tracepoint programs: mostly re-entries (a lock contended
        inside one of our programs fires the tracepoint again), reported, not counted."""
        return sum(v for k, v in self.skipped.items() if _EVENT_PROG_MARK in k)

    @property
    def other_skipped(self) -> int:
        """Skipped runs that lose no event we record (kmem tracepoints fire for every slab
        cache; the comm-cache programs only bump a generation)."""
        return sum(
            v
            for k, v in self.skipped.items()
            if k not in self.kprobe_progs and _EVENT_PROG_MARK not in k
        )

    def describe(self) -> str:
        """One line for the trace metadata: every non-zero counter by name."""
        parts = [f"{k}={v}" for k, v in sorted(self.seen.items()) if v]
        parts += [f"kprobe_profile:{k}={v}" for k, v in sorted(self.nmissed.items()) if v]
        parts += [f"prog:{k}={v}" for k, v in sorted(self.skipped.items()) if v]
        return ",".join(parts)


def kprobe_profile() -> dict[str, int]:
    """tracefs ``kprobe_profile``: event name -> missed (6.12 kernel/trace/trace_kprobe.c:
    probes_profile_seq_show prints name, hits, kp.nmissed + rp.nmissed)."""
    for base in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        try:
            text = Path(base, "kprobe_profile").read_text()
        except OSError:
            continue
        out = {}
        for line in text.splitlines():
            f = line.split()
            if len(f) == 3 and f[2].isdigit():
                out[f[0]] = int(f[2])
        return out
    return {}


_NR_BPF: dict[str, int] = {"x86_64": 321, "aarch64": 280}
_BPF_OBJ_GET_INFO_BY_FD = 15
#: struct bpf_prog_info up to and including recursion_misses (5.12+), and its offset
#: (include/uapi/linux/bpf.h; the same layout in 6.1, 6.12 and 6.18)
_PROG_INFO_LEN = 216
_RECURSION_MISSES_OFF = 208


def prog_counters(prog_fd: int) -> tuple[int, int, int] | None:
    """``(run_time_ns, run_cnt, recursion_misses)`` of a loaded program, the last three u64
    of that prefix of struct bpf_prog_info (the first two count only while
    ``kernel.bpf_stats_enabled`` is 1); None where unknown."""
    import ctypes
    import platform
    import struct

    nr = _NR_BPF.get(platform.machine())
    if nr is None or prog_fd < 0:
        return None
    info = (ctypes.c_uint8 * _PROG_INFO_LEN)()
    attr = (ctypes.c_uint8 * 16)()
    struct.pack_into("<IIQ", attr, 0, prog_fd, _PROG_INFO_LEN, ctypes.addressof(info))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, _BPF_OBJ_GET_INFO_BY_FD, attr, len(attr)):
        return None
    (info_len,) = struct.unpack_from("<I", attr, 4)
    if info_len < _RECURSION_MISSES_OFF + 8:
        return None
    run_ns, runs, misses = struct.unpack_from("<QQQ", info, _RECURSION_MISSES_OFF - 16)
    return int(run_ns), int(runs), int(misses)


def prog_recursion_misses(prog_fd: int) -> int:
    """``bpf_prog_info.recursion_misses`` of a loaded program (0 where unknown)."""
    counters = prog_counters(prog_fd)
    return 0 if counters is None else counters[2]


_PROG_TEST_RUN = 10


def prog_test_run_attr(prog_fd: int, ctx: Any = None, *, flags: int = 0, cpu: int = 0) -> Any:
    """``union bpf_attr`` for BPF_PROG_TEST_RUN of a raw tracepoint program: ``ctx`` (a
    ctypes u64 array, kept alive by the caller) is the tracepoint's argument array
    (net/bpf/test_run.c: bpf_prog_test_run_raw_tp)."""
    import ctypes
    import struct

    attr = (ctypes.c_uint8 * 80)()
    size, addr = (ctypes.sizeof(ctx), ctypes.addressof(ctx)) if ctx is not None else (0, 0)
    # union bpf_attr.test: prog_fd, retval, data_size_in/out, data_in/out, repeat,
    # duration, ctx_size_in/out, ctx_in/out, flags, cpu, batch_size (include/uapi/linux/bpf.h)
    fields = (prog_fd, 0, 0, 0, 0, 0, 0, 0, size, 0, addr, 0, flags, cpu, 0)
    struct.pack_into("<IIIIQQIIIIQQIII", attr, 0, *fields)
    return attr


def prog_test_run(attr: Any) -> int:
    """Run BPF_PROG_TEST_RUN with an attr from :func:`prog_test_run_attr`; 0, or the errno."""
    import ctypes
    import platform

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_NR_BPF[platform.machine()], _PROG_TEST_RUN, attr, len(attr)):
        return ctypes.get_errno()
    return 0


class BatchFlusher:
    """Runs ``zt_flush_cpu`` on each online CPU through ``BPF_PROG_TEST_RUN`` with
    ``BPF_F_TEST_RUN_ON_CPU`` (Linux 5.10+; net/bpf/test_run.c: bpf_prog_test_run_raw_tp runs
    the program in an IPI on that CPU). A timer inside BPF would need bpf_timer pinned per
    CPU (6.7+) and a cpu-clock perf event does not tick on idle CPUs; the consumer is awake
    whenever it reads, so it is the one clock that always runs when a flush matters."""

    _NR_BPF: ClassVar[dict[str, int]] = _NR_BPF
    _PROG_TEST_RUN = _PROG_TEST_RUN
    _F_TEST_RUN_ON_CPU = 1

    def __init__(self, prog_fd: int) -> None:
        import ctypes
        import platform

        machine = platform.machine()
        if machine not in self._NR_BPF:
            raise CaptureError(f"no bpf(2) syscall number known for {machine}")
        self._nr = self._NR_BPF[machine]
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._cpus = online_cpus()
        self._last = 0
        self._attrs: list[ctypes.Array[ctypes.c_uint8]] = [
            prog_test_run_attr(prog_fd, flags=self._F_TEST_RUN_ON_CPU, cpu=cpu)
            for cpu in self._cpus
        ]

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
