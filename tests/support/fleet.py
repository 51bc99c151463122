"""Synthetic fleets for the fleet tests and benchmark: one trace per host, each with both
allocator events (lock tasks) and zswap events (LRU tasks), in a hive tree host=NAME/."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ztrace.format import conform, write_trace
from ztrace.workloads.synth import synth
from ztrace.workloads.synth_swap import synth_swap


def write_host_trace(
    out: Path, seed: int, *, events: int = 5000, scale: float = 0.1, ram: bool = True
) -> Path:
    """One host's trace: zram-parallel allocator events merged with a phase-change swap
    stream (seeded). ``ram=False`` drops the RAM size, so percent pool limits fail."""
    alloc = conform(synth("zram-parallel", events=events, seed=seed, cpus=4))
    swap, meta = synth_swap("phase-change", seed=seed, scale=scale)
    t = conform(pa.concat_tables([alloc, conform(swap)], promote_options="default"))
    t = t.take(pc.sort_indices(t, [("ts_ns", "ascending")]))
    extra = dict(meta.extra)
    if not ram:
        extra.pop("ram_bytes", None)
        extra.pop("cgroup_ram_pages", None)
    write_trace(out, t, meta.replace(nr_cpus=4, extra=extra))
    return out


def write_fleet(root: Path, hosts: int, **kw: object) -> Path:
    """``root/host=web-NN/`` for NN in 0..hosts-1."""
    for i in range(hosts):
        write_host_trace(root / f"host=web-{i:02d}", seed=i, **kw)  # type: ignore[arg-type]
    return root


def synthetic_fleet_dataset(out: Path, hosts: int, seed: int = 0) -> Path:
    """A fleet dataset in the sweep's schema with ``hosts`` synthetic hosts (no replay):
    lock designs class and pool, LRU designs entry-lru and swap-lru at one pool limit; pool
    hurts most hosts a little and a few a lot."""
    import numpy as np
    import pyarrow.parquet as pq

    from ztrace.fleet.task import COLUMNS

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(hosts):
        host, path = f"web-{i:04d}", f"/fleet/host=web-{i:04d}"
        base = float(rng.lognormal(10, 1))
        hurt = float(rng.lognormal(0.3, 0.4)) * (8.0 if rng.random() < 0.01 else 1.0)
        faults = int(rng.integers(100, 5000))
        common = {"host": host, "trace_path": path, "trace_sha256": "0" * 64, "speedup": 1.0}
        rows += [
            {**common, "kind": "locks", "design": "class", "wait_ns_total": int(base)},
            {**common, "kind": "locks", "design": "pool", "wait_ns_total": int(base * hurt)},
        ]
        common = {**common, "speedup": None, "pool_limit": "20%"}
        rows += [
            {**common, "kind": "lru", "design": "entry-lru", "disk_swapins": faults},
            {**common, "kind": "lru", "design": "swap-lru",
             "disk_swapins": int(faults * rng.uniform(0.5, 1.1))},
        ]  # fmt: skip
    schema = pa.schema([pa.field(k, t) for k, t in COLUMNS.items()])
    t = pa.Table.from_pylist(rows, schema=schema)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        t.replace_schema_metadata({b"ztrace.fleet_version": b"1"}), out / "fleet.parquet"
    )
    return out
