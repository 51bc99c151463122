"""Harm with an optimal reference: disk faults, avoidable disk faults, optimal_gap.

Hand-built streams have every expected number derived in the comment above it
(docs/lru-inversion.md, "Harm"); the `optimal` design is checked against libCacheSim's Belady
(page-count capacity: exact) and BeladySize (byte capacity: a peer, not a proof), and against
every other design at every pool limit of a sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

import libcachesim as lcs
import numpy as np
import pytest

from tests.test_lru import SMALL, stream
from ztrace.replay.lru import optimal_disk_faults, run_design, run_lru_detailed
from ztrace.replay.lru.workload import NEVER, OP_INVALIDATE, OP_LOAD, OP_STORE, from_arrays

ALL = "none,zspage-lru,entry-lru,entry-lru-2nd-chance,swap-lru,optimal"
SAMPLE_612 = Path(__file__).resolve().parents[1] / "replays" / "samples" / "guest-6.12-zswap"


def harm(run) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    s = run.summary
    return (s["disk_faults"], s["avoidable_disk_faults"], s["optimal_gap"])


def test_next_faults_by_hand():
    # S1 S2 S3 S4 S5 S6 L1 L5 S7 S8 (event indices 0..9): page 1's next fault is L1 (6),
    # page 5's is L5 (7); every other store is never faulted; after a load, nothing follows.
    nf = stream(SMALL).prepared().nf.tolist()
    assert nf == [6, NEVER, NEVER, NEVER, 7, NEVER, NEVER, NEVER, NEVER, NEVER]
    # a store or an invalidate before the load ends the interval: no next fault
    w = stream([(OP_STORE, 1, 9), (OP_INVALIDATE, 1, 0), (OP_LOAD, 1, 0), (OP_STORE, 2, 9)])
    assert w.prepared().nf.tolist() == [NEVER, 2, NEVER, NEVER]


def test_harm_exact_on_small_stream():
    # pool=bytes, limit 2 pages = 8192 B; every page is 2048 B (zspage-lru: 2056 B).
    runs = {
        r.design: r for r in run_lru_detailed(stream(SMALL), ALL, pool_limit=2, params="pool=bytes")
    }
    # optimal: S1-S4 fill 8192 B. S5 (next fault 7) evicts a never-faulted entry (2, 3 or 4);
    # S6 (never faulted) is the farthest itself → bypass (a reject). L1, L5 hit. S7, S8 fit.
    assert harm(runs["optimal"]) == (0, 0, 0)
    assert (runs["optimal"].summary["writebacks"], runs["optimal"].summary["rejects"]) == (1, 1)
    # entry-lru: S6 rejected (never faulted: not judged). The worker writes back 1 (next
    # fault 6) while 2, 3, 4 (never faulted) stay → avoidable; then 2, 3, 4 (never faulted),
    # then 5 (next fault 7) with zswap empty → not avoidable. L1, L5 from disk.
    assert harm(runs["entry-lru"]) == (2, 1, 2)
    # 2nd chance: the worker rotates 1, 2, 3, writes back 1 (2, 3 never faulted stay) →
    # avoidable; later 2 (never faulted). L1 from disk (avoidable), L5 hits.
    assert harm(runs["entry-lru-2nd-chance"]) == (1, 1, 1)
    # swap-lru: S5 writes back 1 while 2, 3, 4 stay → avoidable; S6 writes back 2; L1 disk.
    assert harm(runs["swap-lru"]) == (1, 1, 1)
    # zspage-lru: S5 (next fault 7) rejected while 2, 3, 4 (never faulted) are held →
    # avoidable; the worker writes back zspage {1} (next fault 6; 2, 3, 4 stay) → avoidable.
    # L1 and L5 both from disk, both avoidable.
    assert harm(runs["zspage-lru"]) == (2, 2, 2)
    # 6.1 keeps everything it stored; S6-S8 are never faulted. No disk faults.
    assert harm(runs["none"]) == (0, 0, 0)


def test_clean_copy_counts_as_held_for_avoidable():
    # 6.1 (`none`, non-exclusive loads), pool=bytes, limit 1 page, 3000-byte pages.
    # S1 stored (1 page); L1 hits and leaves a clean copy whose next fault is never. S2 (next
    # fault: event 4) is stored (1 is not > 1; now 2 pages). S3 (next fault 5): 2 > 1 →
    # rejected while P1's useless copy holds space → its disk fault at L3 is avoidable.
    # optimal (exclusive loads): L1 frees P1; at S3 the only held page, P2, is faulted
    # sooner (4 < 5), so S3 goes to disk: the same one fault, not avoidable. `none` is at
    # the optimum here, yet one of its faults was avoidable: the two metrics differ.
    S, L = OP_STORE, OP_LOAD
    ops = [(S, 1, 3000), (L, 1, 0), (S, 2, 3000), (S, 3, 3000), (L, 2, 0), (L, 3, 0)]
    assert harm(run_design(stream(ops), "none", 1, "pool=bytes")) == (1, 1, 0)
    assert harm(run_design(stream(ops), "optimal", 1, "pool=bytes")) == (1, 0, 0)


def test_json_prints_harm_for_each_design(tmp_path, cli):
    from ztrace.workloads.synth_swap import write_swap_trace

    write_swap_trace(tmp_path / "pc", "phase-change", scale=0.1)
    r = cli(
        "replay",
        str(tmp_path / "pc"),
        "--lru",
        "none,entry-lru,swap-lru,optimal",
        "--pool-limit",
        "512",
        "--json",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["lru"]
    assert [x["lru_design"] for x in rows] == ["none", "entry-lru", "swap-lru", "optimal"]
    opt = rows[-1]
    assert opt["optimal_gap"] == 0 and opt["avoidable_disk_faults"] == 0
    for x in rows:
        assert x["optimal_gap"] == x["disk_faults"] - opt["disk_faults"] >= 0
        assert x["latency_disk_ns"] == 200_000.0 and x["latency_zswap_ns"] == 10_000.0
        assert 0 <= x["avoidable_disk_faults"] <= x["disk_faults"]


@pytest.mark.parametrize(
    "source, limits, params",
    [
        ("sample-6.12", (256, 1024, 2048, 4096, 6144, 8192, 12288), None),
        ("phase-change", (64, 256, 1024, 2048), None),
        ("phase-change", (64, 256, 1024, 2048), "pool=bytes"),
    ],
)
def test_optimal_has_fewest_disk_faults_at_every_limit(source, limits, params):
    from ztrace.format import Trace
    from ztrace.replay.lru.workload import load_workload
    from ztrace.workloads.synth_swap import synth_swap

    if source == "sample-6.12":  # real 6.12 guest swap traffic (replays/samples)
        w = load_workload(SAMPLE_612)
    else:
        table, meta = synth_swap("phase-change", seed=0, scale=0.2)
        w = load_workload(Trace(table=table, meta=meta, files=[]))
    for limit in limits:
        runs = {
            r.design: r.summary for r in run_lru_detailed(w, ALL, pool_limit=limit, params=params)
        }
        opt = runs["optimal"]
        assert opt["avoidable_disk_faults"] == 0 and opt["optimal_gap"] == 0
        assert opt["disk_faults"] == optimal_disk_faults(w, limit)
        for name, s in runs.items():
            assert s["disk_faults"] >= opt["disk_faults"], (limit, name)
            assert s["optimal_gap"] == s["disk_faults"] - opt["disk_faults"]
            assert 0 <= s["avoidable_disk_faults"] <= s["disk_faults"]


# --------------------------------------------------------------------------- libCacheSim


def _uniform_stream(seed: int, n: int, pages: int, clen: int):  # type: ignore[no-untyped-def]
    """Swap-like traffic: a page is stored, then faulted or freed, then stored again."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, pages + 1) ** 0.8
    out_ops, out_pages = [], []
    swapped = np.zeros(pages + 1, dtype=bool)
    for p in rng.choice(pages, size=n, p=w / w.sum()) + 1:
        if swapped[p]:
            out_ops.append(OP_LOAD if rng.random() < 0.85 else OP_INVALIDATE)
        else:
            out_ops.append(OP_STORE)
        swapped[p] = not swapped[p]
        out_pages.append(int(p))
    ops = np.asarray(out_ops)
    return from_arrays(np.arange(n) * 100, ops, out_pages, np.where(ops == OP_STORE, clen, 0))


def _peer_min(w, cache, size_of) -> int:  # type: ignore[no-untyped-def]
    """Disk faults of MIN with bypass, driven through a libCacheSim cache: its `to_evict`
    names the victim (farthest next access), the bypass test compares next accesses."""
    nf = w.prepared().nf
    nxt: dict[int, int] = {}
    on_disk: set[int] = set()
    faults = 0
    for i, (op, page) in enumerate(zip(w.op.tolist(), w.page.tolist(), strict=True)):
        req = lcs.Request()
        req.obj_id = page
        req.obj_size = size_of(i)
        req.next_access_vtime = int(nf[i]) if nf[i] != NEVER else 2**63 - 1
        if op == OP_STORE:
            cache.remove(page)
            on_disk.discard(page)
            nxt[page] = int(nf[i])
            admitted = True
            while cache.need_eviction(req):
                victim = cache.to_evict(req)
                if victim is None or nxt[int(victim.obj_id)] <= nf[i]:
                    admitted = False
                    break
                on_disk.add(int(victim.obj_id))
                cache.evict(req)
            if admitted:
                cache.insert(req)
            else:
                on_disk.add(page)
        elif op == OP_LOAD:
            if not cache.remove(page) and page in on_disk:
                faults += 1
        else:
            cache.remove(page)
            on_disk.discard(page)
    return faults


@pytest.mark.parametrize("seed, n, pages, limit", [(0, 20_000, 2_000, 16), (1, 30_000, 800, 3)])
def test_optimal_equals_libcachesim_belady_at_page_count_capacity(seed, n, pages, limit):
    # every page 1024 B, pool counted in bytes: capacity = 4 * limit entries exactly
    w = _uniform_stream(seed, n, pages, 1024)
    ours = run_design(w, "optimal", limit, "pool=bytes").summary
    peer = _peer_min(w, lcs.Belady(limit * 4096), lambda i: 1024)
    assert ours["disk_faults"] > 100
    assert ours["disk_faults"] == peer
    for name in ("entry-lru", "swap-lru", "entry-lru-2nd-chance"):
        assert run_design(w, name, limit, "pool=bytes").summary["disk_faults"] >= peer
