"""Seeded synthetic *swap* traces (schema v2): what a memory cgroup under pressure asks of zswap.

A profile drives a page-access stream through a model of the cgroup's resident memory (an
LRU of ``ram_pages`` pages, standing in for the kernel's active/inactive lists). A miss on a
page that was swapped out is a fault (``zswap_load``); making room evicts the LRU tail, which
is a reclaim (``zswap_store`` with that page's compressed length); a page the program frees
while swapped out is a ``zswap_invalidate``. Outcomes are left null: a synthetic trace holds
only the workload, and each LRU design decides the outcomes when it replays it.

Profiles
--------
``phase-change``
    Phase 1 works on page set A (Zipf over a random permutation, larger than RAM), phase 2
    on a disjoint set B of the same size. After the switch, A's pages are cold but sit in
    zswap; B's reclaimed pages meet a full pool. This is where LRU inversion shows.
``zipf-steady``
    One Zipf working set for the whole run (a control: little inversion to find).

Run ``ztrace synth --profile phase-change -o DIR`` to write a trace.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from ztrace.errors import ConfigError
from ztrace.format import TraceMeta, make_events, write_trace

PAGE_SIZE = 4096
#: a compressor's output for a page that does not compress: above PAGE_SIZE (lzo's worst case
#: for 4 KiB is 4096 + 4096/16 + 64 + 3 bytes)
INCOMPRESSIBLE_LEN = 4419


@dataclass(frozen=True)
class SwapProfile:
    """A swap workload profile; see :data:`PROFILES`."""

    name: str
    description: str
    #: pages per working set (phase); a phase-change profile uses two disjoint sets
    set_pages: int
    phases: int
    #: resident memory of the cgroup, in pages
    ram_pages: int
    #: page accesses per phase
    accesses: int
    zipf_a: float
    incompressible_share: float
    #: log-normal compressed length: median bytes and sigma
    size_median: float
    size_sigma: float
    #: share of a phase's pages the program frees when the phase ends (munmap)
    free_at_end: float
    #: mean time between accesses
    interarrival_ns: int
    #: RAM of the machine, for max_pool_percent limits (metadata ztrace.extra.ram_bytes)
    machine_ram_bytes: int


_PHASE_CHANGE = SwapProfile(
    "phase-change",
    "two disjoint Zipf working sets one after the other, each 3x the cgroup's RAM; "
    "10% incompressible pages",
    set_pages=12_288,
    phases=2,
    ram_pages=4_096,
    accesses=150_000,
    zipf_a=0.9,
    incompressible_share=0.10,
    size_median=1_400.0,
    size_sigma=0.5,
    free_at_end=0.0,
    interarrival_ns=2_000,
    machine_ram_bytes=256 << 20,
)
PROFILES: dict[str, SwapProfile] = {
    p.name: p
    for p in (
        _PHASE_CHANGE,
        # the control: the same machine and pages, one working set for the same total length
        replace(
            _PHASE_CHANGE,
            name="zipf-steady",
            description="one Zipf working set 3x the cgroup's RAM for the whole run",
            phases=1,
            accesses=300_000,
        ),
    )
}


def profile(name: str) -> SwapProfile:
    """The profile called ``name``; ConfigError listing the valid ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown swap profile `{name}` (valid: {', '.join(sorted(PROFILES))})"
        ) from None


def _zipf_ranks(rng: np.random.Generator, n: int, a: float, size: int) -> np.ndarray:
    """Ranks 0..n-1 with P(rank r) ∝ 1/(r+1)^a (bounded Zipf, any a > 0)."""
    w = 1.0 / np.power(np.arange(1, n + 1, dtype=np.float64), a)
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(size), side="right").clip(0, n - 1)


def synth_swap(name: str, *, seed: int = 0, scale: float = 1.0) -> tuple[pa.Table, TraceMeta]:
    """Generate the events of profile ``name`` (deterministic for a seed).

    ``scale`` multiplies the number of accesses (tests use small scales).
    """
    p = profile(name)
    if not scale > 0:
        raise ConfigError(f"scale {scale} must be positive")
    rng = np.random.default_rng(seed)
    n_pages = p.set_pages * p.phases
    # a page's compressed length is a property of its content: fixed per page
    clen = np.clip(
        rng.lognormal(np.log(p.size_median), p.size_sigma, n_pages), 64, PAGE_SIZE
    ).astype(np.int64)
    clen[rng.random(n_pages) < p.incompressible_share] = INCOMPRESSIBLE_LEN
    accesses = max(1, int(p.accesses * scale))
    ts_l: list[int] = []
    ev_l: list[str] = []
    pg_l: list[int] = []
    cb_l: list[int | None] = []
    ram: OrderedDict[int, None] = OrderedDict()  # first = LRU tail
    swapped: set[int] = set()
    t = 0
    for ph in range(p.phases):
        base = ph * p.set_pages
        perm = rng.permutation(p.set_pages) + base
        ranks = _zipf_ranks(rng, p.set_pages, p.zipf_a, accesses)
        gaps = rng.exponential(p.interarrival_ns, accesses).astype(np.int64) + 1
        for pg_i, gap in zip(perm[ranks].tolist(), gaps.tolist(), strict=True):
            t += gap
            if pg_i in ram:
                ram.move_to_end(pg_i)
                continue
            if pg_i in swapped:  # fault on a swapped-out page
                swapped.discard(pg_i)
                ts_l.append(t)
                ev_l.append("zswap_load")
                pg_l.append(pg_i)
                cb_l.append(None)
            if len(ram) >= p.ram_pages:  # reclaim the LRU tail before mapping the page
                victim, _ = ram.popitem(last=False)
                swapped.add(victim)
                ts_l.append(t)
                ev_l.append("zswap_store")
                pg_l.append(victim)
                cb_l.append(int(clen[victim]))
            ram[pg_i] = None
        if p.free_at_end > 0:
            for pg_i in perm[: int(p.set_pages * p.free_at_end)].tolist():
                ram.pop(pg_i, None)
                if pg_i in swapped:
                    swapped.discard(pg_i)
                    t += 1
                    ts_l.append(t)
                    ev_l.append("zswap_invalidate")
                    pg_l.append(pg_i)
                    cb_l.append(None)
    n = len(ts_l)
    table = make_events(
        ts_ns=np.asarray(ts_l, dtype=np.uint64),
        event=pa.array(ev_l, pa.string()).dictionary_encode(),
        swap_entry=np.asarray(pg_l, dtype=np.uint64),
        compressed_bytes=pa.array(cb_l, pa.uint32()),
        outcome=pa.nulls(n, pa.string()).dictionary_encode(),
        memcg_id=np.ones(n, dtype=np.uint64),
    )
    meta = TraceMeta(
        kernel_release="synthetic",
        source="synth",
        schema_version=2,
        extra={
            "profile": p.name,
            "seed": str(seed),
            "scale": str(scale),
            "ram_bytes": str(p.machine_ram_bytes),
            "cgroup_ram_pages": str(p.ram_pages),
        },
    )
    return table, meta


def write_swap_trace(out: str | Path, name: str, *, seed: int = 0, scale: float = 1.0) -> Path:
    """Generate profile ``name`` and write it as a trace directory; returns the file."""
    table, meta = synth_swap(name, seed=seed, scale=scale)
    return write_trace(out, table, meta)
