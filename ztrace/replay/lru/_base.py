"""What every LRU design shares: parameters, pool accounting, the zswap_store flow.

Each design module (``none.py``, ``zspage_lru.py``, ...) subclasses :class:`ZswapDesign`
and overrides only what differs (libCacheSim's ``FIFO.c`` is pure delegation to the base;
same idea). The base follows the kernel's ``zswap_store()``:

1. a store of a page zswap already holds replaces the old entry (``zswap_duplicate_entry``);
2. the pool-limit check with the ``accept_threshold_percent`` hysteresis, *before*
   compressing (6.1 ``zswap_frontswap_store``; 6.12 ``zswap_store`` → ``zswap_check_limits``);
3. an incompressible page is rejected (``reject_compress_poor``: ``zpool_malloc`` returns
   -ENOSPC for a length above PAGE_SIZE) unless the design stores it as-is (6.18
   ``zswap_compress``, "mm/zswap: store <PAGE_SIZE compression failed page as-is");
4. ``zpool_malloc`` into the modelled zsmalloc pool, then the entry joins the design's LRU.

A rejected page goes to the disk swap device at once (``swap_writepage`` after
``zswap_store`` returns false). The shrink worker the kernel queues on a pool-limit reject
runs here synchronously right after the reject (documented difference: in the kernel it is a
workqueue item that runs a little later).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ztrace.errors import ConfigError
from ztrace.replay.lru.metrics import Latency, Recorder
from ztrace.replay.lru.workload import (
    INCOMPRESSIBLE,
    OP_INVALIDATE,
    OP_LOAD,
    OP_STORE,
    SAME_FILLED,
    Workload,
)

PAGE_SIZE = 4096

# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    """One ``k=v`` parameter of a design: parser, default, help."""

    parse: Callable[[str], Any]
    default: Any
    help: str


def p_bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("1", "y", "yes", "true", "on"):
        return True
    if s in ("0", "n", "no", "false", "off"):
        return False
    raise ValueError(f"{v!r} is not yes/no")


def p_int(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(v: str) -> int:
        n = int(v)
        if n < lo or (hi is not None and n > hi):
            raise ValueError(f"{n} outside {lo}..{hi if hi is not None else '∞'}")
        return n

    return parse


def p_float_pos(v: str) -> float:
    x = float(v)
    if not x >= 0:
        raise ValueError(f"{v!r} is negative")
    return x


def p_choice(*choices: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v not in choices:
            raise ValueError(f"{v!r} is not one of {', '.join(choices)}")
        return v

    return parse


#: Parameters every design understands.
COMMON_PARAMS: dict[str, Param] = {
    "accept_threshold": Param(
        p_int(0, 100),
        90,
        "accept_threshold_percent: after the pool hit its limit, accept "
        "stores again only below this percent of the limit",
    ),
    "pool": Param(
        p_choice("zsmalloc", "bytes"),
        "zsmalloc",
        "pool size accounting: `zsmalloc` = pages of the modelled zsmalloc pool (size "
        "classes, zspages); `bytes` = ceil(sum of stored lengths / PAGE_SIZE)",
    ),
    "kernel": Param(
        str,
        None,
        "kernel release whose zsmalloc class table and fullness "
        "groups the pool uses (default: the design's era)",
    ),
    "store_as_is": Param(p_bool, None, "store incompressible pages uncompressed (≥6.18)"),
    "exclusive_loads": Param(
        p_bool,
        None,
        "a zswap load frees the entry (6.8+ always for swapcache loads); "
        "`no` keeps it as a clean copy (≤6.7 default)",
    ),
    "worker_steps": Param(
        p_int(0),
        0,
        "0: the shrink worker finishes before the next event; N: it does N steps per "
        "following event (writeback slower than reclaim)",
    ),
    "zswap_ns": Param(p_float_pos, Latency.zswap_ns, "latency of a fault served by zswap"),
    "disk_ns": Param(p_float_pos, Latency.disk_ns, "latency of a fault served by disk"),
}


def parse_params(
    design: str, spec: str | Mapping[str, str] | None, table: Mapping[str, Param]
) -> dict[str, Any]:
    """Parse ``k=v,k=v`` (or a mapping) against ``table``; fill defaults.

    An unknown key or a bad value raises ConfigError naming the design, the key, the valid
    keys and an example (libCacheSim's ``Clock.c`` parameter parser does the same).
    """
    items: list[tuple[str, str]] = []
    if isinstance(spec, str):
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            k, sep, v = part.partition("=")
            if not sep:
                raise ConfigError(
                    f"`{design}` parameter {part!r} is not key=value "
                    f"(example: {design}:accept_threshold=90)"
                )
            items.append((k.strip(), v.strip()))
    elif spec:
        items = [(str(k), str(v)) for k, v in spec.items()]
    out = {k: p.default for k, p in table.items()}
    for k, v in items:
        if k not in table:
            raise ConfigError(
                f"`{design}` has no parameter `{k}` (valid: {', '.join(sorted(table))}; "
                f"example: {design}:accept_threshold=90)"
            )
        try:
            out[k] = table[k].parse(v)
        except ValueError as exc:
            raise ConfigError(f"`{design}` parameter `{k}={v}` is invalid ({exc})") from None
    return out


# ----------------------------------------------------------------------------- pool limit

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$")
_PCT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_PAGES_RE = re.compile(r"^\s*(\d+)\s*(p|pages)?\s*$")


def parse_pool_limit(spec: str | int, *, ram_pages: int | None, page_size: int = PAGE_SIZE) -> int:
    """Pool limit in pages from ``N`` / ``Np`` (pages), ``64M`` (bytes) or ``20%`` (of RAM).

    A percent is zswap's ``max_pool_percent``: ``totalram_pages * percent / 100``
    (6.1 ``zswap_is_full``; 6.10+ ``zswap_max_pages``).

    Raises
    ------
    ConfigError
        Unparsable, not positive, a percent without a known RAM size, or larger than RAM.
    """
    if isinstance(spec, bool):
        raise ConfigError(f"pool limit {spec!r} is not a size")
    if isinstance(spec, int):
        pages = spec
        text = str(spec)
    else:
        text = str(spec).strip()
        if m := _PCT_RE.match(text):
            pct = float(m.group(1))
            if ram_pages is None:
                raise ConfigError(
                    f"pool limit {text!r} is a percent of RAM, but the RAM size is unknown "
                    "(give ram=SIZE, e.g. --param ram=2G, or a limit in pages or bytes)"
                )
            if pct <= 0 or pct > 100:
                raise ConfigError(f"pool limit {text!r} must be a percent in (0, 100]")
            pages = int(ram_pages * pct / 100)
        elif m := _PAGES_RE.match(text):
            pages = int(m.group(1))
        elif m := _SIZE_RE.match(text):
            mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
            nbytes = float(m.group(1)) * mult[m.group(2).lower()]
            pages = int(nbytes // page_size)
        else:
            raise ConfigError(
                f"cannot parse pool limit {text!r} (want pages `4096`, bytes `64M`, or a "
                "percent of RAM `20%`)"
            )
    if pages <= 0:
        raise ConfigError(f"pool limit {text!r} is {pages} pages; it must be at least 1 page")
    if ram_pages is not None and pages > ram_pages:
        raise ConfigError(
            f"pool limit {text!r} ({pages} pages) is larger than RAM ({ram_pages} pages)"
        )
    return pages


def parse_size_pages(text: str, page_size: int = PAGE_SIZE) -> int:
    """``ram=`` value: bytes with a unit (``2G``) or pages (``524288p``)."""
    t = text.strip()
    if t.endswith(("p", "pages")) and (m := _PAGES_RE.match(t)):
        return int(m.group(1))
    m = _SIZE_RE.match(t)
    if not m:
        raise ConfigError(f"cannot parse RAM size {text!r} (want e.g. 2G or 524288p)")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    pages = int(float(m.group(1)) * mult[m.group(2).lower()] // page_size)
    if pages <= 0:
        raise ConfigError(f"RAM size {text!r} is less than a page")
    return pages


# ----------------------------------------------------------------------------- pools


class BytesPool:
    """Ideal packing: pages = ceil(stored bytes / PAGE_SIZE). Handles are byte lengths."""

    def __init__(self, page_size: int = PAGE_SIZE) -> None:
        self.page_size = page_size
        self.used = 0
        self._next = 0
        self._len: dict[int, int] = {}

    def alloc(self, size: int) -> int:
        if size <= 0 or size > self.page_size:
            return -1  # zs_malloc: -EINVAL / -ENOSPC above PAGE_SIZE
        h = self._next
        self._next += 1
        self._len[h] = size
        self.used += size
        return h

    def free(self, h: int) -> None:
        self.used -= self._len.pop(h)

    def pages(self) -> int:
        return -(-self.used // self.page_size)

    def fits(self, need: int, max_pages: int) -> bool:
        """Room for ``need`` more bytes under ``max_pages`` (exact byte accounting)."""
        return self.used + need <= max_pages * self.page_size

    def zspage_of(self, h: int) -> int:  # every object is its own "zspage" here
        return h

    def zspage_live(self, z: int) -> bool:
        return z in self._len


class ZsPool:
    """The modelled zsmalloc pool (ztrace.model.zsmalloc): page-exact size classes."""

    def __init__(self, kernel: str, chain_size: int, page_size: int = PAGE_SIZE) -> None:
        from ztrace.model.classes import build_classes, kernel_profile
        from ztrace.model.zsmalloc import new_pool

        prof = kernel_profile(kernel)
        table = (
            build_classes(None, legacy=True, page_size=page_size)
            if prof.legacy_classes
            else build_classes(chain_size, page_size=page_size)
        )
        self._pool = new_pool(table, ratio_groups=prof.ratio_groups)
        self.page_size = page_size

    def alloc(self, size: int) -> int:
        return int(self._pool.malloc(size))

    def free(self, h: int) -> None:
        self._pool.free(h)

    def pages(self) -> int:
        return int(self._pool.total_pages())

    def fits(self, need: int, max_pages: int) -> bool:
        """Kernel-style check before zpool_malloc: the pool is below its limit."""
        return self.pages() < max_pages

    def zspage_of(self, h: int) -> int:
        return int(self._pool.zspage_of(h)[0])

    def zspage_live(self, z: int) -> bool:
        return int(self._pool.zspage_inuse(z)) > 0


# ----------------------------------------------------------------------------- entries


class Entry:
    """A zswap entry: one stored page."""

    __slots__ = ("clen", "handle", "loaded", "page", "referenced", "seq", "size")

    def __init__(self, page: int, seq: int, clen: int, size: int, handle: int) -> None:
        self.page = page
        self.seq = seq  # store attempt number (metrics.Recorder)
        self.clen = clen  # bytes the entry holds (compressed length, or PAGE_SIZE as-is)
        self.size = size  # bytes asked of zpool_malloc (clen + any zswap header)
        self.handle = handle
        self.loaded = False  # faulted in, kept as a clean copy (non-exclusive load)
        self.referenced = True  # 6.12 second chance: set by zswap_store


class ZswapDesign:
    """Base of every design: zswap_store / zswap_load / zswap_invalidate and counters.

    Subclasses set ``NAME``, ``ERA`` (default kernel release), ``PARAMS`` (extra
    parameters), ``DEFAULTS`` (era defaults of common parameters) and override the hooks
    ``_lru_add``, ``_lru_del``, ``_lru_loaded``, ``_evict_one`` and ``_worker``.
    """

    NAME: ClassVar[str] = "base"
    ERA: ClassVar[str] = "6.12"
    PARAMS: ClassVar[dict[str, Param]] = {}
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: zswap_check_limits() style: "legacy" (≤6.9: full iff pages > max; accept again iff
    #: pages < threshold) or "v6.10" (full iff pages >= max; accept again iff <= threshold)
    LIMITS: ClassVar[str] = "legacy"
    #: bytes zswap adds in front of the compressed data (struct zswap_header, 6.2–6.4)
    HEADER: ClassVar[int] = 0
    #: when zswap_store queues the shrink worker: "full" (≤6.4: only on the zswap_is_full
    #: path), "limit" (6.5–6.9: on every pool-limit reject, `goto shrink`), "any_reject"
    #: (6.10+: on every reject while zswap_pool_reached_full)
    QUEUE_ON: ClassVar[str] = "full"

    @classmethod
    def param_table(cls) -> dict[str, Param]:
        table = dict(COMMON_PARAMS)
        table.update(cls.PARAMS)
        return table

    def __init__(
        self,
        pool_limit_pages: int,
        params: Mapping[str, Any],
        recorder: Recorder,
        *,
        chain_size: int = 8,
        page_size: int = PAGE_SIZE,
    ) -> None:
        p = dict(params)
        for k, v in self.DEFAULTS.items():
            if p.get(k) is None:
                p[k] = v
        if p.get("kernel") is None:
            p["kernel"] = self.ERA
        if p.get("store_as_is") is None:
            p["store_as_is"] = False
        if p.get("exclusive_loads") is None:
            p["exclusive_loads"] = True
        self.params = p
        self.page_size = page_size
        self.max_pages = int(pool_limit_pages)
        # zswap_accept_thr_pages(): max_pages * accept_thr_percent / 100
        self.thr_pages = self.max_pages * int(p["accept_threshold"]) // 100
        self.pool: BytesPool | ZsPool = (
            BytesPool(page_size)
            if p["pool"] == "bytes"
            else ZsPool(p["kernel"], chain_size, page_size)
        )
        self.rec = recorder
        self.entries: dict[int, Entry] = {}
        self.on_disk: set[int] = set()
        self.reached_full = False
        self.sync = p.get("shrink") == "sync"
        self.worker_steps = int(p["worker_steps"])
        self._work: Iterator[None] | None = None
        #: pages in writeback order, when a caller sets it to a list (peer comparisons)
        self.wb_log: list[int] | None = None
        # kernel-named counters (debugfs zswap/*, /proc/vmstat zswpout/zswpin/zswpwb)
        self.c: dict[str, int] = {
            k: 0
            for k in (
                "pool_limit_hit",
                "reject_reclaim_fail",
                "reject_compress_poor",
                "reject_pool_limit",
                "written_back_pages",
                "duplicate_entry",
                "zswpout",
                "zswpin",
                "disk_swapout",
                "disk_swapin",
                "unknown_load",
                "same_filled",
            )
        }

    # ------------------------------------------------------------------ hooks

    def _lru_add(self, e: Entry) -> None:
        """A new entry was stored."""

    def _lru_del(self, e: Entry) -> None:
        """An entry leaves zswap (load, invalidate, replace); not called for writeback."""

    def _lru_loaded(self, e: Entry) -> None:
        """A non-exclusive load hit ``e`` (it stays as a clean copy)."""

    def _worker(self) -> Iterator[None]:
        """The shrink worker (``shrink_worker``); yields after each step (one writeback or
        one failed attempt) so that it can run spread over later events."""
        return
        yield  # pragma: no cover - makes this a generator

    def _queue(self) -> None:
        """queue_work(shrink_wq, &shrink_work): start the worker unless it is pending.

        With ``worker_steps=0`` (default) the worker runs to completion before the next
        event. With N > 0 it performs N steps per following trace event, and while it is
        pending a new queue_work is a no-op (the kernel's returns false), as are its stores'
        rejects on the hysteresis path: the lag between reject and writeback.
        """
        if self._work is not None:
            return
        gen = self._worker()
        if self.worker_steps == 0:
            for _ in gen:
                pass
        else:
            self._work = gen

    def _advance_worker(self) -> None:
        work = self._work
        if work is None:
            return
        for _ in range(self.worker_steps):
            try:
                next(work)
            except StopIteration:
                self._work = None
                return

    # ------------------------------------------------------------------ helpers

    def _free(self, e: Entry) -> None:
        if e.handle >= 0:  # a same-filled entry has no zsmalloc object
            self.pool.free(e.handle)
        self.rec.release(e.seq)

    def writeback(self, e: Entry) -> None:
        """zswap_writeback_entry(): decompress into the swap cache, write to disk, free."""
        del self.entries[e.page]
        self._free(e)
        self.on_disk.add(e.page)
        if self.wb_log is not None:
            self.wb_log.append(e.page)
        self.c["written_back_pages"] += 1
        self.rec.writeback(e.clen)
        if not e.loaded:  # a clean copy of an in-memory page is not a swapped-out page
            self.rec.disk_write(e.seq, "writeback")

    def _reject(self, seq: int, page: int, cause: str) -> None:
        self.rec.rejects += 1
        self.on_disk.add(page)
        self.c["disk_swapout"] += 1
        self.rec.disk_write(seq, cause)

    def check_limits(self) -> tuple[bool, bool]:
        """(reject, hit_limit): the pool-limit part of zswap_store.

        legacy (6.1 zswap_frontswap_store, 6.5 zswap_store)::

            if (zswap_is_full())            /* max_pages < pages */
                pool_limit_hit++, reached_full = true, reject
            if (reached_full)
                if (!zswap_can_accept())    /* !(thr_pages > pages) */ reject
                else reached_full = false

        v6.10 (zswap_check_limits)::

            if (pages >= max_pages) pool_limit_hit++, reached_full = true
            else if (reached_full && pages <= thr_pages) reached_full = false
            return reached_full
        """
        cur = self.pool.pages()
        if self.LIMITS == "v6.10":
            hit = cur >= self.max_pages
            if hit:
                self.c["pool_limit_hit"] += 1
                self.reached_full = True
            elif self.reached_full and cur <= self.thr_pages:
                self.reached_full = False
            return self.reached_full, hit
        if cur > self.max_pages:
            self.c["pool_limit_hit"] += 1
            self.reached_full = True
            return True, True
        if self.reached_full:
            if not self.thr_pages > cur:
                return True, False
            self.reached_full = False
        return False, False

    # ------------------------------------------------------------------ operations

    def store(self, ts: int, page: int, clen: int) -> bool:
        """One reclaimed page: returns True when zswap stored it."""
        seq = self.rec.new_seq(ts)
        old = self.entries.pop(page, None)
        if old is not None:  # zswap_duplicate_entry: the new version replaces the old
            self.c["duplicate_entry"] += 1
            self._lru_del(old)
            self._free(old)
        self.on_disk.discard(page)  # a disk copy of an older version is stale now
        incompressible = clen == INCOMPRESSIBLE or clen > self.page_size
        if incompressible and self.params["store_as_is"]:
            clen = self.page_size
        if self.sync:
            # write back before storing instead of rejecting (swap-lru; shrink=sync)
            if incompressible and not self.params["store_as_is"]:
                return self._reject_compress(seq, page)
            need = clen + self.HEADER
            while not self.pool.fits(need, self.max_pages):
                if not self._evict_one():
                    break
            if not self.pool.fits(need, self.max_pages):
                # nothing left to write back and the page still does not fit
                self.c["reject_pool_limit"] += 1
                self._reject(seq, page, "reject_pool_limit")
                return False
        else:
            reject, hit = self.check_limits()
            if reject:
                self.c["reject_pool_limit"] += 1
                self._reject(seq, page, "reject_pool_limit")
                if hit or self.QUEUE_ON != "full":
                    self._queue()
                return False
            if incompressible and not self.params["store_as_is"]:
                return self._reject_compress(seq, page)
        if clen == SAME_FILLED:
            # ≤6.11 zswap_is_page_same_filled(): entry->length = 0, no zpool object, not on
            # the LRU, never written back. It costs no pool space, so it is not counted as a
            # held page for inversions either (evicting it would free nothing).
            e = Entry(page, seq, 0, 0, -1)
            self.entries[page] = e
            self.rec.stores += 1
            self.c["zswpout"] += 1
            self.c["same_filled"] += 1
            return True
        h = self.pool.alloc(clen + self.HEADER)
        if h < 0:  # zpool_malloc -ENOSPC: the length (plus header) exceeds a page
            return self._reject_compress(seq, page)
        e = Entry(page, seq, clen, clen + self.HEADER, h)
        self.entries[page] = e
        self.rec.hold(seq)
        self.rec.stores += 1
        self.c["zswpout"] += 1
        self._lru_add(e)
        return True

    def _evict_one(self) -> bool:
        """Write back one entry to make room (sync mode); False when none is left."""
        return False

    def _reject_compress(self, seq: int, page: int) -> bool:
        self.c["reject_compress_poor"] += 1
        self._reject(seq, page, "reject_compress")
        if self.QUEUE_ON == "any_reject" and self.reached_full and not self.sync:
            self._queue()  # 6.10+: `reject:` queues the worker while reached_full
        return False

    def load(self, ts: int, page: int) -> None:
        e = self.entries.get(page)
        if e is not None:
            self.rec.hit()
            self.c["zswpin"] += 1
            if self.params["exclusive_loads"]:
                del self.entries[page]
                self._lru_del(e)
                self._free(e)
            elif not e.loaded:
                e.loaded = True
                self.rec.release(e.seq)
                self._lru_loaded(e)
            return
        if page in self.on_disk:
            self.rec.disk_swapin()
            self.c["disk_swapin"] += 1
            return
        self.c["unknown_load"] += 1

    def invalidate(self, ts: int, page: int) -> None:
        e = self.entries.pop(page, None)
        if e is not None:
            self._lru_del(e)
            self._free(e)
        self.on_disk.discard(page)

    def run(self, w: Workload) -> None:
        """Replay every operation of ``w`` in order."""
        clen = w.resolved_clen()
        ts_a = w.ts.tolist()
        op_a = w.op.tolist()
        page_a = w.page.tolist()
        clen_a = clen.tolist()
        rec = self.rec
        pool = self.pool
        for i in range(len(ts_a)):
            ts = ts_a[i]
            rec.tick(ts)
            if self._work is not None:
                self._advance_worker()
            o = op_a[i]
            if o == OP_STORE:
                self.store(ts, page_a[i], clen_a[i])
            elif o == OP_LOAD:
                self.load(ts, page_a[i])
            elif o == OP_INVALIDATE:
                self.invalidate(ts, page_a[i])
            rec.pool_pages(pool.pages())

    def counters(self) -> dict[str, int]:
        """Kernel-named counters plus the end state (stored_pages, pool_total_pages)."""
        out = dict(self.c)
        out["stored_pages"] = len(self.entries)
        out["pool_total_pages"] = self.pool.pages()
        out["pool_limit_pages"] = self.max_pages
        return out
