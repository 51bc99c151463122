"""The capture probes' own cost inside a measured zs_malloc/zs_free duration, on this kernel.

A kprobe/kretprobe pair's ``duration_ns`` runs from the entry program's timestamp to the
return program's: it contains the rest of the entry program (``calls.update``), the
kretprobe instance set-up, the trampoline back and the start of the return program
(``calls.lookup``, ``zt_init``). Under TCG that work is several times the lock hold, so a
replay that takes the duration as the hold over-predicts contention.

Measured here, not assumed (``probes/zs_capture.bpf.c``, ``ZT_PROBE_COST``): an *outer*
pair histograms its own entry -> return span of every zs_malloc/zs_free, alone (A) and with
a *nested* pair that does the capture pair's work without the emit (B). Rounds alternate
A, B, A, B over the same workload (``CMD``), so host load hits both alike; the cost of one
pair is the median of B minus the median of A, per function and round. The nested pair runs
its whole handlers (both before and after its timestamps), so this is an upper bound on what
one measured duration contains; ``replay --probe-overhead-ns`` subtracts it.

Run it where the kprobes are (the 6.1/6.12 guests: ``ztrace vm run -s probecost``; the
6.18 host has tracepoints only and its captures carry no durations)::

    python3 -m ztrace.checks.probecost --rounds 3 --json -- sh -c 'insmod zsstress.ko ...'

Stdlib and bcc only: it runs in the guests, which have no numba or pyarrow.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ztrace.capture.loader import PROGRAM, probes_dir
from ztrace.errors import ZtraceError

FUNCS = ("zs_malloc", "zs_free")
#: histogram bucket width and buckets per function (zs_capture.bpf.c: ZT_PC_NS, ZT_PC_BUCKETS)
BUCKET_NS = 20
BUCKETS = 2048
#: what the result's "method" says
METHOD = (
    "outer kprobe/kretprobe pair alone (A) vs with a nested pair doing the capture pair's "
    "work without the emit (B), ABAB; pair cost = median(B) - median(A)"
)


def median_of_hist(counts: list[int]) -> float | None:
    """Median (ns, bucket centre) of a ``BUCKET_NS`` histogram; None when empty.

    >>> median_of_hist([0, 3, 1])
    30.0
    >>> median_of_hist([]) is None
    True
    """
    n = sum(counts)
    if n == 0:
        return None
    half, acc = (n + 1) // 2, 0
    for i, c in enumerate(counts):
        acc += c
        if acc >= half:
            return (i + 0.5) * BUCKET_NS
    return None  # pragma: no cover - unreachable: acc reaches n


def cost_from_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per function: the A and B medians of every round and the pair cost, the median of the
    B - A differences of adjacent rounds (ABAB: round 2k is A, 2k+1 is B).

    >>> r = [{"config": "A", "zs_malloc": 1000.0}, {"config": "B", "zs_malloc": 1600.0},
    ...      {"config": "A", "zs_malloc": 1100.0}, {"config": "B", "zs_malloc": 1650.0}]
    >>> cost_from_rounds(r)["zs_malloc"]["pair_cost_ns"]
    575.0
    """
    out: dict[str, Any] = {}
    for fn in FUNCS:
        a = [r[fn] for r in rounds if r["config"] == "A" and r.get(fn) is not None]
        b = [r[fn] for r in rounds if r["config"] == "B" and r.get(fn) is not None]
        diffs = [y - x for x, y in zip(a, b, strict=False)]
        out[fn] = {
            "a_medians_ns": a,
            "b_medians_ns": b,
            "pair_cost_ns": statistics.median(diffs) if diffs else None,
            "pair_cost_range_ns": [min(diffs), max(diffs)] if diffs else None,
        }
    return out


def detach_all(bpf: Any, attached: list[tuple[str, str, bool]]) -> None:
    """Detach one round's probes, newest first: ``attached`` lists ``(function, program,
    is_kretprobe)`` in the order they were attached (shared with ``holdtime``)."""
    for fn, name, ret in reversed(attached):
        if ret:
            bpf.detach_kretprobe(event=fn, fn_name=name)
        else:
            bpf.detach_kprobe(event=fn, fn_name=name)


def measure(cmd: list[str], rounds: int = 2) -> dict[str, Any]:  # pragma: no cover - kprobes
    """Run ``cmd`` ``2 * rounds`` times (A, B, A, B, ...) under the outer (and nested) pair."""
    from bcc import BPF

    d = probes_dir()
    # ZT_OFFCPU as the capture has it: the nested pair does the off-CPU bookkeeping too
    cflags = [f"-I{d}", "-DZT_KPROBE_ZS", "-DZT_OFFCPU", "-DZT_PROBE_COST", "-DZT_RINGBUF_PAGES=8"]
    bpf = BPF(text=(d / PROGRAM).read_bytes(), cflags=cflags)
    hist = bpf.get_table("zt_pc_hist")
    out_rounds: list[dict[str, Any]] = []
    try:
        for r in range(2 * rounds):
            config = "AB"[r % 2]
            attached: list[tuple[str, str, bool]] = []
            # inner first: probes on one address run newest-first at entry and the
            # kretprobe instances unwind newest-first, so the later (outer) pair encloses it
            sides = (["inner"] if config == "B" else []) + ["outer"]
            for side in sides:
                for fn, short in zip(FUNCS, ("malloc", "free"), strict=True):
                    bpf.attach_kprobe(event=fn, fn_name=f"zt_pc_{side}_{short}_entry")
                    attached.append((fn, f"zt_pc_{side}_{short}_entry", False))
                    bpf.attach_kretprobe(event=fn, fn_name=f"zt_pc_{side}_{short}_return")
                    attached.append((fn, f"zt_pc_{side}_{short}_return", True))
            hist.clear()
            t0 = time.monotonic()
            rc = subprocess.run(cmd, check=False).returncode
            wall = time.monotonic() - t0
            vals = [sum(v) for v in hist.values()]  # per-CPU arrays: sum over CPUs
            detach_all(bpf, attached)
            row: dict[str, Any] = {"round": r, "config": config, "rc": rc, "wall_s": wall}
            for k, fn in enumerate(FUNCS):
                counts = vals[k * BUCKETS : (k + 1) * BUCKETS]
                row[fn] = median_of_hist(counts)
                row[f"{fn}_calls"] = sum(counts)
                row[f"{fn}_overflow"] = counts[-1]
            out_rounds.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        bpf.cleanup()
    return check_result(
        METHOD, cmd, out_rounds, bucket_ns=BUCKET_NS, cost=cost_from_rounds(out_rounds)
    )


def check_result(
    method: str, cmd: list[str], rounds: list[dict[str, Any]], **summary: Any
) -> dict[str, Any]:
    """The JSON a guest check ships (shared with ``holdtime``): the kernel, the method, the
    workload command and every round, then the check's own summary fields."""
    return {"kernel": platform.release(), "method": method, "cmd": cmd, "rounds": rounds, **summary}


def run_check(
    name: str,
    rounds: int,
    rounds_help: str,
    measure: Callable[[list[str], int], dict[str, Any]],
    argv: list[str] | None,
) -> tuple[argparse.Namespace, dict[str, Any]] | None:
    """A guest check's command line (``--rounds``, ``--json``, ``-o``, ``-- CMD``; shared with
    ``holdtime``): ``measure(CMD, rounds)``, the result written to ``-o`` and, with
    ``--json``, to stdout. None (after the one-line error) when no workload command was given.
    """
    ap = argparse.ArgumentParser(prog=f"python3 -m ztrace.checks.{name}")
    ap.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("-o", "--output", help="also write the JSON result to this file")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- workload command")
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        print(f"ztrace: error: {name}: give a workload command after --", file=sys.stderr)
        return None
    try:
        res = measure(cmd, a.rounds)
    except ZtraceError as exc:  # what the kernel lacks: one line, exit 2, as the CLI does
        print(f"ztrace: error: {exc}", file=sys.stderr)
        return None
    if a.output:
        with open(a.output, "w") as f:
            json.dump(res, f, indent=1)
    if a.json:
        print(json.dumps(res, indent=1))
    return a, res


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - kprobes
    got = run_check("probecost", 2, "A/B round pairs (default 2)", measure, argv)
    if got is None:
        return 2
    a, res = got
    if not a.json:
        for fn, c in res["cost"].items():
            print(
                f"{fn}: one probe pair = {c['pair_cost_ns']} ns (range {c['pair_cost_range_ns']})"
            )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
