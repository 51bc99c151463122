"""Terminal tables for what the commands just computed: a replay, a sweep, the checks.

The CLI runs the work and hands the numbers here; nothing in this module replays, captures
or touches a device. ``ztrace report`` (a results directory) lives in :mod:`look.report`.
Tables go to stderr so stdout stays free for ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ztrace.format import Results
from ztrace.look.units import human_ns


def stderr_console(width: int | None = None) -> Console:
    """A console on stderr; off a terminal rich would wrap at 80 columns, these need ~120."""
    return Console(file=sys.stderr, width=width or (None if sys.stderr.isatty() else 120))


def render_json(
    doc: Mapping[str, Any], *, indent: int | None = None, sort_keys: bool = True
) -> str:
    """The JSON the commands print on stdout (keys sorted by default: reproducible output)."""
    return json.dumps(doc, sort_keys=sort_keys, indent=indent, default=str)


def _table(title: str, columns: Sequence[str], left: Sequence[str] = ()) -> Table:
    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right")
    return t


# ------------------------------------------------------------------------------ replay

_LRU_KEYS = (
    "lru_design",
    "pool_limit_pages",
    "stores",
    "writebacks",
    "inversions",
    "zswap_hits",
    "disk_swapins",
)
_BAD = ("bad_alloc", "dup_malloc", "unmatched_free", "unknown_class")


def render_replay(results: Results, con: Console | None = None) -> None:
    """``ztrace replay``'s human output: per design, top locks, LRU rows, debug counters.

    Reads ``results.summary`` (``locks``, ``counters``, ``cost_model``, ``lru``: what
    ``--json`` prints) and the ``locks_by_lock`` table.
    """
    con = con or stderr_console()
    locks: list[dict[str, Any]] = results.summary.get("locks") or []
    lru_rows: list[dict[str, Any]] | None = results.summary.get("lru")
    if locks:
        _print_design_summary(results, locks, con)
        bl = (
            results.tables["locks_by_lock"].to_pylist() if "locks_by_lock" in results.tables else []
        )
        for r in locks:
            rows = sorted(
                (x for x in bl if x["lock_design"] == r["lock_design"] and x["contended"]),
                key=lambda x: (-x["wait_ns_total"], x["lock"], x["lock_type"]),
            )[:5]
            if not rows:
                continue
            lt = _table(
                f"{r['lock_design']}: top locks",
                ("contended", "total wait", "max wait", "avg wait", "type", "lock"),
                left=("type", "lock"),
            )
            for x in rows:
                lt.add_row(
                    str(x["contended"]),
                    human_ns(x["wait_ns_total"]),
                    human_ns(x["wait_ns_max"]),
                    human_ns(x["wait_ns_total"] / x["contended"]),
                    x["lock_type"],
                    x["lock"],
                )
            con.print(lt)
    if lru_rows:
        lt = _table("LRU designs", _LRU_KEYS, left=_LRU_KEYS)
        for row in lru_rows:
            lt.add_row(*(str(row.get(k, "")) for k in _LRU_KEYS))
        con.print(lt)
    c = results.summary.get("counters")
    if c:
        bad = sum(c[k] for k in _BAD)
        total = c["mallocs"] + c["frees"] + c["compacts"] + c["migrates"]
        con.print("\n=== output for debug ===\n")
        con.print(f"bad: {bad}, total: {total}")
        for k in _BAD:
            con.print(f" {k:>16}: {c[k]}")
    cm = results.summary.get("cost_model")
    if isinstance(cm, dict) and "source" in cm:
        con.print(f"cost model: {cm['source']}")


def _print_design_summary(results: Results, locks: list[dict[str, Any]], con: Console) -> None:
    """What users feel first (total wait, wait per op, p99 wait; with intervals when the
    replay ran ``--replicas``), contention second; then the verdicts (issue 10 items 4-5)."""
    from ztrace.look import verdict

    est = verdict.estimates(results)
    ivl = verdict.has_intervals(est)

    def cells(design: str, m: str) -> list[str]:
        e = est.get(design, {}).get(m)
        fmt = (lambda x: str(int(x))) if m == "contended" else human_ns
        if e is None:
            return ["-", ""] if ivl else ["-"]
        return [fmt(e.value), f"[{fmt(e.lo)}, {fmt(e.hi)}]"] if ivl else [fmt(e.value)]

    def header(m: str) -> tuple[str, ...]:
        return (verdict.METRIC_LABEL[m], "interval") if ivl else (verdict.METRIC_LABEL[m],)

    t = _table(
        "lock designs (replayed): what users feel",
        ("design", *(h for m in verdict.LEAD_METRICS for h in header(m))),
        left=("design",),
    )
    for r in locks:
        t.add_row(
            r["lock_design"], *(c for m in verdict.LEAD_METRICS for c in cells(r["lock_design"], m))
        )
    con.print(t)
    t = _table(
        "lock designs (replayed): contention, second",
        ("design", *header("contended"), "rate", "acquired", "peak pages"),
        left=("design",),
    )
    for r in locks:
        t.add_row(
            r["lock_design"],
            *cells(r["lock_design"], "contended"),
            f"{100 * r['contention_rate']:.2f}%",
            str(r["acquisitions"]),
            str(r["pages_used_peak"]),
        )
    con.print(t)
    if len(est) > 1:
        for m in (*verdict.LEAD_METRICS, *verdict.SECOND_METRICS):
            con.print(verdict.verdict_line(est, m), highlight=False, markup=False)
        con.print(verdict.interval_note(est), highlight=False, markup=False)
    flag = verdict.guest_flag(results)
    if flag:
        con.print(f"!! {flag}", highlight=False, markup=False)


# ------------------------------------------------------------------------------- sweep


def render_sweep(rows: Sequence[Mapping[str, Any]], trace: str, con: Console | None = None) -> None:
    """``ztrace sweep``'s table: one row per LRU design × pool limit, harm first."""
    t = Table(title=f"LRU sweep: {trace}")
    for col in (
        "design",
        "limit",
        "disk faults",
        "avoidable",
        "vs optimal",
        "fault ns",
        "inversions",
        "inv rate",
        "stores",
        "rejects",
        "writebacks",
        "hits",
    ):
        t.add_column(col, justify="left" if col == "design" else "right")
    for r in rows:
        t.add_row(
            str(r["lru_design"]),
            str(r["pool_limit_pages"]),
            str(r["disk_faults"]),
            str(r["avoidable_disk_faults"]),
            f"{r['optimal_gap']:+d}",
            f"{r['expected_fault_latency_ns']:.0f}",
            str(r["inversions"]),
            f"{r['inversion_rate']:.3f}",
            str(r["stores"]),
            str(r["rejects"]),
            str(r["writebacks"]),
            str(r["zswap_hits"]),
        )
    (con or Console(stderr=True, width=140)).print(t)


# ------------------------------------------------------------------------------ checks


def render_lock_check(res: Mapping[str, Any]) -> str:
    """``ztrace check locks``: measured vs predicted contention, one line per prediction,
    then the median ratio over the interleaved rounds with its min-max spread."""
    scales = ", ".join(f"{x:.2f}" for x in res.get("hold_scales", []))
    lines = [
        f"kernel {res['host']['kernel']}, {res['host']['cpus']} CPUs, design `class`, "
        f"{res.get('rounds', 1)} interleaved round(s), hold-time scale median "
        f"{res['hold_scale']:.2f} x cost-model defaults"
        + (f" (per round {scales})" if scales else "")
        + ("; holds capped by each CPU's traced gap" if res.get("hold_caps") else ""),
        f"{'round':<6}{'run':<12}{'writers':>8}{'discard':>8}{'ops':>9}{'lost':>6}"
        f"{'contended':>11}{'total wait':>13}  {'predicted':<10}{'contended':>10}"
        f"{'ratio':>7}{'total wait':>13}{'ratio':>7}",
    ]
    for r in res["runs"]:
        preds = [("default", r["default"])]
        preds += [(name, r[name]) for name in ("fitted", "calibrated") if name in r]
        for i, (name, p) in enumerate(preds):
            lead = (
                (
                    f"{r.get('round', 0):<6}{r['role']:<12}{r['writers']:>8}"
                    f"{r['discard_every'] or '-':>8}"
                    f"{r['ops_malloc'] + r['ops_free']:>9}{r['lost_events']:>6}"
                    f"{r['contended']:>11}{human_ns(r['wait_ns']):>13}"
                )
                if i == 0
                else " " * 73
            )
            lines.append(
                f"{lead}  {name:<10}{p['contended']:>10}{p['ratio_contended']:>7.2f}"
                f"{human_ns(p['wait_ns']):>13}{p['ratio_wait']:>7.2f}"
            )
    if res.get("summary"):
        lines += ["", "validation, predicted / measured: median over rounds [min, max]"]
        for x in res["summary"]:
            lo, hi = x["interval"]
            lines.append(
                f"  {x['writers']} writers, discard every {x['discard_every']}: "
                f"{x['metric']:<14} ({x['prediction']}) {x['ratio']:.2f} [{lo:.2f}, {hi:.2f}]"
            )
    lines.append("")
    lines += [f"note: {n}" for n in res["notes"]]
    return "\n".join(lines)


def render_oracle(d: Mapping[str, Any], compactions: Sequence[Mapping[str, Any]]) -> Table:
    """``ztrace check oracle``: the page-exact comparison as one metric/value table."""
    t = Table(
        title=f"zram oracle — {d['kernel_release']} ({d['comp_algorithm']}, "
        f"chain {d['chain_size']}, seed {d['seed']})"
    )
    t.add_column("metric")
    t.add_column("value", justify="right")
    table = "<= 6.2 legacy class table" if d["legacy_classes"] else f"chain size {d['chain_size']}"
    groups = ">= 6.4 in-use-ratio groups" if d["ratio_groups"] else "<= 6.3 fullness groups"
    rows = [
        ("modelled generation", f"{table} ({d['chain_size_source']}), {groups}"),
        (
            "ops (before / after compaction)",
            f"{d['ops']} ({d['ops_before_compaction']} / {d['ops_after_compaction']})",
        ),
        ("writes / overwrites / discards", f"{d['writes']} / {d['overwrites']} / {d['discards']}"),
        ("same-filled / huge writes", f"{d['same_filled_writes']} / {d['huge_writes']}"),
        ("zs_malloc / zs_free events", f"{d['zs_malloc_events']} / {d['zs_free_events']}"),
        (
            "checkpoints (before / after)",
            f"{d['checkpoints']} ({d['checkpoints_before_compaction']} / "
            f"{d['checkpoints_after_compaction']})",
        ),
        ("mismatches before compaction", str(d["mismatches_before_compaction"])),
        ("mismatches after compaction", str(d["mismatches_after_compaction"])),
        ("per-op mismatches", f"{d['per_op_mismatches']} of {d['per_op_checks']}"),
        ("classification errors", str(d["classification_errors"])),
        ("unrequested compactions", str(d["unrequested_compactions"])),
        ("peak pages (kernel)", str(d["pages"]["peak_kernel"])),
    ]
    for c in compactions:
        op = c["op"]
        rows.append(
            (f"compaction at op {op}: kernel pages", f"{c['kernel_before']} → {c['kernel_after']}")
        )
        rows.append(
            (f"compaction at op {op}: model pages", f"{c['model_before']} → {c['model_after']}")
        )
    rows.append(("trace", str(d["trace_path"])))
    rows.append(("elapsed", f"{d['elapsed_s']} s"))
    for k, v in rows:
        t.add_row(k, v)
    return t
