"""A synthetic results directory in the documented schema, for tests, docs and benchmarks.

This is a *fixture*: the numbers are made up (seeded), not the output of a replay. It lets the
look tools be developed and tested against every results file, including ones a given replay
does not write (sweep, lru_*). Real results come from ``ztrace replay``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ztrace.format import RESULT_COLUMNS

LOCK_DESIGNS = ("class", "pool", "stripe4")
LRU_DESIGNS = ("fifo", "lru", "clock")
U64 = pa.uint64()


def _write(out: Path, name: str, cols: dict[str, pa.Array], seed: int) -> None:
    table = pa.table(cols).replace_schema_metadata(
        {"ztrace.results_version": "1", "ztrace.trace": "<sample>", "ztrace.seed": str(seed)}
    )
    pq.write_table(table, out / f"{name}.parquet")


def write_sample_results(
    out: str | os.PathLike[str],
    *,
    n_bins: int = 200,
    bin_ns: int = 10_000_000,
    n_classes: int = 60,
    seed: int = 0,
    lru: bool = True,
) -> Path:
    """Write every results file with plausible seeded values into ``out``; return it."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t = np.arange(n_bins, dtype=np.uint64) * np.uint64(bin_ns)
    # A contention burst in the middle third makes brushing it worthwhile.
    burst = 1.0 + 4.0 * np.exp(-(((np.arange(n_bins) - n_bins / 2) / (n_bins / 10)) ** 2))
    tl: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "lock_design",
            "bin_start_ns",
            "bin_ns",
            "ops",
            "acquisitions",
            "contended",
            "wait_ns_total",
            "pages_used",
        )
    }
    summary_rows = []
    hist_rows: dict[str, list] = {
        "lock_design": [],
        "bucket_lo_ns": [],
        "bucket_hi_ns": [],
        "count": [],
    }
    by_lock: dict[str, list] = {k: [] for k in RESULT_COLUMNS["locks_by_lock"]}
    base_pages = 2000 + np.cumsum(rng.integers(0, 20, n_bins))
    for d_i, design in enumerate(LOCK_DESIGNS):
        factor = (1.0, 3.0, 0.6)[d_i]
        ops = rng.integers(9_000, 11_000, n_bins).astype(np.uint64)
        acq = ops * np.uint64(2)
        cont = np.minimum(acq, (acq * 0.02 * factor * burst).astype(np.uint64))
        wait = cont * rng.integers(800, 1200, n_bins).astype(np.uint64) * np.uint64(d_i + 1)
        pages = (base_pages * (1.0 + 0.02 * d_i)).astype(np.uint64)
        for k, v in (
            ("lock_design", np.full(n_bins, design)),
            ("bin_start_ns", t),
            ("bin_ns", np.full(n_bins, bin_ns, dtype=np.uint64)),
            ("ops", ops),
            ("acquisitions", acq),
            ("contended", cont),
            ("wait_ns_total", wait),
            ("pages_used", pages),
        ):
            tl[k].append(v)
        # log2 wait histogram: a lognormal-ish mass around 2^(10 + d_i).
        ks = np.arange(6, 22)
        mass = np.exp(-((ks - (10 + d_i)) ** 2) / 6.0)
        counts = np.round(mass / mass.sum() * cont.sum()).astype(np.uint64)
        for k, c in zip(ks, counts, strict=True):
            if c:
                hist_rows["lock_design"].append(design)
                hist_rows["bucket_lo_ns"].append(1 << int(k))
                hist_rows["bucket_hi_ns"].append(1 << (int(k) + 1))
                hist_rows["count"].append(int(c))
        locks = (
            ["pool"]
            if design == "pool"
            else (
                [f"stripe[{i}]" for i in range(4)]
                if design == "stripe4"
                else [f"class[{i}]" for i in range(0, 254, 17)]
            )
        )
        shares = rng.dirichlet(np.ones(len(locks)))
        for lock, s in zip(locks, shares, strict=True):
            c = int(cont.sum() * s)
            by_lock["lock_design"].append(design)
            by_lock["lock"].append(lock)
            by_lock["lock_type"].append("spinlock")
            by_lock["acquisitions"].append(int(acq.sum() * s))
            by_lock["contended"].append(c)
            by_lock["wait_ns_total"].append(int(wait.sum() * s))
            by_lock["wait_ns_max"].append(int(2 ** (16 + d_i) * (1 + s)))
            by_lock["wait_ns_min"].append(64 if c else 0)
            by_lock["hold_ns_total"].append(int(acq.sum() * s * 300))
        summary_rows.append(
            (
                design,
                int(acq.sum()),
                int(cont.sum()),
                float(cont.sum() / acq.sum()),
                int(wait.sum()),
                float(wait.sum() / max(1, cont.sum())),
                1 << (10 + d_i),
                1 << (14 + d_i),
                1 << (17 + d_i),
                int(acq.sum() * 300),
            )
        )
    _write(
        out,
        "timeline",
        {
            k: (
                pa.array(np.concatenate(v))
                if k == "lock_design"
                else pa.array(np.concatenate(v), type=U64)
            )
            for k, v in tl.items()
        },
        seed,
    )
    names = RESULT_SUMMARY_COLUMNS
    _write(
        out,
        "locks_summary",
        {
            n: pa.array(
                [r[i] for r in summary_rows],
                type=pa.string()
                if n == "lock_design"
                else pa.float64()
                if n in ("contention_rate", "wait_ns_avg")
                else U64,
            )
            for i, n in enumerate(names)
        },
        seed,
    )
    _write(
        out,
        "wait_hist",
        {
            k: pa.array(v, type=pa.string() if k == "lock_design" else U64)
            for k, v in hist_rows.items()
        },
        seed,
    )
    _write(
        out,
        "locks_by_lock",
        {
            k: pa.array(v, type=pa.string() if k in ("lock_design", "lock", "lock_type") else U64)
            for k, v in by_lock.items()
        },
        seed,
    )
    # classes: occupancy per size class over time (the `class` design's pool).
    cls_idx = np.arange(0, 254, max(1, 254 // n_classes))[:n_classes].astype(np.int16)
    bi, ci = np.meshgrid(np.arange(n_bins), np.arange(len(cls_idx)), indexing="ij")
    alloc = (rng.integers(50, 400, bi.shape) + bi).astype(np.uint64)
    used = (alloc * (0.55 + 0.4 * rng.random(bi.shape))).astype(np.uint64)
    size = 32 + cls_idx.astype(np.int64) * 16
    _write(
        out,
        "classes",
        {
            "bin_start_ns": pa.array(t[bi.ravel()], type=U64),
            "class_idx": pa.array(cls_idx[ci.ravel()], type=pa.int16()),
            "class_size": pa.array(size[ci.ravel()], type=pa.uint32()),
            "obj_allocated": pa.array(alloc.ravel(), type=U64),
            "obj_used": pa.array(used.ravel(), type=U64),
            "pages_used": pa.array((alloc.ravel() * size[ci.ravel()] // 4096), type=U64),
        },
        seed,
    )
    if lru:
        _write_lru(out, rng, t, seed)
    (out / "summary.json").write_text(
        json.dumps(
            {
                "trace": "<sample>",
                "events": int(sum(v.sum() for v in tl["ops"])),
                "lost_events": 0,
                "sample": True,
            },
            indent=2,
        )
    )
    # complete: readers refuse a results directory without a manifest (issue 11)
    from ztrace.format.safeio import write_manifest

    (out / "manifest.json").unlink(missing_ok=True)
    write_manifest(out)
    return out


RESULT_SUMMARY_COLUMNS = RESULT_COLUMNS["locks_summary"]
LRU_COLUMNS = RESULT_COLUMNS["lru_summary"]


def _lru_rows(rng: np.random.Generator, limits: list[int]) -> dict[str, pa.Array]:
    rows: dict[str, list] = {k: [] for k in LRU_COLUMNS}
    for d_i, design in enumerate(LRU_DESIGNS):
        for lim in limits:
            stores = 100_000
            wb = int(stores * max(0.0, 0.6 - lim / 20_000))
            inv = int(wb * (0.3, 0.05, 0.12)[d_i] * (1 + rng.random() * 0.1))
            hits = int(40_000 * min(1.0, lim / 8000))
            disk = 40_000 - hits
            vals = (
                design,
                lim,
                stores,
                int(stores * 0.01),
                wb,
                wb * 4096,
                inv,
                inv / max(1, wb),
                10_000_000 * (d_i + 1),
                900_000_000,
                hits,
                disk,
                (hits * 20_000 + disk * 2_000_000) / 40_000,
                disk,  # disk_faults
                int(disk * (0.5, 0.1, 0.3)[d_i]),  # avoidable_disk_faults
                int(disk * (0.6, 0.1, 0.35)[d_i]),  # optimal_gap
                20_000.0,
                2_000_000.0,
            )
            for k, v in zip(LRU_COLUMNS, vals, strict=True):
                rows[k].append(v)
    types = {
        "lru_design": pa.string(),
        "inversion_rate": pa.float64(),
        "expected_fault_latency_ns": pa.float64(),
        "optimal_gap": pa.int64(),
        "latency_zswap_ns": pa.float64(),
        "latency_disk_ns": pa.float64(),
    }
    return {k: pa.array(v, type=types.get(k, U64)) for k, v in rows.items()}


def _write_lru(out: Path, rng: np.random.Generator, t: np.ndarray, seed: int) -> None:
    _write(out, "lru_summary", _lru_rows(rng, [4096]), seed)
    _write(out, "sweep", _lru_rows(rng, [1024, 2048, 4096, 6144, 8192, 12288]), seed)
    n = len(t)
    cols: dict[str, list] = {
        k: []
        for k in (
            "lru_design",
            "bin_start_ns",
            "pool_pages",
            "inversions",
            "zswap_hits",
            "disk_swapins",
            "writebacks",
        )
    }
    for d_i, design in enumerate(LRU_DESIGNS):
        cols["lru_design"].append(np.full(n, design))
        cols["bin_start_ns"].append(t)
        cols["pool_pages"].append(np.minimum(4096, 100 + np.arange(n) * 40).astype(np.uint64))
        cols["inversions"].append(rng.poisson(2 + d_i, n).astype(np.uint64))
        cols["zswap_hits"].append(rng.poisson(200, n).astype(np.uint64))
        cols["disk_swapins"].append(rng.poisson(20 * (d_i + 1), n).astype(np.uint64))
        cols["writebacks"].append(rng.poisson(30, n).astype(np.uint64))
    _write(
        out,
        "lru_timeline",
        {
            k: (
                pa.array(np.concatenate(v))
                if k == "lru_design"
                else pa.array(np.concatenate(v), type=U64)
            )
            for k, v in cols.items()
        },
        seed,
    )
