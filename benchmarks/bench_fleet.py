"""Fleet sweep wall time: ``-j 1`` (serial, in-process) against ``-j 2`` (driver + 1 Ray worker).

Pipeline measured: the whole ``ztrace fleet sweep`` command in a fresh process (discovery
and hashing, Ray start-up for ``-j 2``, the tasks, assembling ``fleet.parquet``) on a
synthetic fleet of ``--hosts`` traces, each with ``--events`` allocator events and a
phase-change swap stream; tasks = hosts × (2 lock designs + 1 LRU design × 2 pool limits).
Each round runs A (-j 1) and B (-j 2) back to back into fresh output directories, so host
load hits both alike; the anchor is the ``-j 1`` run of the same round. A third arm times a
rerun over a finished sweep (every task skipped): the fixed cost, which subtracted from the
serial wall gives the per-task cost used for the cluster projection. The sweep's own timing
(``--json``: Ray start-up, and the task phase from first submit to last result) gives a
second ratio, the task phase alone, which is what a long sweep converges to.

Prints one JSON line per round and a summary line (medians, min/max spread, the load
average around every run: this machine has 2 cores shared by six engineers).

    .venv/bin/python -m benchmarks.bench_fleet                      # 8 hosts = 32 tasks, 3 rounds
    .venv/bin/python -m benchmarks.bench_fleet --hosts 6 --events 100000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ["--locks", "class,pool", "--lru", "entry-lru", "--pool-limits", "10%,20%"]
TASKS_PER_HOST = 4


def _run(traces: Path, out: Path, jobs: int) -> dict[str, float]:
    la0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "ztrace", "fleet", "sweep", str(traces), *SWEEP,
         "-j", str(jobs), "-o", str(out), "-q", "--json"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"sweep failed: {r.stderr}")
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    return {
        "wall_s": wall,
        "ran": doc["ran"],
        "ray_startup_s": doc["timing_s"]["startup"],
        "driver_idle_s": doc["timing_s"].get("driver_idle", 0.0),
        "ray_workers": doc.get("ray_workers", 0),
        "tasks_in_driver": doc.get("tasks_in_driver", 0),
        "tasks_s": doc["timing_s"]["tasks"],
        "load1_before": la0,
        "load1_after": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--scale", type=float, default=1.0, help="swap stream length")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--traces",
        type=Path,
        default=None,
        help="reuse a fleet written earlier by tests/support/fleet.py:write_fleet with the "
        "same --hosts/--events/--scale (kept; not deleted)",
    )
    ap.add_argument("--cluster-hosts", type=int, default=1000)
    ap.add_argument("--cluster-designs", type=int, default=10)
    ap.add_argument("--cluster-cores", type=int, default=64)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.support.fleet import write_fleet

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        if args.traces is not None:
            traces = args.traces
        else:
            traces = write_fleet(work / "traces", args.hosts, events=args.events, scale=args.scale)
        tasks = args.hosts * TASKS_PER_HOST
        # warm numba's cache and the page cache once (not timed)
        _run(traces, work / "warm", 1)
        serial, ray, fixed, rounds = [], [], [], []
        phase: list[float] = []  # task phase only: -j 1 tasks_s / -j 2 tasks_s
        for i in range(args.rounds):
            a = _run(traces, work / f"a{i}", 1)
            b = _run(traces, work / f"b{i}", 2)
            c = _run(traces, work / f"a{i}", 1)  # all tasks done: the fixed cost
            assert a["ran"] == b["ran"] == tasks and c["ran"] == 0
            same = (work / f"a{i}" / "fleet.parquet").read_bytes() == (
                work / f"b{i}" / "fleet.parquet"
            ).read_bytes()
            serial.append(a["wall_s"])
            ray.append(b["wall_s"])
            fixed.append(c["wall_s"])
            phase.append(a["tasks_s"] / b["tasks_s"])
            row = {"round": i, "tasks": tasks, "j1": a, "j2": b, "resume_all_done": c,
                   "speedup": a["wall_s"] / b["wall_s"], "byte_identical": same}  # fmt: skip
            rounds.append(row)
            print(json.dumps(row), flush=True)
        ratios = [s / r for s, r in zip(serial, ray, strict=True)]
        per_task = (statistics.median(serial) - statistics.median(fixed)) / tasks
        n_cluster = args.cluster_hosts * args.cluster_designs
        waves = math.ceil(n_cluster / args.cluster_cores)
        summary = {
            "bench": "fleet",
            "machine": {
                "node": platform.node(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "command": f"ztrace fleet sweep {args.hosts} traces {' '.join(SWEEP)} -j 1 vs -j 2",
            "events_per_trace": args.events,
            "tasks": tasks,
            "rounds": args.rounds,
            "anchor": "-j 1 (serial, same round)",
            "j1_wall_s_median": statistics.median(serial),
            "j1_wall_s_minmax": [min(serial), max(serial)],
            "j2_wall_s_median": statistics.median(ray),
            "j2_wall_s_minmax": [min(ray), max(ray)],
            "ratio_median": statistics.median(ratios),
            "ratio_minmax": [min(ratios), max(ratios)],
            "target_ratio": 1.7,
            "task_phase_ratio_median": statistics.median(phase),
            "task_phase_ratio_minmax": [min(phase), max(phase)],
            "j2_ray_startup_s": [r["j2"]["ray_startup_s"] for r in rounds],
            "fixed_cost_s_median": statistics.median(fixed),
            "per_task_s": per_task,
            "load1_range": [
                min(min(r["j1"]["load1_before"], r["j2"]["load1_before"]) for r in rounds),
                max(max(r["j1"]["load1_after"], r["j2"]["load1_after"]) for r in rounds),
            ],
            "projection": {
                "tasks": n_cluster,
                "cores": args.cluster_cores,
                "assumes": "per-task cost as measured here (one core of this machine, same "
                "trace size); tasks spread evenly; fixed cost once",
                "wall_s": waves * per_task + statistics.median(fixed),
            },
        }  # fmt: skip
        print(json.dumps(summary), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
