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
