"""Capture benchmark: consumer throughput with nothing lost, and probe overhead on zram.

Each run writes to /dev/zram0 (held under the shared flock) with N O_DIRECT writer
threads (one subprocess) for S seconds, in turn without capture ("off"), with the probes
attached but the consumer only copying the ring ("probes": the kernel-side cost), and under
``ztrace capture --probes zsmalloc,locks`` ("on", the CLI exactly as a user runs it, writing
Parquet). Prints one JSON line per run, then one summary line with medians:

* ``events_per_s``: rows written per second of workload, with ``lost`` (kernel-counted ring
  buffer drops + reorder drops) -- the consumer keeps up when ``lost`` is 0;
* ``overhead_pct``: 1 - median(on pages/s) / median(off pages/s).

    sudo .venv/bin/python -m benchmarks.bench_capture --runs 5 --writers 4 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


def _workload_cmd(writers: int, seconds: float, pages: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ztrace",
        "host",
        "writers",
        "--writers",
        str(writers),
        "--seconds",
        str(seconds),
        "--pages-per-writer",
        str(pages),
    ]


def _attach_probes(ringbuf_pages: int) -> tuple[object, object, object]:
    """Probes attached, consumer only copying the ring: the kernel-side cost alone."""
    import threading

    from ztrace.capture.features import detect
    from ztrace.capture.loader import Loaded, make_plan

    loaded = Loaded(make_plan(detect(), ["zsmalloc", "locks"], ringbuf_pages=ringbuf_pages))
    stop = threading.Event()
    count = [0]

    def consume() -> None:
        while not stop.is_set():
            stop.wait(0.05)
            count[0] += len(loaded.reader.read(1 << 20))

    th = threading.Thread(target=consume, daemon=True)
    th.start()

    def finish() -> int:
        stop.set()
        th.join()
        count[0] += len(loaded.reader.read(1 << 20))
        loaded.close()
        return count[0]

    return loaded, th, finish


def _run(
    mode: str, writers: int, seconds: float, pages: int, ringbuf_pages: int, tmp: Path
) -> dict[str, object]:
    from ztrace.format import read_meta, trace_files

    out = tmp / f"t-{time.monotonic_ns()}"
    cmd = _workload_cmd(writers, seconds, pages)
    if mode == "on":
        cmd = [
            sys.executable,
            "-m",
            "ztrace",
            "capture",
            "-o",
            str(out),
            "--quiet",
            "--probes",
            "zsmalloc,locks",
            "--ringbuf-pages",
            str(ringbuf_pages),
            "--",
            *cmd,
        ]
    loaded = None
    if mode == "probes":
        loaded = _attach_probes(ringbuf_pages)
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=seconds + 300)
    wall = time.monotonic() - t0
    probe_events = 0
    if loaded is not None:
        probe_events = loaded[2]()
    if p.returncode != 0:
        raise SystemExit(f"{mode} run failed: {p.stderr.strip().splitlines()[-1:]}")
    wl = json.loads(p.stdout.strip().splitlines()[-1])
    row: dict[str, object] = {
        "mode": mode,
        "writers": writers,
        "seconds": round(wl["seconds"], 3),
        "pages_written": wl["pages_written"],
        "pages_per_s": round(wl["pages_written"] / wl["seconds"]),
        "wall_s": round(wall, 2),
    }
    if mode == "probes":
        row.update(events=probe_events, events_per_s=round(probe_events / wl["seconds"]))
    if mode == "on":
        files = trace_files(out)
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        row.update(
            events=rows,
            events_per_s=round(rows / wl["seconds"]),
            lost=read_meta(out).lost_events,
            consumer_cpu_us_per_event=round(
                1e6 * float(read_meta(out).extra.get("consumer_cpu_s", "nan")) / max(rows, 1), 2
            ),
            files=len(files),
            bytes=sum(f.stat().st_size for f in files),
        )
        shutil.rmtree(out, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pages-per-writer", type=int, default=4096)
    ap.add_argument("--ringbuf-pages", type=int, default=4096)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_capture: needs root (BPF, /dev/zram0)", file=sys.stderr)
        return 2
    from ztrace.host.zram import zram_device

    tmp = Path(tempfile.mkdtemp(prefix="ztrace-bench-"))
    rows: list[dict[str, object]] = []
    try:
        with zram_device(disksize=max(64 << 20, args.writers * args.pages_per_writer * 8192)):
            for i in range(args.runs):
                for mode in ("off", "probes", "on"):
                    row = {
                        "run": i,
                        **_run(
                            mode,
                            args.writers,
                            args.seconds,
                            args.pages_per_writer,
                            args.ringbuf_pages,
                            tmp,
                        ),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    off = [r["pages_per_s"] for r in rows if r["mode"] == "off"]
    on = [r for r in rows if r["mode"] == "on"]
    med_off = statistics.median(off)
    med_on = statistics.median([r["pages_per_s"] for r in on])
    med_probes = statistics.median([r["pages_per_s"] for r in rows if r["mode"] == "probes"])
    summary = {
        "summary": True,
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "runs": args.runs,
        "writers": args.writers,
        "seconds": args.seconds,
        "median_pages_per_s_off": med_off,
        "median_pages_per_s_on": med_on,
        "median_pages_per_s_probes_only": med_probes,
        "overhead_pct": round(100 * (1 - med_on / med_off), 1),
        "overhead_pct_probes_only": round(100 * (1 - med_probes / med_off), 1),
        "median_events_per_s": statistics.median([r["events_per_s"] for r in on]),
        "max_events_per_s_with_0_lost": max(
            [r["events_per_s"] for r in on if r["lost"] == 0], default=0
        ),
        "lost_total": sum(int(r["lost"]) for r in on),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
