"""What ``ztrace replay --replicas N`` costs: the plain replay (the anchor) against the plain
replay plus N perturbed replicas (``ztrace.replay.interval.replay_interval``), interleaved
(A, B, A, B, ...) in one process after a warm-up that compiles, so host load hits both alike.

One JSON line per trace: machine, command, median process CPU and wall seconds of each side,
their spread (min-max), and the ratio replicas ÷ plain (medians).

    .venv/bin/python -m benchmarks.bench_replicas --replicas 3 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _time(fn: Any) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def bench(trace: str, locks: list[str], replicas: int, runs: int) -> dict[str, Any]:
    from ztrace.replay.engine import replay
    from ztrace.replay.interval import replay_interval

    def plain() -> None:
        replay(trace, locks=locks)

    def with_replicas() -> None:
        replay_interval(trace, locks=locks, runs=1 + replicas)

    plain()
    with_replicas()  # warm-up: numba compiles and caches both paths
    a: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    for _ in range(runs):
        a.append(_time(plain))
        b.append(_time(with_replicas))

    def side(xs: list[tuple[float, float]]) -> dict[str, Any]:
        cpu, wall = [x[0] for x in xs], [x[1] for x in xs]
        return {
            "cpu_s_median": round(statistics.median(cpu), 3),
            "cpu_s_spread": [round(min(cpu), 3), round(max(cpu), 3)],
            "wall_s_median": round(statistics.median(wall), 3),
            "wall_s_spread": [round(min(wall), 3), round(max(wall), 3)],
        }

    pa_, pb = side(a), side(b)
    return {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
        f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}",
        "command": " ".join(sys.argv),
        "trace": trace,
        "locks": ",".join(locks),
        "replicas": replicas,
        "runs": runs,
        "anchor_plain": pa_,
        "with_replicas": pb,
        "ratio_cpu": round(pb["cpu_s_median"] / max(pa_["cpu_s_median"], 1e-9), 2),
        "ratio_wall": round(pb["wall_s_median"] / max(pa_["wall_s_median"], 1e-9), 2),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--events", type=int, default=1_000_000, help="synthetic trace size")
    ap.add_argument("--locks", default="class,pool,pools:32,striped:8,magazine")
    args = ap.parse_args(argv)
    locks = args.locks.split(",")
    from ztrace.format import write_trace
    from ztrace.workloads import synth

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp) / "t"
        write_trace(
            t,
            synth.synth("zram-parallel", events=args.events, seed=1),
            synth.synth_meta("zram-parallel", cpus=4, seed=1, events=args.events),
        )
        for trace in (str(REPO / "replays/samples/default"), str(t)):
            print(json.dumps(bench(trace, locks, args.replicas, args.runs)), flush=True)


if __name__ == "__main__":
    main()
