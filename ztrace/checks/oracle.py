"""Oracle: drive the real zram device and check the zsmalloc model page-exactly against it.

Method (details and results in docs/model.md):

1. Take ``/tmp/ztrace-zram0.lock`` (``fcntl.flock``) for the whole run, so concurrent users of
   ``/dev/zram0`` in this project serialise. Save the device settings, ``reset`` it, set the
   compression algorithm and ``disksize``; restore all of it afterwards, also on error,
   Ctrl-C or SIGTERM.
2. Run a seeded, single-threaded sequence of 4 KiB operations with ``O_DIRECT`` page-aligned
   I/O (every write reaches ``zram_write_page()`` synchronously, no page cache): writes and
   overwrites of random slots with a mix of compressibilities (incompressible pages that
   zram stores as huge ``PAGE_SIZE`` objects, same-filled pages that zram does not store in
   zsmalloc at all, compressible pages of many sizes), and one-page ``BLKDISCARD``s.
3. After every operation read ``/sys/block/<dev>/mm_stat``. zram adds exactly the length it
   passes to ``zs_malloc()`` to ``compr_data_size`` (``PAGE_SIZE`` for a huge page) and
   subtracts it in ``zram_free_page()``, so the size of a write's new object is
   ``delta(compr_data_size) + size of the slot's old object``. ``huge_pages`` and
   ``same_pages`` deltas cross-check the classification.
4. Emit the zsmalloc operations in the kernel's order as a format-v1 trace
   (``source=oracle``): on 6.18, ``zram_write_page()`` / ``write_incompressible_page()``
   call ``zs_malloc()`` for the new data *before* ``zram_free_page()`` releases the old
   object ("zram: fix slot write race condition", v6.17); a same-filled write and a discard
   only free. Every 1,000 ops a ``checkpoint`` row records ``mem_used_total / PAGE_SIZE``
   (``zs_get_total_pages()``) in ``pool_pages``; ``/sys/block/<dev>/compact`` (synchronous
   ``zs_compact()``) becomes a ``zs_compact`` row followed by a checkpoint.
5. Replay the trace file through a fresh model and compare at every checkpoint. A live model
   also runs alongside and is compared after *every* operation.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ztrace.checks.oracle_config import OracleConfig
from ztrace.errors import CaptureError, ConfigError
from ztrace.format.zram_stat import MM_STAT
from ztrace.host.zram import PAGE, ZramDevice
from ztrace.model.classes import build_classes, kernel_profile
from ztrace.model.zsmalloc import ZsPool, new_pool

MM_STAT_FIELDS = MM_STAT
CHECKPOINT_EVERY = 1000

# op kinds of the generated workload
OP_WRITE, OP_DISCARD = 0, 1
# data kinds of a write
D_COMPRESSIBLE, D_INCOMPRESSIBLE, D_SAME = 0, 1, 2


@dataclass
class Checkpoint:
    op: int  # ops completed when taken
    phase: str  # "before" | "after" compaction
    kernel_pages: int
    model_pages: int
    label: str = ""

    @property
    def ok(self) -> bool:
        return self.kernel_pages == self.model_pages


@dataclass
class OracleResult:
    """Everything ``ztrace oracle zram --json`` prints."""

    kernel_release: str
    device: str
    comp_algorithm: str
    seed: int
    chain_size: int
    alloc_before_free: bool
    #: where chain_size came from: the kernel config file read, or "default"
    chain_size_source: str = "default"
    #: the modelled generation (model/classes.py: kernel_profile): the <= 6.2 class table,
    #: and the >= 6.4 in-use-ratio fullness groups (else the <= 6.3 four groups)
    legacy_classes: bool = False
    ratio_groups: bool = True
    ops: int = 0
    ops_before_compaction: int = 0
    ops_after_compaction: int = 0
    writes: int = 0
    overwrites: int = 0
    discards: int = 0
    same_filled_writes: int = 0
    huge_writes: int = 0
    zs_malloc_events: int = 0
    zs_free_events: int = 0
    checkpoints: list[Checkpoint] = field(default_factory=list)
    per_op_mismatches: int = 0
    first_per_op_mismatch: dict[str, int] | None = None
    classification_errors: int = 0
    unrequested_compactions: int = 0
    compactions: list[dict[str, int]] = field(default_factory=list)
    peak_kernel_pages: int = 0
    huge_class_size: int = 0
    trace_path: str | None = None
    trace_events: int = 0
    elapsed_s: float = 0.0

    @property
    def mismatches_before(self) -> int:
        return sum(1 for c in self.checkpoints if c.phase == "before" and not c.ok)

    @property
    def mismatches_after(self) -> int:
        return sum(1 for c in self.checkpoints if c.phase == "after" and not c.ok)

    def as_dict(self) -> dict[str, Any]:
        before = [c for c in self.checkpoints if c.phase == "before"]
        after = [c for c in self.checkpoints if c.phase == "after"]
        return {
            "kernel_release": self.kernel_release,
            "device": self.device,
            "comp_algorithm": self.comp_algorithm,
            "seed": self.seed,
            "chain_size": self.chain_size,
            "chain_size_source": self.chain_size_source,
            "legacy_classes": self.legacy_classes,
            "ratio_groups": self.ratio_groups,
            "huge_class_size": self.huge_class_size,
            "alloc_before_free": self.alloc_before_free,
            "ops": self.ops,
            "ops_before_compaction": self.ops_before_compaction,
            "ops_after_compaction": self.ops_after_compaction,
            "writes": self.writes,
            "overwrites": self.overwrites,
            "discards": self.discards,
            "same_filled_writes": self.same_filled_writes,
            "huge_writes": self.huge_writes,
            "zs_malloc_events": self.zs_malloc_events,
            "zs_free_events": self.zs_free_events,
            "checkpoints": len(self.checkpoints),
            "checkpoints_before_compaction": len(before),
            "checkpoints_after_compaction": len(after),
            "mismatches_before_compaction": self.mismatches_before,
            "mismatches_after_compaction": self.mismatches_after,
            "per_op_checks": self.ops,
            "per_op_mismatches": self.per_op_mismatches,
            "first_per_op_mismatch": self.first_per_op_mismatch,
            "classification_errors": self.classification_errors,
            "unrequested_compactions": self.unrequested_compactions,
            "compactions": self.compactions,
            "pages": {
                "peak_kernel": self.peak_kernel_pages,
                "before_compaction_kernel": self.compactions[0]["kernel_before"]
                if self.compactions
                else None,
                "after_compaction_kernel": self.compactions[0]["kernel_after"]
                if self.compactions
                else None,
                "after_compaction_model": self.compactions[0]["model_after"]
                if self.compactions
                else None,
                "final_kernel": self.checkpoints[-1].kernel_pages if self.checkpoints else None,
                "final_model": self.checkpoints[-1].model_pages if self.checkpoints else None,
            },
            "mismatched_checkpoints": [
                {"op": c.op, "phase": c.phase, "kernel": c.kernel_pages, "model": c.model_pages}
                for c in self.checkpoints
                if not c.ok
            ][:20],
            "trace_path": self.trace_path,
            "trace_events": self.trace_events,
            "elapsed_s": round(self.elapsed_s, 2),
        }


# ------------------------------------------------------------------------- device control


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the device is restored on ``kill`` too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------- workload


class Workload:
    """Seeded op stream: which slot, what kind, and the page contents."""

    def __init__(self, seed: int, slots: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.slots = slots
        self.page = np.zeros(PAGE, dtype=np.uint8)

    def next_op(self, p_discard: float) -> tuple[int, int, int]:
        r = self.rng.random()
        slot = int(self.rng.integers(self.slots))
        if r < p_discard:
            return OP_DISCARD, slot, 0
        d = self.rng.random()
        if d < 0.06:
            return OP_WRITE, slot, D_SAME
        if d < 0.15:
            return OP_WRITE, slot, D_INCOMPRESSIBLE
        return OP_WRITE, slot, D_COMPRESSIBLE

    def fill(self, kind: int, out: memoryview) -> None:
        """Write the page contents for ``kind`` into the 4 KiB buffer ``out``."""
        rng = self.rng
        p = self.page
        if kind == D_SAME:
            # page_same_filled(): every unsigned long equal; half zero pages, half patterns.
            word = 0 if rng.random() < 0.5 else int(rng.integers(1, 2**63))
            p.view(np.uint64)[:] = word
        elif kind == D_INCOMPRESSIBLE:
            p[:] = rng.integers(0, 256, PAGE, dtype=np.uint8)
        else:
            # A random prefix then zeros: lzo output ~ prefix length, so sizes span the
            # classes. Skew towards small objects as real swap data does.
            n = int(rng.integers(8, 700 if rng.random() < 0.5 else 3700))
            p[:n] = rng.integers(0, 256, n, dtype=np.uint8)
            p[n:] = 0
            # a non-zero last word keeps the page from being "same filled" by accident
            p[PAGE - 1] = 1 + int(rng.integers(255))
        out[:] = p.tobytes()


# ------------------------------------------------------------------------- the run


class _Trace:
    """Columns of the oracle trace, accumulated in Python lists."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.event: list[str] = []
        self.size: list[int] = []
        self.handle: list[int] = []
        self.dur: list[int] = []
        self.pool_pages: list[int | None] = []
        self.class_idx: list[int | None] = []
        self._last_ts = 0

    def add(
        self,
        event: str,
        *,
        size: int = 0,
        handle: int = 0,
        dur: int = 0,
        pool_pages: int | None = None,
        class_idx: int | None = None,
    ) -> None:
        ts = max(time.monotonic_ns(), self._last_ts)
        self._last_ts = ts
        self.ts.append(ts)
        self.event.append(event)
        self.size.append(size)
        self.handle.append(handle)
        self.dur.append(dur)
        self.pool_pages.append(pool_pages)
        self.class_idx.append(class_idx)

    def __len__(self) -> int:
        return len(self.ts)


def run_oracle(cfg: OracleConfig) -> OracleResult:
    """Run the zram oracle (root, a zram device) and return its result."""
    if cfg.ops < 1 or cfg.n_after < 0:
        raise ConfigError("--ops must be >= 1 and --ops-after >= 0")
    if cfg.slots < 16:
        raise ConfigError("--slots must be >= 16")
    if os.geteuid() != 0:
        raise CaptureError("the zram oracle needs root")
    release = os.uname().release
    prof = kernel_profile(release)
    chain, chain_src = _chain_size_of_running_kernel(release)
    table = build_classes(None if prof.legacy_classes else chain, legacy=prof.legacy_classes)
    alloc_first = prof.alloc_before_free if cfg.alloc_before_free is None else cfg.alloc_before_free
    res = OracleResult(
        kernel_release=release,
        device=cfg.device,
        comp_algorithm=cfg.comp_algorithm,
        seed=cfg.seed,
        chain_size=table.chain_size,
        alloc_before_free=alloc_first,
        chain_size_source="legacy table (no chain size before 6.3)"
        if prof.legacy_classes
        else chain_src,
        legacy_classes=prof.legacy_classes,
        ratio_groups=prof.ratio_groups,
        huge_class_size=table.huge_class_size,
    )
    live = new_pool(table, ratio_groups=prof.ratio_groups)
    tr = _Trace()
    t_start = time.monotonic()
    dev = ZramDevice(
        cfg.device, cfg.slots * PAGE, cfg.comp_algorithm, lock_timeout_s=cfg.lock_timeout_s
    )
    with _sigterm_as_interrupt(), dev:
        _drive(cfg, dev, live, table.huge_class_size, alloc_first, tr, res)
    res.elapsed_s = time.monotonic() - t_start
    # Replay the trace (from the file when one was written) through a fresh model.
    table_arrow = _to_table(tr)
    if cfg.out_dir:
        from ztrace.format import TraceMeta, read_trace, write_trace

        meta = TraceMeta(
            kernel_release=release,
            page_size=PAGE,
            nr_cpus=os.cpu_count() or 1,
            zsmalloc_chain_size=table.chain_size,
            source="oracle",
            extra={
                "device": cfg.device,
                "comp_algorithm": cfg.comp_algorithm,
                "seed": str(cfg.seed),
                "alloc_before_free": str(alloc_first).lower(),
                "ratio_groups": str(prof.ratio_groups).lower(),
            },
        )
        path = write_trace(cfg.out_dir, table_arrow, meta, force=cfg.force)
        res.trace_path = str(path)
        table_arrow = read_trace(cfg.out_dir).table
    res.trace_events = table_arrow.num_rows
    replay_pool = new_pool(table, ratio_groups=prof.ratio_groups)
    model_pages = replay_checkpoints(replay_pool, table_arrow)
    # The checkpoints of the result are those of the trace replay (the live model is the
    # per-op check); both must agree, else the trace lost information.
    if len(model_pages) != len(res.checkpoints):
        raise CaptureError("internal: checkpoint count differs between run and trace")
    for cp, mp in zip(res.checkpoints, model_pages, strict=True):
        cp.model_pages = int(mp)
    return res


def _chain_size_of_running_kernel(release: str) -> tuple[int, str]:
    """CONFIG_ZSMALLOC_CHAIN_SIZE and the file it came from: /proc/config.gz, else
    /boot/config-RELEASE (Debian kernels have no CONFIG_IKCONFIG_PROC, but ship this file),
    else (8, "default"), the Kconfig default since 6.3 (mm/Kconfig: ZSMALLOC_CHAIN_SIZE)."""
    import gzip

    for path in ("/proc/config.gz", f"/boot/config-{release}"):
        try:
            with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
                for line in f:
                    if line.startswith("CONFIG_ZSMALLOC_CHAIN_SIZE="):
                        return int(line.split("=", 1)[1]), path
        except OSError:
            continue
    return 8, "default"


def _drive(
    cfg: OracleConfig,
    dev: ZramDevice,
    live: ZsPool,
    huge_class_size: int,
    alloc_first: bool,
    tr: _Trace,
    res: OracleResult,
) -> None:
    wl = Workload(cfg.seed, cfg.slots)
    buf = mmap.mmap(-1, PAGE)  # page-aligned: O_DIRECT needs an aligned buffer
    view = memoryview(buf)
    # per slot: stored size as counted in compr_data_size (0 = none / same-filled), the trace
    # handle and the live-model object id of the stored object (-1 = none)
    stored = np.zeros(cfg.slots, dtype=np.int64)
    handle_of = np.zeros(cfg.slots, dtype=np.int64)
    obj_of = np.full(cfg.slots, -1, dtype=np.int64)
    next_handle = 1
    prev = dev.mm_stat_values()
    total = cfg.ops + cfg.n_after
    i_cmp = MM_STAT_FIELDS.index("compr_data_size")
    i_mem = MM_STAT_FIELDS.index("mem_used_total")
    i_same = MM_STAT_FIELDS.index("same_pages")
    i_huge = MM_STAT_FIELDS.index("huge_pages")
    i_pc = MM_STAT_FIELDS.index("pages_compacted")

    def checkpoint(op: int, phase: str, label: str, mm: tuple[int, ...]) -> None:
        kp = mm[i_mem] // PAGE
        tr.add("checkpoint", pool_pages=kp)
        res.checkpoints.append(Checkpoint(op, phase, kp, -1, label))

    def compact(op: int, phase: str) -> None:
        before = dev.mm_stat_values()
        model_before = live.total_pages()
        t0 = time.monotonic_ns()
        dev.compact()
        dur = time.monotonic_ns() - t0
        after = dev.mm_stat_values()
        tr.add("zs_compact", dur=dur)
        freed_model = live.compact()
        res.compactions.append(
            {
                "op": op,
                "kernel_before": before[i_mem] // PAGE,
                "model_before": model_before,
                "kernel_after": after[i_mem] // PAGE,
                "model_after": live.total_pages(),
                "kernel_pages_compacted": after[i_pc] - before[i_pc],
                "model_pages_freed": freed_model,
            }
        )
        checkpoint(op, phase, "compaction", after)

    phase = "before"
    for k in range(total):
        if k == cfg.ops:
            compact(k, "after")
            prev = dev.mm_stat_values()
            phase = "after"
        # Fill first, then free heavily before the compaction so zspages are sparse and
        # compaction has real work; steady churn after it.
        p_discard = (0.15 if k < cfg.ops // 2 else 0.55) if phase == "before" else 0.35
        op, slot, kind = wl.next_op(p_discard)
        old_size = int(stored[slot])
        old_handle = int(handle_of[slot])
        old_obj = int(obj_of[slot])
        if op == OP_WRITE:
            wl.fill(kind, view)
            t0 = time.monotonic_ns()
            dev.write_page(slot, buf)
            dur = time.monotonic_ns() - t0
            cur = dev.mm_stat_values()
            new_size = cur[i_cmp] - prev[i_cmp] + old_size
            d_huge = cur[i_huge] - prev[i_huge] + (1 if old_size == PAGE else 0)
            d_same = cur[i_same] - prev[i_same] + (1 if old_obj < 0 and old_handle < 0 else 0)
            res.writes += 1
            if old_size or old_handle < 0:
                res.overwrites += 1
            # cross-check the classification the sizes imply against what we wrote
            if kind == D_SAME:
                res.same_filled_writes += 1
                if new_size != 0 or d_same != 1:
                    res.classification_errors += 1
            elif new_size == PAGE:
                res.huge_writes += 1
                if d_huge != 1:
                    res.classification_errors += 1
            elif not 0 < new_size < huge_class_size or d_huge != 0:
                res.classification_errors += 1
            if kind == D_INCOMPRESSIBLE and new_size != PAGE:
                res.classification_errors += 1

            # Kernel order: zs_malloc() of the new object, then zram_free_page() of the old
            # one (6.18); a same-filled write only frees.
            new_obj = -1
            h = 0
            free_old = old_obj >= 0
            if free_old and (new_size == 0 or not alloc_first):
                _emit_free(tr, res, live, old_handle, old_size, old_obj)
                free_old = False
            if new_size > 0:
                h = next_handle
                next_handle += 1
                tr.add(
                    "zs_malloc",
                    size=new_size,
                    handle=h,
                    dur=dur,
                    class_idx=int(live.class_index(new_size)),
                )
                res.zs_malloc_events += 1
                new_obj = live.malloc(new_size)
            if free_old:
                _emit_free(tr, res, live, old_handle, old_size, old_obj)
            stored[slot] = new_size
            handle_of[slot] = h if new_size > 0 else (-1 if kind == D_SAME else 0)
            obj_of[slot] = new_obj
        else:
            t0 = time.monotonic_ns()
            dev.discard_page(slot)
            dur = time.monotonic_ns() - t0
            cur = dev.mm_stat_values()
            res.discards += 1
            if cur[i_cmp] - prev[i_cmp] != -old_size:
                res.classification_errors += 1
            if old_obj >= 0:
                _emit_free(tr, res, live, old_handle, old_size, old_obj, dur)
            stored[slot] = 0
            handle_of[slot] = 0
            obj_of[slot] = -1
        # Compaction we did not ask for (the zsmalloc shrinker under memory pressure) would
        # change the pool behind the model's back: record it and apply it to the model.
        if cur[i_pc] != prev[i_pc]:
            res.unrequested_compactions += 1
            tr.add("zs_compact")
            live.compact()
        kp = cur[i_mem] // PAGE
        res.peak_kernel_pages = max(res.peak_kernel_pages, kp)
        if kp != live.total_pages():
            res.per_op_mismatches += 1
            if res.first_per_op_mismatch is None:
                res.first_per_op_mismatch = {
                    "op": k + 1,
                    "kernel": kp,
                    "model": int(live.total_pages()),
                    "slot": slot,
                    "op_kind": op,
                    "data_kind": kind,
                    "new_size": int(stored[slot]),
                    "old_size": old_size,
                }
        prev = cur
        done = k + 1
        if done % CHECKPOINT_EVERY == 0:
            checkpoint(done, phase, "", cur)
        if cfg.progress is not None and done % 1000 == 0:
            cfg.progress(done, total)
    if cfg.n_after > 0 or not res.compactions:
        # final compaction: the after-compaction state of the whole run
        compact(total, "after")
    res.ops = total
    res.ops_before_compaction = cfg.ops
    res.ops_after_compaction = cfg.n_after
    view.release()
    buf.close()


def _emit_free(
    tr: _Trace,
    res: OracleResult,
    live: ZsPool,
    handle: int,
    size: int,
    obj: int,
    dur: int = 0,
) -> None:
    tr.add("zs_free", handle=handle, size=size, dur=dur)
    res.zs_free_events += 1
    live.free(obj)


def _to_table(tr: _Trace) -> Any:
    from ztrace.format import make_events

    n = len(tr)
    tid = threading.get_native_id()
    return make_events(
        ts_ns=np.asarray(tr.ts, dtype=np.uint64),
        event=tr.event,
        cpu=np.zeros(n, dtype=np.uint16),
        tid=np.full(n, tid, dtype=np.uint32),
        pool=np.zeros(n, dtype=np.uint64),
        size_bytes=np.asarray(tr.size, dtype=np.uint32),
        handle=np.asarray(tr.handle, dtype=np.uint64),
        duration_ns=np.asarray(tr.dur, dtype=np.uint64),
        pool_pages=tr.pool_pages,
        class_idx=tr.class_idx,
    )


def replay_checkpoints(pool: ZsPool, table: Any) -> list[int]:
    """Replay a trace table through ``pool``; model pages at each ``checkpoint`` row.

    Handles are the trace's synthetic ids; they map to model object ids here. Unknown event
    names are ignored (forward compatibility of the format).
    """
    events = table.column("event").to_pylist()
    sizes = table.column("size_bytes").to_numpy()
    handles = table.column("handle").to_numpy()
    objs: dict[int, int] = {}
    out: list[int] = []
    for i, ev in enumerate(events):
        if ev == "zs_malloc":
            obj = pool.malloc(int(sizes[i]))
            if obj < 0:
                raise CaptureError(f"trace row {i}: zs_malloc({int(sizes[i])}) fails")
            objs[int(handles[i])] = obj
        elif ev == "zs_free":
            obj = objs.pop(int(handles[i]), -1)
            if obj < 0 or not pool.free(obj):
                raise CaptureError(f"trace row {i}: zs_free of unknown handle {handles[i]}")
        elif ev == "zs_compact":
            pool.compact()
        elif ev == "checkpoint":
            out.append(int(pool.total_pages()))
    return out


def describe_errno(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))
