"""The capture's ring lock, contended from raw-tracepoint context, must not deadlock the kernel.

Session 6's CI hang (CHANGELOG, "Fixed: `--probes locks` could deadlock a kprobe kernel"): a
ring write takes the ring's spinlock with interrupts off (6.1 kernel/bpf/ringbuf.c:
__bpf_ringbuf_reserve); contended, it enters queued_spin_lock_slowpath, where kprobe kernels
have the capture's slowpath kprobe pair. From a raw-tracepoint program (no bpf_prog_active)
the pair ran, and its return program wrote into the ring whose lock its CPU now held.

This check makes that collision happen on purpose: a real capture
(``zsmalloc,locks``: with the slowpath pair wherever kprobes exist) drains the ring while
``PRODUCERS`` processes run the capture's synthetic producer ``zt_selftest`` (64 events and
one ring write per run, through the probes' own zt_begin/zt_end) on every CPU in turn,
through BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU, as the consumer's own flush does
(loader.BatchFlusher). Their ring writes collide across CPUs: 7 times in 10 s in the 6.1
TCG guest (session 7). Before the fix the guest hung within that time (both times it was
tried: one CPU spinning in the slowpath with interrupts off); now each collision is counted
(``spin_own_ring``) and nothing is lost. The result, as JSON: runs, events offered and
written, lost events, ``spin_own_ring``, whether the slowpath pair was attached.

Run it where the kprobes are: ``ztrace vm run -k 6.1 -s ringlock`` (scenarios/ringlock.sh).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: producer processes; each runs the producer on every CPU in turn
PRODUCERS = 2
#: events per run of zt_selftest (probes/zs_capture.bpf.c: ZT_BATCH)
EVENTS_PER_RUN = 64


def _produce(fd: int, seconds: float, runs: Any) -> None:
    """Child: run zt_selftest on every online CPU, over and over, for ``seconds``."""
    from ztrace.capture.loader import BatchFlusher, online_cpus

    flusher, n = BatchFlusher(fd), 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        flusher.flush_all()
        n += 1
    with runs.get_lock():
        runs.value += n * len(online_cpus())


def run(seconds: float, out: Path) -> dict[str, Any]:
    """One capture with ``PRODUCERS`` producers for ``seconds``; the result dict."""
    from ztrace.capture.session import CaptureOptions, start_with_selftest
    from ztrace.format import read_meta

    cap, fd = start_with_selftest(CaptureOptions(out=out, probes=["zsmalloc", "locks"]))
    slowpath = "-DZT_SPIN_SLOWPATH" in cap.plan.cflags
    ctx = mp.get_context("fork")  # the children inherit the program fd
    runs = ctx.Value("q", 0)
    procs = [ctx.Process(target=_produce, args=(fd, seconds, runs)) for _ in range(PRODUCERS)]
    for p in procs:
        p.start()
    summary = cap.run(until=lambda: not any(p.is_alive() for p in procs))
    for p in procs:
        p.join()
    meta = read_meta(out)
    return {
        "seconds": seconds,
        "producers": PRODUCERS,
        "slowpath_pair": slowpath,
        "runs": runs.value,
        "offered_events": runs.value * EVENTS_PER_RUN,
        "events_written": summary.events,
        "lost_events": meta.lost_events,
        "spin_own_ring": summary.lost.get("spin_own_ring", 0),
        "spin_reentry": summary.lost.get("spin_reentry", 0),
        "producers_rc": [p.exitcode for p in procs],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m ztrace.checks.ringlock", description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", type=Path, help="write the result here (default: stdout only)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.seconds, Path(tmp) / "trace")
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
