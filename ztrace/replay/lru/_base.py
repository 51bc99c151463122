"""What every LRU design shares: parameters, the pool limit, and the Python driver.

A design is one module: a :class:`ZswapDesign` subclass (name, era, parameters, how zswap
decides limits and queues the worker) plus a numba state type and the hooks where it differs
(``_core.hook``); the compiled flow in ``_core`` is the same for all. It follows the kernel's
``zswap_store()``:

1. a store of a page zswap already holds replaces the old entry (``zswap_duplicate_entry``);
2. the pool-limit check with the ``accept_threshold_percent`` hysteresis, *before*
   compressing (6.1 ``zswap_frontswap_store``; 6.12 ``zswap_store`` → ``zswap_check_limits``);
3. an incompressible page is rejected (``reject_compress_poor``: ``zpool_malloc`` returns
   -ENOSPC for a length above PAGE_SIZE) unless the design stores it as-is (6.18
   ``zswap_compress``, "mm/zswap: store <PAGE_SIZE compression failed page as-is");
4. ``zpool_malloc`` into the modelled zsmalloc pool, then the entry joins the design's LRU.

A rejected page goes to the disk swap device at once (``swap_writepage`` after
``zswap_store`` returns false). The shrink worker the kernel queues on a pool-limit reject
runs here synchronously right after the reject (``worker_steps=0``; documented difference: in
the kernel it is a workqueue item that runs a little later).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ztrace.errors import ConfigError
from ztrace.replay.lru import _core as K
from ztrace.replay.lru.metrics import Latency, Recorder
from ztrace.replay.lru.workload import Workload

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


#: a design parameter's value in plain ASCII digits: int() would also take ``٣`` and ``1_0``
_UINT_RE = re.compile(r"[0-9]+", re.ASCII)
#: a plain decimal, optionally with an exponent (no ``inf``, ``nan``, ``_`` or non-ASCII)
_FLOAT_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)

#: ceiling of the count parameters (worker_steps, max_failures, shrinker_walk): each bounds a
#: loop of the compiled replay (steps per event, failed walks before the worker gives up) and
#: lives in its int64 config; a million is far past the kernel's (MAX_RECLAIM_RETRIES is 16)
#: and keeps a replay finite (fuzz report s21, item 6: 2^63 raised OverflowError)
MAX_COUNT_PARAM = 1_000_000
#: ceiling of the latency parameters (zswap_ns, disk_ns): an hour per fault is past any
#: device, and a finite value keeps the expected latency (and --json) finite (item 13)
MAX_LATENCY_NS = 3.6e12


def p_int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        if not _UINT_RE.fullmatch(v):
            raise ValueError(f"want plain digits in {lo}..{hi}")
        n = int(v)
        if not lo <= n <= hi:
            raise ValueError(f"outside {lo}..{hi}")
        return n

    return parse


def p_latency_ns(v: str) -> float:
    """A latency in ns: a finite decimal in 0..MAX_LATENCY_NS."""
    x = float(v) if _FLOAT_RE.fullmatch(v) else math.nan
    if not 0 <= x <= MAX_LATENCY_NS:
        raise ValueError(f"want a number of ns in 0..{MAX_LATENCY_NS:.1e}")
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
        p_int(0, MAX_COUNT_PARAM),
        0,
        "0: the shrink worker finishes before the next event; N: it does N steps per "
        "following event (writeback slower than reclaim)",
    ),
    "worker_timing": Param(
        p_choice("measured", "off"),
        "measured",
        "`measured`: when the workload carries the shrink worker's measured timing "
        "(worker_timing.py: workqueue delay, time per writeback), run the worker in time; "
        "`off`: as `worker_steps` says",
    ),
    "memcgs": Param(
        p_choice("trace", "one"),
        "trace",
        "`trace`: the memory cgroups of the trace's memcg_id (per-memcg lists where the "
        "design has them, per-memcg counters); `one`: replay as one memcg",
    ),
    "zswap_ns": Param(p_latency_ns, Latency.zswap_ns, "latency of a fault served by zswap"),
    "disk_ns": Param(p_latency_ns, Latency.disk_ns, "latency of a fault served by disk"),
}


def parse_params(
    design: str,
    spec: str | Mapping[str, str] | None,
    table: Mapping[str, Param],
    *,
    option: str = "--param",
) -> dict[str, Any]:
    """Parse ``k=v,k=v`` (or a mapping) against ``table``; fill defaults.

    An unknown key, a key given twice or a bad value raises ConfigError naming ``option``
    (where the text came from), the key, the design, and the valid keys (libCacheSim's
    ``Clock.c`` parameter parser does the same).
    """
    items: list[tuple[str, str]] = []
    if isinstance(spec, str):
        items = split_kv(spec, example=f"{design}:accept_threshold=90", option=option)
    elif spec:
        items = [(str(k), str(v)) for k, v in spec.items()]
    out = {k: p.default for k, p in table.items()}
    for k, v in items:
        if k not in table:
            valid = ", ".join(sorted(table))
            raise ConfigError(f"{option} {k}: `{design}` has no such parameter (valid: {valid})")
        try:
            out[k] = table[k].parse(v)
        except ValueError as exc:
            raise ConfigError(f"{option} {k}={v}: invalid for `{design}` ({exc})") from None
    return out


def split_kv(
    spec: str, *, example: str = "shrink=sync", option: str = "--param"
) -> list[tuple[str, str]]:
    """``k=v,k=v`` → pairs, in order. A part without ``=`` or a key given twice is an error
    naming ``option``: the last one silently winning hid typos such as
    ``shrink=sync,shrink=async``."""
    out: list[tuple[str, str]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        k, sep, v = part.partition("=")
        k = k.strip()
        if not sep:
            raise ConfigError(f"{option} {part}: not key=value (example: {example})")
        if any(k == seen for seen, _ in out):
            raise ConfigError(f"{option} {k}: given twice")
        out.append((k, v.strip()))
    return out


# ----------------------------------------------------------------------------- pool limit

# re.ASCII: a bare \d also matches other scripts' digits (``٣``), which no one means here
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$", re.ASCII)
_PCT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$", re.ASCII)
_PAGES_RE = re.compile(r"^\s*(\d+)\s*(p|pages)?\s*$", re.ASCII)
#: a plain number with a fraction and no unit: documented as pages, so not a whole count
_FRACTION_RE = re.compile(r"^\s*\d+\.\d+\s*$", re.ASCII)


#: page counts live in the replay's int64 config; 2^62 leaves room for sums
MAX_PAGES = 1 << 62


def parse_pool_limit(
    spec: str | int,
    *,
    ram_pages: int | None,
    page_size: int = PAGE_SIZE,
    option: str = "--pool-limit",
    ram_hint: str | None = None,
) -> int:
    """Pool limit in pages from ``N`` / ``Np`` (pages), ``64M`` (bytes) or ``20%`` (of RAM).

    A percent is zswap's ``max_pool_percent``: ``totalram_pages * percent / 100``
    (6.1 ``zswap_is_full``; 6.10+ ``zswap_max_pages``). ``option`` starts every error
    message (the option the limit came from); ``ram_hint`` is how the caller's command sets
    the RAM size (sweep: ``--param ram=2G``), shown when a percent needs it: a command
    without such a way is told to give an absolute limit instead (fuzz report s21, item 14).

    Raises
    ------
    ConfigError
        Unparsable, not positive, a percent without a known RAM size, or larger than RAM.
    """
    if isinstance(spec, bool):
        raise ConfigError(f"{option} {spec!r}: not a size")
    text = str(spec).strip()
    where = f"{option} {text}"
    if isinstance(spec, int):
        pages = spec
    elif m := _PCT_RE.match(text):
        pct = float(m.group(1))
        if ram_pages is None:
            how = f"give {ram_hint}, or " if ram_hint else "give "
            raise ConfigError(
                f"{where}: a percent of RAM, but the trace does not record its RAM size "
                f"({how}a limit in pages or bytes, e.g. 64M)"
            )
        if pct <= 0 or pct > 100:
            raise ConfigError(f"{where}: must be a percent in (0, 100]")
        pages = int(ram_pages * pct / 100)
    elif m := _PAGES_RE.match(text):
        pages = int(m.group(1))
    elif _FRACTION_RE.match(text):
        raise ConfigError(f"{where}: a plain number is pages and must be whole (or give 64M)")
    elif m := _SIZE_RE.match(text):
        mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
        nbytes = float(m.group(1)) * mult[m.group(2).lower()]
        pages = int(nbytes // page_size)
    else:
        raise ConfigError(
            f"{where}: cannot parse (want pages `4096`, bytes `64M`, or a percent of RAM `20%`)"
        )
    if pages <= 0:
        raise ConfigError(f"{where}: is {pages} pages; it must be at least 1 page")
    if pages > MAX_PAGES:  # the replay holds it in an int64 (issue 11: one line, no overflow)
        raise ConfigError(f"{where}: {pages} pages is beyond 2^62 pages")
    if ram_pages is not None and pages > ram_pages:
        raise ConfigError(f"{where}: {pages} pages is larger than RAM ({ram_pages} pages)")
    return pages


def parse_size_pages(text: str, page_size: int = PAGE_SIZE) -> int:
    """``ram=`` value: bytes with a unit (``2G``) or pages (``524288p``)."""
    t = text.strip()
    where = f"--param ram={t}"
    if t.endswith(("p", "pages")) and (m := _PAGES_RE.match(t)):
        pages = int(m.group(1))
    elif m := _SIZE_RE.match(t):
        mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
        pages = int(float(m.group(1)) * mult[m.group(2).lower()] // page_size)
    else:
        raise ConfigError(f"{where}: cannot parse a RAM size (want e.g. 2G or 524288p)")
    if pages <= 0:
        raise ConfigError(f"{where}: less than a page")
    if pages > MAX_PAGES:
        raise ConfigError(f"{where}: {pages} pages is beyond 2^62 pages")
    return pages


# ----------------------------------------------------------------------------- driver


def _new_zspool(kernel: str, chain_size: int, page_size: int) -> Any:
    """The modelled zsmalloc pool (ztrace.model.zsmalloc): page-exact size classes."""
    from ztrace.model.classes import build_classes, kernel_profile
    from ztrace.model.zsmalloc import new_pool

    prof = kernel_profile(kernel)
    table = (
        build_classes(None, legacy=True, page_size=page_size)
        if prof.legacy_classes
        else build_classes(chain_size, page_size=page_size)
    )
    return new_pool(table, ratio_groups=prof.ratio_groups)


_QUEUE = {"full": K.QUEUE_FULL, "limit": K.QUEUE_LIMIT, "any_reject": K.QUEUE_ANY_REJECT}


class ZswapDesign:
    """Base of every design: parameters, configuration of the compiled replay, counters.

    Subclasses set ``NAME``, ``ERA`` (default kernel release), ``PARAMS`` (extra
    parameters), ``DEFAULTS`` (era defaults of common parameters), ``LIMITS``, ``QUEUE_ON``,
    ``HEADER``, ``EXTRA_COUNTERS`` and ``STATE``: the numba state type whose hooks the
    design module registers (``_core.hook``).
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
    #: write back before storing instead of rejecting, whatever ``shrink`` says
    ALWAYS_SYNC: ClassVar[bool] = False
    #: names of the design's own counters (``_core.K_EXTRA0``, ``K_EXTRA1``), in order
    EXTRA_COUNTERS: ClassVar[tuple[str, ...]] = ()
    #: the design's numba state type (each design module sets it)
    STATE: ClassVar[Any] = None

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
        self.chain_size = chain_size
        self.max_pages = int(pool_limit_pages)
        # zswap_accept_thr_pages(): max_pages * accept_thr_percent / 100
        self.thr_pages = self.max_pages * int(p["accept_threshold"]) // 100
        self.rec = recorder
        self.sync = self.ALWAYS_SYNC or p.get("shrink") == "sync"
        #: pages in writeback order, when a caller sets it to a list (peer comparisons)
        self.wb_log: list[int] | None = None
        self._counters: dict[str, int] | None = None
        self.memcg_counters: dict[int, dict[str, int]] = {}

    def _cfg(self) -> np.ndarray:
        p = self.params
        rec = self.rec
        cfg = np.zeros(K.N_CFG, dtype=np.int64)
        cfg[K.CF_MAX_PAGES] = self.max_pages
        cfg[K.CF_THR_PAGES] = self.thr_pages
        cfg[K.CF_PAGE_SIZE] = self.page_size
        cfg[K.CF_HEADER] = self.HEADER
        cfg[K.CF_LIMITS_V610] = self.LIMITS == "v6.10"
        cfg[K.CF_QUEUE_ON] = _QUEUE[self.QUEUE_ON]
        cfg[K.CF_SYNC] = self.sync
        cfg[K.CF_AS_IS] = bool(p["store_as_is"])
        cfg[K.CF_EXCL] = bool(p["exclusive_loads"])
        cfg[K.CF_WSTEPS] = int(p["worker_steps"])
        cfg[K.CF_MAX_FAIL] = int(p.get("max_failures", 0))
        cfg[K.CF_SHRINKER_WALK] = int(p.get("shrinker_walk", 0))
        cfg[K.CF_POOL_BYTES] = p["pool"] == "bytes"
        cfg[K.CF_T0] = rec.t0
        cfg[K.CF_BIN_NS] = rec.bin_ns
        cfg[K.CF_NBINS] = rec.n_bins
        cfg[K.CF_SHRINKER_TRACE] = p.get("shrinker") in ("trace", "demand")
        return cfg

    def _timing(self, w: Workload) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The measured worker timing to replay with, or None (not in time): only when the
        workload has one, ``worker_timing=measured`` and ``worker_steps=0``."""
        t = w.worker_timing
        p = self.params
        if t is None or self.sync or p["worker_timing"] != "measured" or p["worker_steps"]:
            return None
        return t.delay_ns, t.step_ns, t.walk_ns

    def run(self, w: Workload) -> None:
        """Replay every operation of ``w`` in order (compiled); fills the recorder."""
        assert self.STATE is not None, f"{type(self).__name__} has no STATE type"
        pr = w.prepared()
        pool = _new_zspool(str(self.params["kernel"]), self.chain_size, self.page_size)
        cfg = self._cfg()
        timing = self._timing(w)
        empty = np.zeros(0, dtype=np.int64)
        cfg[K.CF_WTIMED] = timing is not None
        if w.shrinker_scans and self.params.get("shrinker") == "trace":
            cfg[K.CF_SHRINKER_TRACE] = 2  # the measured scans, walked in the design's order
        ev_mc, mh_cap, ids = pr.ev_mc, pr.mh_cap, pr.memcg_ids
        if self.params.get("memcgs") == "one" and len(ids) > 1:
            ev_mc, mh_cap, ids = np.zeros(1, np.int64), np.ones(1, np.int64), ids[:1] * 0
        cfg[K.CF_NMC] = len(ids)
        sc, c, bins, pool_bin, gaps, wb, stored, pool_pages, mcc = K.run(
            self.STATE,
            cfg,
            pr.ev_ts,
            pr.ev_op,
            pr.ev_pidx,
            pr.ev_clen,
            pr.nf,
            len(pr.uniq),
            pr.n_stores,
            pool,
            timing[0] if timing else empty,
            timing[1] if timing else empty,
            timing[2] if timing else empty,
            ev_mc,
            mh_cap,
        )
        #: per memcg (``memcg_ids`` order): the MC_* counters (_core), one row per memcg
        self.memcg_counters = (
            {
                int(ids[m]): {k: int(mcc[m, i]) for i, k in enumerate(K.MC_NAMES)}
                for m in range(len(ids))
            }
            if len(ids) > 1
            else {}
        )
        self.rec.absorb(sc, bins, pool_bin, gaps)
        if self.wb_log is not None:
            self.wb_log.extend(pr.uniq[wb].tolist())
        out = {k: int(c[i]) for i, k in enumerate(K.BASE_COUNTERS)}
        for i, k in enumerate(self.EXTRA_COUNTERS):
            out[k] = int(c[K.K_EXTRA0 + i])
        out["stored_pages"] = int(stored)
        out["pool_total_pages"] = int(pool_pages)
        out["pool_limit_pages"] = self.max_pages
        if timing is not None:
            out["worker_runs"] = int(sc[K.R_WQ_RUNS])
            out["worker_requeued"] = int(sc[K.R_WQ_REQUEUE])
        self._counters = out

    def counters(self) -> dict[str, int]:
        """Kernel-named counters plus the end state (stored_pages, pool_total_pages)."""
        assert self._counters is not None, "run() first"
        return dict(self._counters)
