"""Dashboard size, build time and Chromium render time for a large trace.

Pipeline measured: ``ztrace synth`` trace (N events) -> ``replay`` under every registered
lock design -> results directory -> ``build_dashboard`` -> headless Chromium render.
Prints one JSON line. The anchor, measured in the same process, is the same results inlined
*without* pre-aggregation (every timeline and classes row as JSON records): what a dashboard
would weigh if it skipped :func:`ztrace.look.dashboard.prepare`.

    .venv/bin/python -m benchmarks.bench_dashboard                 # 10 M events
    .venv/bin/python -m benchmarks.bench_dashboard --events 1000000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _trace(events: int, work: Path) -> Path:
    from ztrace.format import write_trace
    from ztrace.workloads.synth import synth, synth_meta

    out = work / f"trace-{events}"
    if not (out / "part-00000.parquet").exists():
        write_trace(
            out,
            synth("zram-parallel", events=events, seed=1, cpus=4),
            synth_meta("zram-parallel", cpus=4, seed=1, events=events),
        )
    return out


def _results(trace: Path, work: Path) -> tuple[Path, float]:
    from ztrace.replay.engine import replay, write_results
    from ztrace.replay.locks import available

    out = work / f"results-{trace.name}"
    if (out / "timeline.parquet").exists():
        return out, float("nan")
    t = time.perf_counter()
    res = replay(trace, locks=list(available()))
    took = time.perf_counter() - t
    write_results(res, out)
    return out, took


def _render_seconds(html: Path, runs: int) -> tuple[list[float], int, list[str]]:
    from tests.support.browser import chromium, marks, serve, severe_logs, wait_ready

    site = html.parent
    times = []
    with serve(site) as served, chromium() as driver:
        for _ in range(runs):
            driver.get("about:blank")
            driver.get(served.url + html.name)
            times.append(wait_ready(driver, timeout=120))
        drawn = sum(
            len(marks(driver, "locks", c) or [])
            for c in ("timeline", "compare", "memory", "wait_cdf", "heatmap")
        )
        errors = [e["message"] for e in severe_logs(driver)]
    return times, drawn, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)

    from ztrace.format import read_results
    from ztrace.look.dashboard import build_dashboard, javascript_bundle

    t = time.perf_counter()
    trace = _trace(args.events, args.work)
    synth_s = time.perf_counter() - t
    results_dir, replay_s = _results(trace, args.work)
    javascript_bundle()  # warm the bundle cache: its one-off cost is not per dashboard

    site = args.work / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir()
    builds = []
    for _ in range(args.runs):
        r = build_dashboard(results_dir, site / "index.html")
        builds.append(r.seconds)
    size = r.bytes
    # Anchor: the same tables inlined raw (no re-binning), as JSON records.
    res = read_results(results_dir)
    raw = sum(
        len(json.dumps(res[n].to_dicts()))
        for n in ("timeline", "classes", "wait_hist")
        if res.has(n)
    ) + len(javascript_bundle())
    render, drawn, errors = _render_seconds(site / "index.html", args.runs)
    line = {
        "bench": "dashboard",
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "events": args.events,
        "lock_designs": res["locks_summary"]["lock_design"].to_list(),
        "results_rows": {n: res[n].height for n in res.tables},
        "synth_s": round(synth_s, 2),
        "replay_s": None if replay_s != replay_s else round(replay_s, 2),
        "build_s_median": round(statistics.median(builds), 3),
        "build_s": [round(b, 3) for b in builds],
        "html_bytes": size,
        "raw_inline_bytes": raw,
        "size_ratio_vs_raw": round(size / raw, 4),
        "render_s_median": round(statistics.median(render), 3),
        "render_s": [round(x, 3) for x in render],
        "marks_drawn": drawn,
        "console_errors": errors,
    }
    print(json.dumps(line), flush=True)
    return 0 if not errors and size < 10e6 else 1


if __name__ == "__main__":
    sys.exit(main())
