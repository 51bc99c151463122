"""Seeded synthetic allocator traces from a few documented workload profiles.

Synthetic traces stand in for captures in demos, tests and benchmarks. Each profile models
how a zram user drives zsmalloc: a block write compresses a page and calls ``zs_malloc``;
overwriting a block allocates the new object *before* freeing the old one (6.18
drivers/block/zram/zram_drv.c: zram_write_page allocates, then zram_free_page under the slot
lock), and a discard frees the object. Same-filled pages never reach zsmalloc, so they do not
appear. Sizes are what zram passes to ``zs_malloc``: the compressed length, or ``PAGE_SIZE``
for a page that did not compress below ``huge_class_size``.

Generation is vectorised (numpy), so 10 M events take seconds and the same seed always gives
the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ztrace.errors import ConfigError
from ztrace.format import TraceMeta, make_events
from ztrace.format.trace import MAX_CPUS
from ztrace.model.classes import build_classes

PAGE_SIZE = 4096
#: 6.18 with CONFIG_ZSMALLOC_CHAIN_SIZE=8: zram stores anything compressing to at least this
#: as a whole page (zram_write_page compares against zs_huge_class_size()).
HUGE_CLASS_SIZE = build_classes(8).huge_class_size


@dataclass(frozen=True)
class Profile:
    """A workload profile; see ``PROFILES`` for the documented set."""

    name: str
    #: mean time between ops on one CPU
    interarrival_ns: float
    #: logical blocks the workload touches (working set); overwrites hit one again
    blocks: int
    #: share of ops that are discards (frees without a new object)
    discard_share: float
    #: share of pages that do not compress (stored as PAGE_SIZE)
    incompressible_share: float
    #: log-normal compressed size: median bytes and sigma
    size_median: float
    size_sigma: float
    #: CPUs write disjoint block ranges (fio --offset_increment) instead of anywhere
    partitioned: bool


# One row a profile, the columns in Profile's field order, so that the profiles compare at a
# glance; what each one models is the comment above its row (and docs/trace-format.md).
# fmt: off
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        #       name              interarrival blocks   discard incompr. median sigma  partitioned
        # parallel filesystem writers on a zram disk: each CPU writes its own range, overwrites
        # are common, a mix of text-like and binary pages
        Profile("zram-parallel",  4_000,       1 << 18, 0.05,   0.08,    1400,  0.55,  True),
        # zram as swap: anonymous pages stored on reclaim and freed on swap-in, any CPU
        # touches any slot
        Profile("swap-like",      8_000,       1 << 17, 0.35,   0.03,    900,   0.8,   False),
        # every CPU stores pages of nearly the same compressed size, so all ops hit one size
        # class: the case where per-class locks cannot spread the load
        Profile("hot-class",      1_500,       1 << 16, 0.10,   0.0,     1000,  0.004, True),
        # CPUs store pages of widely different compressibility, spreading ops over many size
        # classes: the case per-class locks were designed for
        Profile("spread-classes", 1_500,       1 << 16, 0.10,   0.05,    1200,  0.9,   True),
    )
}
# fmt: on


def _profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        valid = ", ".join(sorted(PROFILES))
        raise ConfigError(f"unknown profile `{name}` (valid: {valid})") from None


def synth(
    profile: str = "zram-parallel",
    *,
    events: int = 100_000,
    seed: int = 0,
    cpus: int = 4,
    pool: int = 1,
) -> pa.Table:
    """Generate about ``events`` allocator events (zs_malloc and zs_free) for a profile.

    The result has exactly ``events`` rows, in ``ts_ns`` order.

    >>> t = synth("zram-parallel", events=1000, seed=1)
    >>> sorted(set(t.column("event").to_pylist()))
    ['zs_free', 'zs_malloc']
    """
    p = _profile(profile)
    if events <= 0:
        raise ConfigError(f"--events {events}: must be positive")
    # the format's ceiling (CONFIG_NR_CPUS), as `synth --cpus` declares: 4096 here refused
    # what --help offered (fuzz report s21, item 15)
    if not 1 <= cpus <= MAX_CPUS:
        raise ConfigError(f"--cpus {cpus}: must be 1..{MAX_CPUS}")
    rng = np.random.default_rng(seed)
    # A write yields one malloc and, once its block was written before, one free: ``events``
    # ops always yield at least ``events`` events, and the table is cut to exactly that many
    # in time order (every free still follows its malloc).
    n_ops = int(events / (1.0 - p.discard_share) * 1.1) + 64

    cpu = rng.integers(0, cpus, n_ops, dtype=np.int64)
    # Per-CPU Poisson arrivals: cumulative exponential gaps within each CPU's own ops.
    gaps = rng.exponential(p.interarrival_ns, n_ops)
    order = np.argsort(cpu, kind="stable")
    gsorted = gaps[order]
    csorted = cpu[order]
    cum = np.cumsum(gsorted)
    starts = np.searchsorted(csorted, np.arange(cpus))
    base = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    ts_sorted = cum - base[csorted]
    ts = np.empty(n_ops, dtype=np.float64)
    ts[order] = ts_sorted
    ts_ns = (ts + 1_000_000).astype(np.uint64)

    if p.partitioned:
        per = max(1, p.blocks // cpus)
        block = cpu * per + rng.integers(0, per, n_ops)
    else:
        block = rng.integers(0, p.blocks, n_ops)
    is_discard = rng.random(n_ops) < p.discard_share

    sizes = np.clip(rng.lognormal(np.log(p.size_median), p.size_sigma, n_ops), 16, PAGE_SIZE)
    sizes = sizes.astype(np.int64)
    incompressible = rng.random(n_ops) < p.incompressible_share
    # zram stores pages at or above huge_class_size whole (6.18 zram_write_page).
    sizes = np.where(incompressible | (sizes >= HUGE_CLASS_SIZE), PAGE_SIZE, sizes)

    # Order ops in time, then find each op's previous op on the same block.
    t_order = np.lexsort((np.arange(n_ops), ts_ns))
    ts_ns, cpu, block = ts_ns[t_order], cpu[t_order], block[t_order]
    is_discard, sizes = is_discard[t_order], sizes[t_order]
    by_block = np.lexsort((np.arange(n_ops), block))
    prev = np.full(n_ops, -1, dtype=np.int64)
    same = block[by_block][1:] == block[by_block][:-1]
    prev[by_block[1:][same]] = by_block[:-1][same]
    prev_holds_object = (prev >= 0) & ~is_discard[np.maximum(prev, 0)]

    op_idx = np.arange(n_ops, dtype=np.int64)
    handle = (op_idx + 1).astype(np.uint64)  # unique per object; 0 means "no object"
    mallocs = ~is_discard
    frees = prev_holds_object
    # Event order within one op: malloc first, then the free of the block's old object.
    m_ts, m_key = ts_ns[mallocs], op_idx[mallocs] * 2
    f_ts, f_key = ts_ns[frees], op_idx[frees] * 2 + 1
    all_ts = np.concatenate([m_ts, f_ts])
    key = np.concatenate([m_key, f_key])
    ev_order = np.lexsort((key, all_ts))
    n_m = int(mallocs.sum())
    is_m = ev_order < n_m
    src = np.concatenate([op_idx[mallocs], op_idx[frees]])[ev_order]
    ev_handle = np.where(is_m, handle[src], handle[np.maximum(prev[src], 0)])
    ev_size = np.where(is_m, sizes[src], 0).astype(np.uint32)
    ev_order = ev_order[:events]
    src, is_m = src[:events], is_m[:events]
    ev_handle, ev_size = ev_handle[:events], ev_size[:events]
    event = pa.DictionaryArray.from_arrays(
        pa.array(np.where(is_m, 0, 1).astype(np.int32)), pa.array(["zs_malloc", "zs_free"])
    )
    return make_events(
        ts_ns=all_ts[ev_order],
        cpu=cpu[src].astype(np.uint16),
        tid=(1000 + cpu[src]).astype(np.uint32),
        event=event,
        pool=np.full(len(src), pool, dtype=np.uint64),
        size_bytes=ev_size,
        handle=ev_handle.astype(np.uint64),
        duration_ns=np.zeros(len(src), dtype=np.uint64),
    )


def synth_meta(profile: str, *, cpus: int, seed: int, events: int) -> TraceMeta:
    """Metadata for a synthetic trace: a 6.18-like kernel with chain size 8."""
    return TraceMeta(
        kernel_release="synthetic-6.18",
        page_size=PAGE_SIZE,
        nr_cpus=cpus,
        zsmalloc_chain_size=8,
        source="synth",
        extra={"profile": profile, "seed": str(seed), "events_requested": str(events)},
    )
