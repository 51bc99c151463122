"""The capture loop: ring buffer -> reorder window -> Arrow -> rotating Parquet files.

Memory is bounded: the ring buffer is fixed-size (``--ringbuf-pages``), and the reorder
buffer holds at most ``reorder_window`` of events (forced out early past ``max_pending``
rows). Records the kernel could not queue are counted in the kernel and end up in every
file's ``ztrace.lost_events`` and in the exit footer.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ztrace.capture import attribute
from ztrace.capture.events import (
    EV_FREE,
    EV_LOCK,
    EV_MALLOC,
    EV_MALLOC_FAIL,
    EV_MIGRATE,
    EV_SPIN,
    EV_ZSWAP_INVAL,
    EV_ZSWAP_LOAD,
    EV_ZSWAP_STORE,
    EV_ZSWAP_WB,
    EVENT_DTYPE,
    EVENT_NAMES,
)
from ztrace.capture.features import Features, Kallsyms, detect, require_privileges
from ztrace.capture.loader import Loaded, make_plan, pool_name
from ztrace.format import TraceMeta, TraceWriter

DEFAULT_PROBES = ("zsmalloc", "locks")
#: event column dictionary: code k (ZT_EV_*) is entry k - 1
_EVENT_DICT = [EVENT_NAMES[k] for k in sorted(EVENT_NAMES)]
assert sorted(EVENT_NAMES) == list(range(1, len(_EVENT_DICT) + 1))


@dataclass
class CaptureOptions:
    out: Path
    probes: list[str] = field(default_factory=lambda: list(DEFAULT_PROBES))
    duration_s: float | None = None
    pool: str | None = None
    ringbuf_pages: int = 4096
    rotate_mb: float = 64.0
    rotate_s: float | None = None
    anonymize: bool = False
    command: list[str] | None = None
    target_tgid: int = 0
    reorder_window_ms: float = 500.0
    max_pending: int = 4_000_000
    #: seconds between writes; None = hold everything until the end (short experiments on
    #: a busy host: the consumer then only copies the ring, the cheapest way to lose nothing)
    flush_interval_s: float | None = 0.2
    poll_ms: int = 50


@dataclass
class CaptureSummary:
    events: int = 0
    by_event: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    late_dropped: int = 0
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    modes: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    skipped_kprobes: list[str] = field(default_factory=list)
    command_rc: int | None = None
    stacks: dict[int, list[str]] = field(default_factory=dict)
    consumer_cpu_s: float = 0.0

    @property
    def lost_events(self) -> int:
        return self.lost.get("ringbuf_full", 0) + self.lost.get("inflight_full", 0)

    def footer(self) -> str:
        """perf-style trust footer: what was written and what was lost."""
        lines = ["", "=== ztrace capture summary ==="]
        per = ", ".join(f"{k} {v}" for k, v in sorted(self.by_event.items())) or "none"
        lines.append(f"events: {self.events} in {self.seconds:.1f} s ({per})")
        lines.append(f"files: {len(self.files)} in {self.files[0].parent if self.files else '-'}")
        if self.events:
            lines.append(
                f"consumer CPU: {self.consumer_cpu_s:.2f} s "
                f"({1e6 * self.consumer_cpu_s / self.events:.2f} us/event)"
            )
        lines.append("probes: " + ", ".join(f"{k}={v}" for k, v in self.modes.items()))
        for k, miss in self.missing.items():
            if miss:
                lines.append(f"not captured ({k}): " + "; ".join(miss))
        for s in self.skipped_kprobes:
            lines.append(f"skipped kprobe: {s}")
        bad = self.lost_events + self.late_dropped
        lines.append(
            f"lost: {bad}, total: {self.events + bad} "
            f"(ringbuf_full {self.lost.get('ringbuf_full', 0)}, "
            f"inflight_full {self.lost.get('inflight_full', 0)}, "
            f"late_for_reorder {self.late_dropped}; "
            f"end_without_begin {self.lost.get('end_without_begin', 0)} not counted as lost)"
        )
        if self.lost.get("ringbuf_full", 0):
            lines.append("Consider increasing --ringbuf-pages.")
        if self.command_rc is not None:
            lines.append(f"command exit status: {self.command_rc}")
        return "\n".join(lines)


class _Anonymizer:
    """Dense ids for pids/tids and salted hashes for comms, stable within one capture."""

    def __init__(self) -> None:
        self._salt = os.urandom(16)
        self._ids: dict[int, int] = {}
        self._comms: dict[bytes, str] = {}

    def ids(self, a: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(a, return_inverse=True)
        mapped = np.array([self._ids.setdefault(int(u), len(self._ids) + 1) for u in uniq])
        return mapped[inv].astype(np.uint32) if len(a) else a.astype(np.uint32)

    def comm(self, c: bytes) -> str:
        s = self._comms.get(c)
        if s is None:
            s = "task-" + hashlib.blake2s(c, key=self._salt, digest_size=4).hexdigest()
            self._comms[c] = s
        return s


class _CaptureWriter(TraceWriter):
    """TraceWriter that dictionary-encodes only the dictionary columns.

    Parquet's default tries a dictionary for every column; on random 64-bit handles and
    addresses that is wasted work and made writing 3x slower than reading the ring.
    """

    def _open(self) -> None:
        import pyarrow.parquet as pq

        super()._open()
        assert self._writer is not None and self._tmp is not None
        self._writer.close()
        dict_cols = [f.name for f in self.schema if pa.types.is_dictionary(f.type)]
        self._writer = pq.ParquetWriter(
            self._tmp,
            self.schema.with_metadata(self.meta.to_kv()),
            compression="zstd",
            use_dictionary=dict_cols,
        )


#: the record with comm seen as two u64 words, to hash it without copying strings
_COMM_WORDS = np.dtype(
    {
        "names": ["tid", "c0", "c1"],
        "formats": ["<u4", "<u8", "<u8"],
        "offsets": [
            EVENT_DTYPE.fields["tid"][1],
            EVENT_DTYPE.fields["comm"][1],
            EVENT_DTYPE.fields["comm"][1] + 8,
        ],
        "itemsize": EVENT_DTYPE.itemsize,
    }
)


class _CommCache:
    """comm column as dictionary indices, via a small tid-indexed cache.

    np.unique over every event's 16-byte comm sorts the whole batch and was the consumer's
    most expensive step. A task's comm rarely changes, so the cache maps tid (mod 64 Ki) to
    (comm hash, dictionary index); only events whose entry is missing or stale (another tid
    in the slot, an exec) take the slow path.
    """

    SLOTS = 1 << 16

    def __init__(self) -> None:
        self.names: list[str] = []
        self._by_key: dict[int, int] = {}
        self._tid = np.full(self.SLOTS, -1, np.int64)
        self._key = np.zeros(self.SLOTS, np.uint64)
        self._idx = np.zeros(self.SLOTS, np.int32)

    def encode(self, ev: np.ndarray, anon: _Anonymizer | None) -> pa.Array:
        w = ev.view(_COMM_WORDS)
        tid = w["tid"].astype(np.int64)
        key = w["c0"] ^ (w["c1"] * np.uint64(0x9E3779B97F4A7C15))
        slot = tid & (self.SLOTS - 1)
        ok = (self._tid[slot] == tid) & (self._key[slot] == key)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            uk, first = np.unique(key[bad], return_index=True)
            for k, f in zip(uk.tolist(), first.tolist(), strict=True):
                if k not in self._by_key:
                    raw = bytes(ev["comm"][bad[f]])
                    name = anon.comm(raw) if anon else raw.rstrip(b"\0").decode(errors="replace")
                    self._by_key[k] = len(self.names)
                    self.names.append(name)
            idx_of_uk = np.array([self._by_key[k] for k in uk.tolist()], np.int32)
            bslot = slot[bad]
            self._tid[bslot] = tid[bad]
            self._key[bslot] = key[bad]
            self._idx[bslot] = idx_of_uk[np.searchsorted(uk, key[bad])]
            idx = self._idx[slot]
            # two tids sharing a slot in one batch: the later write won; fix the others
            wrong = bad[self._key[bslot] != key[bad]]
            if len(wrong):
                idx[wrong] = idx_of_uk[np.searchsorted(uk, key[wrong])]
        else:
            idx = self._idx[slot]
        return _dict_column(idx, self.names)


def _dict_column(codes: np.ndarray, names: list[str], mask: np.ndarray | None = None) -> pa.Array:
    idx = pa.array(codes.astype(np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(idx, pa.array(names, pa.string()))


class Capture:
    """One capture: load probes, consume, write. Use :meth:`run` (blocking) or start/stop."""

    def __init__(self, opts: CaptureOptions, *, feats: Features | None = None) -> None:
        require_privileges()
        self.opts = opts
        self.feats = feats or detect()
        self.ksyms = Kallsyms()
        self.plan = make_plan(
            self.feats,
            opts.probes,
            pool=opts.pool,
            ringbuf_pages=opts.ringbuf_pages,
            target_tgid=opts.target_tgid,
            ksyms=self.ksyms,
        )
        self.summary = CaptureSummary(modes=dict(self.plan.modes), missing=self.plan.missing)
        self.columns = ["pid", "comm"]
        if "locks" in opts.probes:
            lock_cols = ["lock_addr", "lock_kind", "wait_ns", "lock_flags", "stack_id"]
            self.columns = [*lock_cols, *self.columns]
        if "zswap" in opts.probes:
            self.columns = [*self.columns, "swap_entry", "outcome", "compressed_bytes"]
        if self.plan.modes.get("zsmalloc") == "kprobe":
            self.columns = ["class_idx", *self.columns]  # zs_migrate's class
        self._anon = _Anonymizer() if opts.anonymize else None
        self._comms = _CommCache()
        self._pools: dict[int, str] = {}
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._last_written = 0
        self._stop = threading.Event()
        self.loaded: Loaded | None = None
        self.writer: TraceWriter | None = None
        self.attrib: attribute.StackAttributor | None = None
        self._lock_kinds = list(attribute.KINDS)
        self._t0 = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.loaded = Loaded(self.plan)
        self.summary.skipped_kprobes = self.loaded.skipped
        self.attrib = attribute.StackAttributor(
            self.loaded.walk_stack, self.ksyms.resolve, self.feats.version
        )
        extra = {
            "probes": ",".join(f"{k}:{v}" for k, v in self.plan.modes.items()),
            "pool_id": "first 8 bytes of the pool name, little-endian (names: extra.pools)"
            if self.plan.modes.get("zsmalloc") == "kmem-tracepoint"
            else "struct zs_pool address (names: extra.pools)",
            "not_captured": "; ".join(m for ms in self.plan.missing.values() for m in ms),
            "anonymized": str(self.opts.anonymize).lower(),
            "host": "" if self.opts.anonymize else platform.node(),
        }
        meta = TraceMeta(
            kernel_release=self.feats.release,
            page_size=os.sysconf("SC_PAGE_SIZE"),
            nr_cpus=os.cpu_count() or 1,
            source="capture",
            capture_start_ns=time.monotonic_ns(),
            schema_version=2 if "zswap" in self.opts.probes else 1,
            extra=extra,
        )
        self.writer = _CaptureWriter(
            self.opts.out,
            meta,
            columns=self._all_columns(),
            rotate_bytes=int(self.opts.rotate_mb * (1 << 20)),
            rotate_seconds=self.opts.rotate_s,
        )
        self._t0 = time.monotonic()
        self._cpu0 = time.thread_time()

    def _all_columns(self) -> list[str]:
        from ztrace.format import REQUIRED_COLUMNS

        return [*REQUIRED_COLUMNS, *self.columns]

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, until: Callable[[], bool] | None = None) -> CaptureSummary:
        """Consume until stopped, the duration passes, or ``until()`` is true; then flush."""
        if self.loaded is None:
            self.start()
        assert self.loaded is not None
        self._cpu0 = time.thread_time()  # finish() runs in this thread too
        deadline = self._t0 + self.opts.duration_s if self.opts.duration_s else None
        last_flush = time.monotonic()
        try:
            while not self._stop.is_set():
                # the probes submit without wakeups (see zs_capture.bpf.c): poll on a timer
                self._stop.wait(self.opts.poll_ms / 1000)
                self._drain()
                now = time.monotonic()
                due = (
                    self.opts.flush_interval_s is not None
                    and now - last_flush >= self.opts.flush_interval_s
                )
                if due or self._pending_rows >= self.opts.max_pending:
                    self._flush(final=False)
                    last_flush = now
                if deadline and now >= deadline:
                    break
                if until is not None and until():
                    break
        finally:
            self.finish()
        return self.summary

    def finish(self) -> None:
        """Drain what is left, write it all, close the last file with the final lost count."""
        if self.loaded is None or self.writer is None:
            return
        self._drain()
        self._flush(final=True)
        self.summary.lost = self.loaded.drops()
        # CPU of the consumer thread itself (the workload may share the process in tests)
        self.summary.consumer_cpu_s = time.thread_time() - self._cpu0
        extra = dict(self.writer.meta.extra)
        extra["consumer_cpu_s"] = f"{self.summary.consumer_cpu_s:.3f}"
        self.writer.meta = self.writer.meta.replace(extra=extra)
        self.writer.close(lost_events=self.summary.lost_events + self.summary.late_dropped)
        self.summary.files = list(self.writer.files)
        self.summary.seconds = time.monotonic() - self._t0
        self._write_stacks()
        self.loaded.close()
        self.loaded = None

    # ------------------------------------------------------------------ data path
    def _drain(self) -> None:
        assert self.loaded is not None
        while True:
            batch = self.loaded.reader.read()
            if not len(batch):
                return
            self._pending.append(batch)
            self._pending_rows += len(batch)
            if len(batch) < (1 << 16):
                return

    def _flush(self, *, final: bool) -> None:
        """Write pending events older than the reorder window, in ts order."""
        assert self.writer is not None and self.loaded is not None
        if not self._pending:
            return
        ev = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        ts = np.ascontiguousarray(ev["ts_ns"])  # argsort on a strided field is 10x slower
        if len(ts) > 1 and np.any(ts[1:] < ts[:-1]):
            ev = ev[np.argsort(ts, kind="stable")]
        if final:
            cut = len(ev)
        else:
            watermark = time.monotonic_ns() - int(self.opts.reorder_window_ms * 1e6)
            cut = int(np.searchsorted(ev["ts_ns"], watermark, side="right"))
            if len(ev) - cut > self.opts.max_pending:  # bound memory: give up some order slack
                cut = len(ev) - self.opts.max_pending // 2
        out, keep = ev[:cut], ev[cut:]
        self._pending = [keep] if len(keep) else []
        self._pending_rows = len(keep)
        if len(out):
            late = out["ts_ns"] < self._last_written
            if late.any():
                # arrived after later rows were written: the format needs ts order, so drop
                self.summary.late_dropped += int(late.sum())
                out = out[~late]
        if not len(out):
            return
        self._last_written = int(out["ts_ns"][-1])
        lost_now = sum(v for k, v in self.loaded.drops().items() if k != "end_without_begin")
        self.writer.meta = self.writer.meta.replace(
            lost_events=lost_now + self.summary.late_dropped, extra=self._pool_extra(out)
        )
        self.writer.write(self._table(out))
        self.summary.events += len(out)
        types, counts = np.unique(out["type"], return_counts=True)
        for t, c in zip(types, counts, strict=True):
            name = EVENT_NAMES.get(int(t), f"type{t}")
            self.summary.by_event[name] = self.summary.by_event.get(name, 0) + int(c)

    def _pool_extra(self, ev: np.ndarray) -> dict[str, str]:
        """Metadata ``pools`` = "pool column value=name;..." for the pools seen so far."""
        assert self.loaded is not None and self.writer is not None
        if self.plan.modes.get("zsmalloc") == "kmem-tracepoint":
            for pid in np.unique(ev["pool"][ev["type"] <= EV_FREE]).tolist():
                if pid:
                    self._pools[int(pid)] = pool_name(int(pid))
        else:
            self._pools.update(self.loaded.pool_names())
        extra = dict(self.writer.meta.extra)
        if self._pools:
            extra["pools"] = ";".join(f"{k:#x}={v}" for k, v in sorted(self._pools.items()))
        return extra

    def _table(self, ev: np.ndarray) -> pa.Table:
        n = len(ev)
        # A zs_malloc that returned an error allocated nothing: its own event, so replays that
        # count zs_malloc rows never replay it (issue 10).
        typ = np.where((ev["type"] == EV_MALLOC) & (ev["ret"] != 0), EV_MALLOC_FAIL, ev["type"])
        is_mig = typ == EV_MIGRATE
        cols: dict[str, pa.Array] = {
            "ts_ns": pa.array(ev["ts_ns"]),
            "cpu": pa.array(ev["cpu"]),
            "tid": pa.array(self._anon.ids(ev["tid"]) if self._anon else ev["tid"]),
            "event": _dict_column(typ.astype(np.int32) - 1, _EVENT_DICT),
            "pool": pa.array(ev["pool"]),
            "size_bytes": pa.array(np.where(is_mig, 0, ev["size"]).astype(np.uint32)),
            "handle": pa.array(np.where((typ == EV_LOCK) | (typ == EV_SPIN), 0, ev["handle"])),
            "duration_ns": pa.array(ev["duration_ns"]),
        }
        is_lock = (typ == EV_LOCK) | (typ == EV_SPIN)  # both carry lock columns
        if "lock_addr" in self.columns:
            not_lock = ~is_lock
            cols["lock_addr"] = pa.array(ev["handle"], mask=not_lock)
            cols["wait_ns"] = pa.array(ev["duration_ns"], mask=not_lock)
            cols["lock_flags"] = pa.array(ev["ret"].astype(np.uint32), mask=not_lock)
            cols["stack_id"] = pa.array(ev["stack_id"], mask=not_lock)
            kinds = np.zeros(n, np.int32)
            if is_lock.any():
                assert self.attrib is not None
                # one int64 key per (stack id, flags): unique on ints, not on rows
                key = (ev["stack_id"][is_lock].astype(np.int64) << 32) | ev["ret"][is_lock].astype(
                    np.int64
                ) & 0xFFFFFFFF
                uniq, inv = np.unique(key, return_inverse=True)
                kmap = np.array(
                    [
                        self._lock_kinds.index(
                            self.attrib.kind(int(k >> 32), int(k & 0xFFFFFFFF))[0]
                        )
                        for k in uniq.tolist()
                    ],
                    np.int32,
                )
                kinds[is_lock] = kmap[inv.reshape(-1)]
            cols["lock_kind"] = _dict_column(kinds, self._lock_kinds, mask=not_lock)
        if "class_idx" in self.columns:  # zt_migrate_entry puts the class in `size`
            ok = is_mig & (ev["size"] < 0x1FF)
            cols["class_idx"] = pa.array(ev["size"].astype(np.int16), mask=~ok)
        if "swap_entry" in self.columns:
            is_swap = (typ >= EV_ZSWAP_STORE) & (typ <= EV_ZSWAP_INVAL)
            cols["swap_entry"] = pa.array(ev["aux"], mask=~is_swap)
            cols["outcome"] = self._outcomes(ev, is_swap)
            is_store = typ == EV_ZSWAP_STORE
            cols["compressed_bytes"] = pa.array(ev["size"], mask=~(is_store & (ev["size"] > 0)))
        pid = ev["pid"]
        cols["pid"] = pa.array(self._anon.ids(pid) if self._anon else pid)
        cols["comm"] = self._comms.encode(ev, self._anon)
        names_order = self._all_columns()
        return pa.table({k: cols[k] for k in names_order})

    def _outcomes(self, ev: np.ndarray, is_swap: np.ndarray) -> pa.Array:
        """Return codes -> LRU-engineer outcome names (docs/capture.md has the table)."""
        labels = [
            "stored",
            "reject_pool_limit",
            "reject_compress",
            "reject_alloc",
            "reject_other",
            "hit",
            "miss",
            "written",
            "failed",
            "invalidated",
        ]
        typ, ret = ev["type"], ev["ret"]
        out = np.full(len(ev), labels.index("reject_other"), np.int32)
        frontswap = any(fn.startswith("zswap_frontswap") for fn, _, _ in self.plan.kprobes)
        st = typ == EV_ZSWAP_STORE
        if frontswap:  # int: 0 stored, -ENOMEM pool limit, -EINVAL compress, -ENOSPC poor
            out[st & (ret == 0)] = labels.index("stored")
            out[st & (ret == -12)] = labels.index("reject_pool_limit")
            out[st & ((ret == -22) | (ret == -28))] = labels.index("reject_compress")
        else:  # bool: true stored
            out[st & (ret & 0xFF != 0)] = labels.index("stored")
        ld = typ == EV_ZSWAP_LOAD
        load_int = self.feats.version >= (6, 16) or frontswap
        hit = (ret == 0) if load_int else (ret & 0xFF != 0)
        out[ld & hit] = labels.index("hit")
        out[ld & ~hit] = labels.index("miss")
        wb = typ == EV_ZSWAP_WB
        out[wb & (ret == 0)] = labels.index("written")
        out[wb & (ret != 0)] = labels.index("failed")
        out[typ == EV_ZSWAP_INVAL] = labels.index("invalidated")
        return _dict_column(out, labels, mask=~is_swap)

    def _write_stacks(self) -> None:
        """stacks.json beside the parts: stack_id -> symbolised frames (for lock reports)."""
        if self.attrib is None or not self.attrib.frames:
            return
        self.summary.stacks = dict(self.attrib.frames)
        path = Path(self.opts.out) / "stacks.json"
        tmp = path.with_name(".stacks.json.tmp")
        tmp.write_text(json.dumps({str(k): v for k, v in sorted(self.attrib.frames.items())}))
        os.replace(tmp, path)


def capture(opts: CaptureOptions, *, quiet: bool = False) -> CaptureSummary:
    """Run a whole capture as the CLI does: signals, optional command, footer on stderr."""
    cap = Capture(opts)
    proc: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, frame: object) -> None:
        cap.stop()

    # installed before the (slow) compile: a signal then ends the capture with an empty
    # but valid trace instead of killing the process half-way
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        cap.start()
        if opts.command and not cap._stop.is_set():
            try:
                proc = subprocess.Popen(opts.command)
            except OSError as exc:
                cap.finish()
                from ztrace.errors import CaptureError

                raise CaptureError(f"cannot run `{opts.command[0]}` ({exc.strerror})") from None
        if not quiet:
            print(
                f"ztrace: capturing {','.join(opts.probes)} to {opts.out}"
                + (" until the command exits" if proc else "")
                + ("" if proc or opts.duration_s else "; Ctrl-C to stop"),
                file=sys.stderr,
            )
        summary = cap.run(until=(lambda: proc.poll() is not None) if proc else None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
    if proc is not None:
        summary.command_rc = proc.returncode
    if not quiet:
        print(summary.footer(), file=sys.stderr)
    return summary
