"""Warm numba's disk cache at set-up: ``python -m ztrace.cli.warm`` (``make setup`` runs it).

Tiny replays (a few thousand synthetic events) through every lock design, with replicas, and
every LRU design, so that every specialisation a user's first replay (and ``make demo``) calls
is compiled and cached, and the first real command does not stall for ~30 s (issue 15). The
compiled code does not depend on the events, only on their column types, which synthetic and
captured traces share (docs/trace-format.md). Not a subcommand: it is a set-up step.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def warm() -> float:
    """Compile and cache the replay core; return the seconds it took."""
    from ztrace.format import write_trace
    from ztrace.replay.compile_notice import announce_compiles
    from ztrace.replay.interval import replay_interval
    from ztrace.replay.locks import available
    from ztrace.replay.lru import design_names, run_lru
    from ztrace.replay.stops import held_durations
    from ztrace.workloads import synth, synth_swap

    announce_compiles()
    t0 = time.perf_counter()
    locks = ",".join(available())
    with tempfile.TemporaryDirectory(prefix="ztrace-warm-") as tmp:
        alloc = synth.synth("zram-parallel", events=4000, seed=0, cpus=4)
        path = Path(tmp) / "alloc"
        write_trace(path, alloc, synth.synth_meta("zram-parallel", cpus=4, seed=0, events=4000))
        replay_interval(str(path), locks=locks, runs=2)
        # A capture's shape too: measured durations (the hold prescan) and zswap traffic with
        # swap entries beside the allocator events (swap_key is then a computed, writable
        # array, not Arrow's read-only view: another specialisation of the ingest loop).
        swap, meta = synth_swap.synth_swap("zipf-steady", seed=0, scale=0.05)
        alloc = alloc.set_column(7, "duration_ns", pc.add(alloc.column("duration_ns"), 100))
        nulls = [pa.nulls(alloc.num_rows, f.type) for f in swap.schema][alloc.num_columns :]
        alloc = pa.Table.from_arrays(alloc.columns + nulls, schema=swap.schema)
        mixed = pa.concat_tables([swap, alloc]).unify_dictionaries().sort_by("ts_ns")
        path = Path(tmp) / "swap"
        write_trace(path, mixed, meta)
        replay_interval(str(path), locks=locks, runs=2)
        run_lru(str(path), design_names(), pool_limit="20%")
    # A capture's lock rows (`wait_ns` set): the measured waits inside each call are taken
    # out of its duration (ztrace.replay.stops.held_durations), a loop the synthetic traces
    # never reach. Without this, the first replay of a real capture (make demo's first)
    # still compiled it (session 13, a fresh clone: ~1.5 s after the warm step).
    held_durations(
        pa.record_batch(
            {
                "event": ["zs_malloc", "spin_slowpath", "lock_contention"],
                "wait_ns": pa.array([None, 20, 25], pa.uint64()),
            }
        ),
        np.array([0, 10, 10], np.int64),
        np.array([40, 0, 0], np.int64),
        np.array([1, 1, 1], np.int64),
    )
    return time.perf_counter() - t0


def main() -> None:
    took = warm()
    print(f"ztrace: replay core compiled and cached ({took:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
