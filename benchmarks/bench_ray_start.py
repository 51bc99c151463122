"""CPU of starting a local Ray as ``ztrace fleet sweep -j 2`` does, helpers skipped or not.

Pipeline measured: a fresh process imports Ray, calls the runner's own
:func:`ztrace.fleet.runner.start_local_ray` with 1 CPU (``-j 2``: the driver + 1 Ray worker),
then runs one empty task on the worker (Ray is "ready" when it returns). CPU = user + system
seconds of the whole process tree at that moment (the driver, and every process Ray started,
sampled with psutil before the shutdown), so it does not depend on how busy the host is the
way wall time does. Arms, interleaved per round: ``helpers`` (``ZTRACE_RAY_HELPERS=1``: Ray's
autoscaler monitor, log monitor and API server start as ``ray.init`` starts them) against
``lean`` (the default: they are skipped, ztrace/fleet/runner.py ``_UNUSED_HELPERS``).

    .venv/bin/python -m benchmarks.bench_ray_start --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child() -> None:
    import psutil  # type: ignore[import-untyped]

    me = psutil.Process()
    t0 = time.perf_counter()
    import ray

    from ztrace.fleet.runner import start_local_ray

    start_local_ray(ray, 1)
    init_s = time.perf_counter() - t0

    def pid() -> int:
        return os.getpid()

    ray.get(ray.remote(num_cpus=1)(pid).remote())
    ready_s = time.perf_counter() - t0
    per: dict[str, float] = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            name = "driver" if p.pid == me.pid else p.name()
            per[name] = per.get(name, 0.0) + t.user + t.system
        except psutil.Error:
            pass
    ray.shutdown()
    print(json.dumps({"init_s": init_s, "ready_s": ready_s, "cpu_s": sum(per.values()),
                      "processes": len(per), "per_process_cpu_s": per}))  # fmt: skip


def _run(arm: str) -> dict[str, object]:
    env = dict(os.environ, ZTRACE_RAY_HELPERS="1" if arm == "helpers" else "0")
    la = os.getloadavg()[0]
    r = subprocess.run([sys.executable, "-m", "benchmarks.bench_ray_start", "--child"],
                       cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"{arm} failed: {r.stderr}")
    return {"arm": arm, **json.loads(r.stdout.strip().splitlines()[-1]), "load1_before": la}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child()
        return
    runs: dict[str, list[dict[str, object]]] = {"helpers": [], "lean": []}
    for i in range(args.rounds):
        for arm in runs:
            row = _run(arm)
            runs[arm].append(row)
            print(json.dumps({"round": i, **row}), flush=True)

    def stat(arm: str, key: str) -> dict[str, float]:
        xs = [float(r[key]) for r in runs[arm]]  # type: ignore[arg-type]
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}

    print(json.dumps({
        "summary": {arm: {k: stat(arm, k) for k in ("cpu_s", "init_s", "ready_s")} for arm in runs},
        "cpu_saved_s": [float(h["cpu_s"]) - float(le["cpu_s"])  # type: ignore[arg-type]
                        for h, le in zip(runs["helpers"], runs["lean"], strict=True)],
        "load1_now": os.getloadavg()[0],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
