"""``ztrace report``: terminal tables, JSON and CSV in perf lock contention's vocabulary.

Columns are perf's (``contended``, ``total wait``, ``max wait``, ``avg wait``, ``type``) so
readers who know ``perf lock contention`` can read them; the last column names the modelled
lock (``class[37]``, ``pool``) where perf names the caller. Times are scaled for humans in
the terminal and raw integer nanoseconds in ``--json`` and ``--csv``.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format import Results
from ztrace.look import provenance, verdict
from ztrace.look.units import human_ns

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

SortKey = Literal["contended", "wait_total", "wait_max", "wait_min", "avg_wait", "acquired"]
#: perf lock contention's sort keys (``-k``), same words as its fields.
SORT_KEYS: tuple[str, ...] = (
    "contended",
    "wait_total",
    "wait_max",
    "wait_min",
    "avg_wait",
    "acquired",
)
#: perf's default for ``perf lock contention`` is ``wait_total``.
DEFAULT_SORT_KEY: SortKey = "wait_total"

#: the results column each sort key orders by
SORT_COLUMN = {
    "contended": "contended",
    "wait_total": "wait_ns_total",
    "wait_max": "wait_ns_max",
    "wait_min": "wait_ns_min",
    "avg_wait": "wait_ns_avg",
    "acquired": "acquisitions",
}


def _human_count(n: float | int | None) -> str:
    if n is None or not math.isfinite(n):
        return "-"
    return f"{int(n):,}"


@dataclass(frozen=True)
class Trust:
    """How much of the input the numbers rest on (perf's "output for debug" footer)."""

    events: int | None
    lost_events: int | None
    trace: str | None
    source: str  # where the counts came from
    #: events the replay could not use, by reason (perf's "histogram of failure reasons")
    bad: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Replay counters (summary.json "counters") that mean an event could not be replayed.
BAD_COUNTERS = ("bad_alloc", "dup_malloc", "unmatched_free", "unknown_class")


def trust_of(results: Results) -> Trust:
    """Event and lost-event counts: summary.json if it has them, else the trace's metadata."""
    s = results.summary
    trace = results.trace_path or (s.get("trace") if isinstance(s.get("trace"), str) else None)
    raw = s.get("counters")
    counters: dict[str, Any] = raw if isinstance(raw, dict) else {}
    bad = {k: int(counters[k]) for k in BAD_COUNTERS if isinstance(counters.get(k), int)}
    events = s.get("events", s.get("num_events"))
    lost = s.get("lost_events")
    if isinstance(events, int) and isinstance(lost, int):
        return Trust(events, lost, trace, "summary.json", bad)
    if trace and Path(trace).exists():
        try:
            from ztrace.format import open_trace

            tr = open_trace(trace)
            return Trust(tr.num_rows, tr.meta.lost_events, trace, "trace metadata", bad)
        except TraceFormatError:
            pass
    return Trust(
        events if isinstance(events, int) else None,
        lost if isinstance(lost, int) else None,
        trace,
        "unknown",
        bad,
    )


def lock_rows(
    results: Results, *, sort_key: str = DEFAULT_SORT_KEY, limit: int | None = None
) -> pl.DataFrame:
    """Per design × lock rows with perf's fields, sorted by ``sort_key`` within each design.

    Like perf, locks that never waited are left out; ``limit`` keeps the top N per design.
    """
    if sort_key not in SORT_KEYS:
        raise ConfigError(f"unknown sort key `{sort_key}` (valid: {', '.join(SORT_KEYS)})")
    if limit is not None and limit < 1:
        raise ConfigError(f"-E/--entries must be at least 1, got {limit}")
    if not results.has("locks_by_lock"):
        return pl.DataFrame()
    df = (
        results["locks_by_lock"]
        .filter(pl.col("wait_ns_total") > 0)
        .with_columns(
            # perf: avg wait = total wait / contended, integer ns.
            (pl.col("wait_ns_total") // pl.col("contended").clip(lower_bound=1))
            .cast(pl.UInt64)
            .alias("wait_ns_avg")
        )
    )
    # Designs keep the order of locks_summary (the order the replay ran them).
    order = (
        results["locks_summary"]["lock_design"].to_list() if results.has("locks_summary") else []
    )
    order += [d for d in df["lock_design"].unique(maintain_order=True) if d not in order]
    df = df.with_columns(
        pl.col("lock_design")
        .replace_strict({d: i for i, d in enumerate(order)}, return_dtype=pl.Int32)
        .alias("_design_order")
    ).sort(["_design_order", SORT_COLUMN[sort_key], "lock"], descending=[False, True, False])
    if limit is not None:
        df = df.group_by("_design_order", maintain_order=True).head(limit)
    return df.select(
        "lock_design",
        "contended",
        "wait_ns_total",
        "wait_ns_max",
        "wait_ns_avg",
        "wait_ns_min",
        "lock_type",
        "lock",
        "acquisitions",
    )


def build_report(
    results: Results, *, sort_key: str = DEFAULT_SORT_KEY, limit: int | None = None
) -> dict[str, Any]:
    """Everything ``ztrace report`` shows, as plain data with raw integer nanoseconds."""
    out: dict[str, Any] = {"results": str(results.path) if results.path else None}
    if results.has("locks_summary"):
        out["locks_summary"] = results["locks_summary"].to_dicts()
    out["locks"] = lock_rows(results, sort_key=sort_key, limit=limit).to_dicts()
    for name in ("lru_summary", "sweep"):
        if results.has(name):
            out[name] = results[name].sort(["lru_design", "pool_limit_pages"]).to_dicts()
    if results.has("lru_memcg"):  # several memory cgroups (issue 13): per design x memcg
        out["lru_memcg"] = (
            results["lru_memcg"].sort(["lru_design", "pool_limit_pages", "memcg_id"]).to_dicts()
        )
    out["absent"] = [
        n for n in ("locks_summary", "locks_by_lock", "lru_summary", "sweep") if not results.has(n)
    ]
    out["trust"] = trust_of(results).as_dict()
    prov = provenance.cost_provenance(results)
    if prov:  # results written since issue 10
        out["cost_provenance"] = prov
    est = verdict.estimates(results)
    if est:
        # issue 10 items 4-5: what users feel first, each with its interval; designs ranked
        # only where intervals do not overlap
        out["designs"] = {
            d: {m: est[d][m].as_dict() for m in _DESIGN_METRICS if m in est[d]} for d in est
        }
        out["comparison"] = verdict.comparison(est)
        out["intervals"] = verdict.has_intervals(est)
        out["interval_note"] = verdict.interval_note(est)
    flag = verdict.guest_flag(results)
    if flag:
        out["cost_flag"] = flag
    return out


# ----------------------------------------------------------------------------- renderers


def render_json(report: dict[str, Any]) -> str:
    """Strict JSON: a NaN or infinite float (e.g. a rate over zero events) becomes null."""
    return json.dumps(_finite(report), indent=2, sort_keys=False, allow_nan=False)


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


CSV_FIELDS = ("contended", "total wait", "max wait", "avg wait", "type", "lock", "design")
#: per design, in this order: what users feel (total wait, wait per op, p99 wait), then how
#: often a lock was contended (issue 10 item 5)
_DESIGN_METRICS = (*verdict.LEAD_METRICS, *verdict.SECOND_METRICS)
DESIGN_CSV_FIELDS = (
    "design",
    *(f"{verdict.METRIC_LABEL[m]}{sfx}" for m in _DESIGN_METRICS for sfx in ("", " lo", " hi")),
)


def _csv_num(x: float) -> str:
    """Raw ns as an integer where it is one (totals, p99), else 3 decimals (wait per op)."""
    return str(int(x)) if float(x).is_integer() else f"{x:.3f}"


def render_csv(report: dict[str, Any], sep: str = ",") -> str:
    """perf ``lock contention -x SEP`` shape: ``# output:`` header, raw ns, ``# debug:`` footer.

    perf writes SEP followed by a space between fields; so does this, so tools that parse
    perf's CSV parse this. The design column is appended after perf's columns.
    """
    if sep in (":", "+", ".") or not sep:
        # perf refuses these too: they occur inside type names and lock names.
        raise ConfigError(f"cannot use the separator {sep!r} (it occurs in type or lock names)")
    buf = io.StringIO()
    # lock rows when there are any (perf's shape); otherwise the LRU rows of an LRU-only
    # replay or a sweep, so such a directory does not print a lock header and no rows
    lru_blocks = (
        []
        if report["locks"]
        else [n for n in ("lru_summary", "sweep", "lru_memcg") if report.get(n)]
    )
    if not lru_blocks:
        buf.write("# output: " + f"{sep} ".join(CSV_FIELDS) + "\n")
    for r in report["locks"]:
        vals = (
            r["contended"],
            r["wait_ns_total"],
            r["wait_ns_max"],
            r["wait_ns_avg"],
            r["lock_type"],
            r["lock"],
            r["lock_design"],
        )
        buf.write(f"{sep} ".join(str(v) for v in vals) + "\n")
    if report.get("designs"):
        # one row per design with the intervals, then the verdicts; after perf's lock rows
        # so tools that read perf's shape read those first
        buf.write("# output: " + f"{sep} ".join(DESIGN_CSV_FIELDS) + "\n")
        for d, ms in report["designs"].items():
            cells = [d]
            for m in _DESIGN_METRICS:
                e = ms.get(m)
                cells += (
                    [_csv_num(e["value"]), _csv_num(e["interval"][0]), _csv_num(e["interval"][1])]
                    if e
                    else ["", "", ""]
                )
            buf.write(f"{sep} ".join(cells) + "\n")
        for c in report["comparison"]:
            buf.write(f"# compare: {verdict.METRIC_LABEL[c['metric']]}: {verdict.pair_text(c)}\n")
    for name in lru_blocks:
        # LRU rows (lru_summary, or a sweep's design x pool limit rows) in their own block,
        # with the results-format column names, raw integers
        cols = list(report[name][0])
        buf.write("# output: " + f"{sep} ".join(cols) + "\n")
        for r in report[name]:
            buf.write(f"{sep} ".join(str(r[c]) for c in cols) + "\n")
    t = report["trust"]
    total = "unknown" if t["events"] is None else t["events"]
    lost = "unknown" if t["lost_events"] is None else t["lost_events"]
    # the counter names already start with what they count (bad_alloc, dup_malloc, ...)
    bad = "".join(f"{sep} {k}={v}" for k, v in t.get("bad", {}).items())
    buf.write(f"# debug: total={total}{sep} lost={lost}{bad}\n")
    return buf.getvalue()


def text_console(width: int) -> Console:
    """A rich console that writes plain text into a string (``console.file.getvalue()``)."""
    from rich.console import Console

    return Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)


def perf_table(title: str, cols: list[tuple[str, str]]) -> Table:
    """A perf-lock-style table: title on the left, a rule under the header, no wrapping;
    ``cols``: (name, justify) pairs."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for name, justify in cols:
        t.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    return t


def render_terminal(report: dict[str, Any], console: Console | None = None) -> str:
    """Print rich tables to ``console`` (colour on a terminal); without one, return the text."""
    capture = console is None
    if console is None:
        console = text_console(110)
    if "locks_summary" in report:
        _print_designs(report, console)
    designs = list(dict.fromkeys(r["lock_design"] for r in report["locks"]))
    for d in designs:
        t = perf_table(
            f"design {d}: contended locks",
            [
                ("contended", "right"),
                ("total wait", "right"),
                ("max wait", "right"),
                ("avg wait", "right"),
                ("type", "right"),
                ("lock", "left"),
            ],
        )
        for r in (r for r in report["locks"] if r["lock_design"] == d):
            t.add_row(
                _human_count(r["contended"]),
                human_ns(r["wait_ns_total"]),
                human_ns(r["wait_ns_max"]),
                human_ns(r["wait_ns_avg"]),
                r["lock_type"],
                r["lock"],
            )
        console.print(t)
    for name, title in (("lru_summary", "LRU designs"), ("sweep", "LRU sweep over pool limit")):
        if name not in report:
            continue
        t = perf_table(
            title,
            [
                ("design", "left"),
                ("pool limit", "right"),
                ("disk faults", "right"),
                ("avoidable", "right"),
                ("vs optimal", "right"),
                ("fault latency", "right"),
                ("inversions", "right"),
                ("inv. rate", "right"),
                ("stores", "right"),
                ("writebacks", "right"),
                ("zswap hits", "right"),
            ],
        )
        for r in report[name]:
            # harm first (docs/lru-inversion.md "Harm"); inversions count store-order
            # inversions, which can point the wrong way, so they come second
            t.add_row(
                r["lru_design"],
                f"{r['pool_limit_pages']:,} pg",
                _human_count(r["disk_faults"]),
                _human_count(r["avoidable_disk_faults"]),
                ("+" if r["optimal_gap"] >= 0 else "-") + _human_count(abs(r["optimal_gap"])),
                human_ns(r["expected_fault_latency_ns"]),
                _human_count(r["inversions"]),
                f"{100 * r['inversion_rate']:.2f} %",
                _human_count(r["stores"]),
                _human_count(r["writebacks"]),
                _human_count(r["zswap_hits"]),
            )
        lat = report[name][0] if report[name] else None
        if lat is not None:
            t.caption = (
                f"fault latency = hits × {human_ns(lat['latency_zswap_ns'])} (zswap) + disk "
                f"faults × {human_ns(lat['latency_disk_ns'])} (disk), per fault (assumed)"
            )
        console.print(t)
    if report.get("lru_memcg"):
        console.print(_memcg_table(report["lru_memcg"]))
    if not designs and not any(k in report for k in ("locks_summary", "lru_summary", "sweep")):
        console.print("no lock or LRU results in this directory")
    footer = _footer_text(report)
    if capture:
        return console.file.getvalue() + footer  # type: ignore[attr-defined]
    console.print(footer, end="", highlight=False, markup=False)
    return ""


def _memcg_table(rows: list[dict[str, Any]]) -> Table:
    """Per design x memory cgroup: harm first, then the cross-memcg inversion (a page of
    one cgroup sent to disk while another cgroup's entry is faulted later, or never)."""
    t = perf_table(
        "LRU per memory cgroup",
        [
            ("design", "left"),
            ("memcg", "right"),
            ("stored", "right"),
            ("written back", "right"),
            ("rejects", "right"),
            ("disk faults", "right"),
            ("avoidable", "right"),
            ("fault latency", "right"),
            ("cross-memcg inv.", "right"),
            ("cross-memcg avoidable", "right"),
        ],
    )
    for r in rows:
        t.add_row(
            r["lru_design"],
            str(r["memcg_id"]),
            _human_count(r["stored"]),
            _human_count(r["written_back"]),
            _human_count(r["rejects"]),
            _human_count(r["disk_faults"]),
            _human_count(r["avoidable_disk_faults"]),
            human_ns(r["expected_fault_latency_ns"]),
            _human_count(r["cross_memcg_inversions"]),
            _human_count(r["cross_memcg_avoidable_disk_faults"]),
        )
    t.caption = (
        "memcg = cgroup id (the capture's memcg_id); a page's memcg is its last store's; "
        "cross-memcg: sent to disk while another memcg's entry is faulted later, or never"
    )
    return t


def _ivl(e: dict[str, Any] | None, fmt: Any) -> tuple[str, str]:
    """(value, "[lo, hi]") cells; an empty interval cell for a single replay."""
    if e is None:
        return "-", ""
    lo, hi = e["interval"]
    return fmt(e["value"]), (f"[{fmt(lo)}, {fmt(hi)}]" if e.get("runs", 1) > 1 else "")


def _print_designs(report: dict[str, Any], console: Console) -> None:
    """Design tables: what users feel first (total wait, wait per op, p99 wait, with
    intervals), then contention; the verdicts; the TCG-guest flag (issue 10 items 4-5)."""
    designs: dict[str, dict[str, Any]] = report.get("designs", {})
    rows = {r["lock_design"]: r for r in report["locks_summary"]}
    with_ivl = bool(report.get("intervals"))
    cols: list[tuple[str, str]] = [("design", "left")]
    for m in verdict.LEAD_METRICS:
        cols.append((verdict.METRIC_LABEL[m], "right"))
        if with_ivl:
            cols.append(("interval", "left"))
    t = perf_table("lock designs: what users feel (lowest total wait first)", cols)
    order = sorted(rows, key=lambda d: designs.get(d, {}).get("wait_ns_total", {}).get("value", 0))
    for d in order:
        cells = [d]
        for m in verdict.LEAD_METRICS:
            v, i = _ivl(designs.get(d, {}).get(m), human_ns)
            cells += [v, i] if with_ivl else [v]
        t.add_row(*cells)
    console.print(t)
    cols = [("design", "left"), ("contended", "right")]
    if with_ivl:
        cols.append(("interval", "left"))
    cols += [
        ("rate", "right"),
        ("acquired", "right"),
        ("max wait", "right"),
        ("avg wait", "right"),
        ("p50 wait", "right"),
    ]
    t = perf_table("lock designs: contention (second: rates compare badly across designs)", cols)
    for d in order:
        r = rows[d]
        v, i = _ivl(designs.get(d, {}).get("contended"), _human_count)
        t.add_row(
            d,
            *([v, i] if with_ivl else [v]),
            f"{100 * r['contention_rate']:.2f} %",
            _human_count(r["acquisitions"]),
            human_ns(r["wait_ns_max"]),
            human_ns(r["wait_ns_avg"]),
            human_ns(r["wait_ns_p50"]),
        )
    console.print(t)
    comp = report.get("comparison") or []
    if len(rows) > 1 and comp:
        lines = ["comparison (lowest first; '≈' = no measurable difference):"]
        for m in (*verdict.LEAD_METRICS, *verdict.SECOND_METRICS):
            pairs = [c for c in comp if c["metric"] == m]
            if not pairs:
                continue
            text = pairs[0]["lower"] + "".join(
                (" ≈ " if c["verdict"] == verdict.NO_DIFFERENCE else " < ") + c["higher"]
                for c in pairs
            )
            lines.append(f"  {verdict.METRIC_LABEL[m]:>12}: {text}")
            lines += [
                f"  {'':>12}  {verdict.pair_text(c)}"
                for c in pairs
                if c["verdict"] == verdict.NO_DIFFERENCE
            ]
        lines.append(report.get("interval_note", ""))
        console.print("\n".join(lines) + "\n", highlight=False, markup=False)
    if report.get("cost_flag"):
        console.print(f"!! {report['cost_flag']}\n", highlight=False, markup=False)


def _footer_text(report: dict[str, Any]) -> str:
    t = report["trust"]
    lines = ["", "=== output for trust ===", ""]
    if t["events"] is None:
        lines.append(f"events: unknown (trace {t['trace'] or '?'} not found; counts unavailable)")
    else:
        lost = t["lost_events"] or 0
        total = t["events"] + lost
        lines.append(f"lost: {lost}, total: {total}")
        lines.append(f"lost rate: {100.0 * lost / total if total else 0.0:.2f} %")
        if lost:
            lines.append(
                "the capture dropped events; results undercount contention "
                "(capture again with a larger ring buffer)"
            )
    if t.get("bad"):
        n_bad = sum(t["bad"].values())
        lines.append(f"bad: {n_bad} (events the replay could not use)")
        if n_bad:
            lines.append("histogram of failure reasons")
            lines.extend(f" {k:>14}: {v}" for k, v in t["bad"].items())
    lines.append(f"source: {t['source']}" + (f" ({t['trace']})" if t["trace"] else ""))
    if report.get("cost_provenance"):  # where every hold time came from (issue 10)
        lines.append("hold times (measured / fitted / default):")
        lines.extend(f" {k:>17}: {v}" for k, v in report["cost_provenance"].items())
    if report.get("cost_flag"):
        lines.append(report["cost_flag"])
    if report["absent"]:
        lines.append(f"absent: {', '.join(report['absent'])}")
    return "\n".join(lines) + "\n"
