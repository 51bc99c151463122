"""``ztrace dashboard``: one self-contained, offline HTML file of linked Altair charts.

The pipeline is: results tables -> :func:`prepare` (polars, bounded output size whatever the
trace length) -> :func:`build_sections` (Vega-Lite specs via Altair) -> :func:`render_html`
(Vega, Vega-Lite and vega-embed inlined from vl-convert, no network).

Pre-aggregation is what keeps a 10 M-event trace's dashboard small: the timeline is re-binned
to at most ``max_bins`` bins per design and the size-class heatmap to ``max_class_bins`` time
bins, so the HTML size depends on the number of designs and classes, not on events.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format import Results, is_results_dir, read_results
from ztrace.format.safeio import atomic_file, check_output, output_file

#: Defaults that keep the HTML well under 10 MB and the first render within a second or two.
MAX_BINS = 400
MAX_CLASS_BINS = 80

#: Chart ids; the browser test and docs refer to them. ``name`` of each Altair view is
#: ``<id>`` so its marks are ``<id>_marks`` in the Vega scenegraph.
CHARTS: dict[str, str] = {
    "timeline": "contention timeline (brush to select an interval)",
    "compare": "lock-design comparison: total wait in the selected interval",
    "wait_cdf": "wait distribution (CDF of contended waits)",
    "memory": "memory: pages used over time per design",
    "heatmap": "size-class occupancy over time (`class` design's pool)",
    "sweep": "disk faults vs pool limit (dashed: optimal, the floor)",
    "tiers": "tier hits: zswap vs disk at the selected pool limit (dashed line)",
    "lru_time": "zswap pool pages over time per LRU design",
}
#: drawn only for results with several memory cgroups (``lru_memcg``; issue 13), so not one
#: of CHARTS, which every full results directory draws
MEMCG_CHART = "per memory cgroup: where each cgroup's faults went, and cross-cgroup harm"


#: lru_memcg columns charted per cgroup, and their labels
_MEMCG_MEASURES = {
    "stored": "stored",
    "written_back": "written back",
    "disk_faults": "disk faults",
    "avoidable_disk_faults": "avoidable disk faults",
    "cross_memcg_avoidable_disk_faults": "cross-cgroup avoidable",
}


@dataclass
class DashData:
    """Pre-aggregated, small frames ready to inline; ``None`` where the data is absent."""

    time_unit: str  # "ms" or "s": the unit of every ``t`` column
    timeline: pl.DataFrame | None = None
    wait_cdf: pl.DataFrame | None = None
    classes: pl.DataFrame | None = None
    sweep: pl.DataFrame | None = None
    tiers: pl.DataFrame | None = None
    lru_time: pl.DataFrame | None = None
    lru_memcg: pl.DataFrame | None = None  # several memcgs only (issue 13)
    absent: dict[str, str] = field(default_factory=dict)  # chart id -> why absent
    info: dict[str, Any] = field(default_factory=dict)  # header facts (source, events, ...)


# ------------------------------------------------------------------------------ prepare


def _time_unit(span_ns: int) -> tuple[str, float]:
    # Seconds once the run is long enough that milliseconds get unwieldy on an axis.
    return ("s", 1e9) if span_ns >= 20e9 else ("ms", 1e6)


def _rebin_width(t0: int, t1: int, bin_ns: int, max_bins: int) -> int:
    """A bin width that is a multiple of the input bin and gives at most ``max_bins`` bins."""
    span = max(1, t1 - t0 + bin_ns)
    factor = max(1, math.ceil(span / bin_ns / max_bins))
    return bin_ns * factor


def prepare(
    results: Results, *, max_bins: int = MAX_BINS, max_class_bins: int = MAX_CLASS_BINS
) -> DashData:
    """Aggregate ``results`` into the few thousand rows the charts need."""
    t0: int | None = None
    t1 = 0
    for name in ("timeline", "classes", "lru_timeline"):
        if results.has(name):
            col = results[name]["bin_start_ns"]
            lo, hi = int(col.min()), int(col.max())  # type: ignore[arg-type]
            t0 = lo if t0 is None else min(t0, lo)
            t1 = max(t1, hi)
    t0 = t0 or 0
    unit, scale = _time_unit(t1 - t0)
    d = DashData(time_unit=unit)

    if results.has("timeline"):
        tl = results["timeline"]
        bin_ns = int(tl["bin_ns"].max())  # type: ignore[arg-type]
        width = _rebin_width(t0, t1, max(1, bin_ns), max_bins)
        d.timeline = (
            tl.with_columns(((pl.col("bin_start_ns") - t0) // width).alias("_b"))
            .group_by("lock_design", "_b")
            .agg(
                pl.col("ops").sum(),
                pl.col("acquisitions").sum(),
                pl.col("contended").sum(),
                pl.col("wait_ns_total").sum(),
                # pages_used is a level, not a count: keep the value at the bin's end.
                pl.col("pages_used").sort_by("bin_start_ns").last(),
            )
            .with_columns(
                (pl.col("_b") * width / scale).round(6).alias("t"),
                ((pl.col("_b") + 1) * width / scale).round(6).alias("t_end"),
                (pl.col("contended") / pl.col("acquisitions").clip(lower_bound=1) * 100)
                .round(4)
                .alias("rate_pct"),
            )
            .drop("_b")
            .sort("lock_design", "t")
        )
        d.info["timeline_bin"] = f"{width / scale:g} {unit}"
    else:
        d.absent["timeline"] = "no timeline.parquet"
        d.absent["compare"] = "no timeline.parquet"
        d.absent["memory"] = "no timeline.parquet"

    if results.has("wait_hist"):
        wh = results["wait_hist"].filter(pl.col("count") > 0).sort("lock_design", "bucket_lo_ns")
        d.wait_cdf = wh.with_columns(
            (
                pl.col("count").cum_sum().over("lock_design")
                / pl.col("count").sum().over("lock_design")
            )
            .round(6)
            .alias("cdf"),
            (pl.col("bucket_hi_ns") / 1e3).alias("wait_us"),
        ).select("lock_design", "wait_us", "cdf", "count", "bucket_lo_ns", "bucket_hi_ns")
    else:
        d.absent["wait_cdf"] = "no wait_hist.parquet"

    if results.has("classes"):
        cl = results["classes"]
        bin_ns = _min_step(cl["bin_start_ns"])
        width = _rebin_width(t0, t1, bin_ns, max_class_bins)
        d.classes = (
            cl.with_columns(((pl.col("bin_start_ns") - t0) // width).alias("_b"))
            .group_by("_b", "class_idx", "class_size")
            # Levels again: the state at the end of each wide bin.
            .agg(pl.all().sort_by("bin_start_ns").last())
            .filter(pl.col("obj_allocated") > 0)
            .with_columns(
                (pl.col("_b") * width / scale).round(6).alias("t"),
                ((pl.col("_b") + 1) * width / scale).round(6).alias("t_end"),
                (pl.col("obj_used") / pl.col("obj_allocated") * 100)
                .round(2)
                .alias("occupancy_pct"),
            )
            .select(
                "t",
                "t_end",
                "class_idx",
                "class_size",
                "obj_allocated",
                "obj_used",
                "pages_used",
                "occupancy_pct",
            )
            .sort("t", "class_idx")
        )
        if d.classes.height == 0:
            d.classes = None
            d.absent["heatmap"] = "classes.parquet has no allocated objects"
    else:
        d.absent["heatmap"] = "no classes.parquet"

    if results.has("lru_timeline"):
        lt = results["lru_timeline"]
        width = _rebin_width(t0, t1, _min_step(lt["bin_start_ns"]), max_bins)
        d.lru_time = (
            lt.with_columns(((pl.col("bin_start_ns") - t0) // width).alias("_b"))
            .group_by("lru_design", "_b")
            .agg(
                pl.col("inversions", "zswap_hits", "disk_swapins", "writebacks").sum(),
                pl.col("pool_pages").sort_by("bin_start_ns").last(),
            )
            .with_columns((pl.col("_b") * width / scale).round(6).alias("t"))
            .drop("_b")
            .sort("lru_design", "t")
        )
    else:
        d.absent["lru_time"] = "no lru_timeline.parquet (run `ztrace replay --lru`)"
    lru_src = "sweep" if results.has("sweep") else None
    if lru_src:
        d.sweep = (
            results["sweep"]
            .select(
                "lru_design",
                "pool_limit_pages",
                "disk_faults",
                "avoidable_disk_faults",
                "optimal_gap",
                "expected_fault_latency_ns",
                "inversions",
                (pl.col("inversion_rate") * 100).round(4).alias("inversion_pct"),
                "writebacks",
                "zswap_hits",
                "disk_swapins",
            )
            .sort("lru_design", "pool_limit_pages")
        )
    else:
        d.absent["sweep"] = "no sweep.parquet (run `ztrace sweep`)"
    tier_src = (
        "sweep" if results.has("sweep") else ("lru_summary" if results.has("lru_summary") else None)
    )
    if tier_src:
        d.tiers = (
            results[tier_src]
            .select("lru_design", "pool_limit_pages", "zswap_hits", "disk_swapins")
            .unpivot(
                index=["lru_design", "pool_limit_pages"],
                on=["zswap_hits", "disk_swapins"],
                variable_name="tier",
                value_name="hits",
            )
            .with_columns(pl.col("tier").replace({"zswap_hits": "zswap", "disk_swapins": "disk"}))
            .sort("lru_design", "pool_limit_pages", "tier")
        )
        d.info["tiers_from"] = f"{tier_src}.parquet"
    else:
        d.absent["tiers"] = "no lru_summary.parquet or sweep.parquet"
    if results.has("lru_memcg"):  # no note when absent: most traces have one memcg
        d.lru_memcg = (
            results["lru_memcg"]
            .with_columns(
                (pl.col("lru_design") + " · memcg " + pl.col("memcg_id").cast(pl.String)).alias(
                    "row"
                )
            )
            .unpivot(
                index=["row", "lru_design", "memcg_id", "pool_limit_pages"],
                on=list(_MEMCG_MEASURES),
                variable_name="measure",
                value_name="pages",
            )
            .with_columns(pl.col("measure").replace(_MEMCG_MEASURES))
            .sort("row", "measure")
        )
    for name in ("timeline", "wait_cdf", "classes", "sweep", "tiers", "lru_time", "lru_memcg"):
        df = getattr(d, name)
        if df is not None:
            setattr(d, name, _json_safe(df))
    return d


def _json_safe(df: pl.DataFrame) -> pl.DataFrame:
    """NaN/inf become null: JSON has no NaN, and Vega skips nulls instead of failing."""
    floats = [c for c, t in df.schema.items() if t.is_float()]
    if not floats:
        return df
    return df.with_columns(
        pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in floats
    )


def _min_step(col: pl.Series) -> int:
    u = col.unique().sort()
    if len(u) < 2:
        return 1
    return max(1, int(u.diff().drop_nulls().min()))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- charts


@dataclass
class Section:
    id: str
    title: str
    hint: str
    spec: dict[str, Any]
    charts: list[str]


def build_sections(d: DashData) -> list[Section]:
    """Vega-Lite specs: one linked "locks & memory" view and one "LRU & tiers" view."""
    import altair as alt

    def counts(*fields: str) -> list[Any]:
        """Tooltips of integer counts, with thousands separators."""
        return [alt.Tooltip(f"{f}:Q", format=",") for f in fields]

    alt.data_transformers.disable_max_rows()
    sections: list[Section] = []
    u = d.time_unit
    width = 520

    # ---- locks & memory: the brush on the timeline filters compare, memory and heatmap.
    brush = alt.selection_interval(encodings=["x"], name="brush")
    design = alt.selection_point(fields=["lock_design"], bind="legend", name="design")
    rows: list[Any] = []
    charts: list[str] = []
    color = alt.Color("lock_design:N", title="lock design")
    #: the designs not picked in the legend fade out
    dimmed = alt.when(design).then(alt.value(1.0)).otherwise(alt.value(0.15))
    if d.timeline is not None:
        base = alt.Chart(d.timeline)
        timeline = (
            base.mark_line(interpolate="step-after", point=False)
            .encode(
                x=alt.X("t:Q", title=f"time ({u})"),
                y=alt.Y("rate_pct:Q", title="contended acquisitions (%)"),
                color=color,
                opacity=dimmed,
                tooltip=[
                    alt.Tooltip("lock_design:N", title="design"),
                    alt.Tooltip("t:Q", title=f"bin start ({u})"),
                    *counts("contended", "acquisitions"),
                    alt.Tooltip("rate_pct:Q", title="rate %", format=".3f"),
                ],
            )
            .add_params(brush, design)
            .properties(name="timeline", width=width * 2 + 60, height=180, title=CHARTS["timeline"])
        )
        compare = (
            base.transform_filter(brush)
            .transform_aggregate(
                contended="sum(contended)",
                acquisitions="sum(acquisitions)",
                wait_ns_total="sum(wait_ns_total)",
                ops="sum(ops)",
                groupby=["lock_design"],
            )
            .transform_calculate(
                # what users feel first (issue 10 item 5): total wait and wait per op;
                # the contention rate stays in the tooltip, second
                wait_ms="datum.wait_ns_total / 1e6",
                wait_per_op_us="datum.wait_ns_total / max(1, datum.ops) / 1000",
                rate_pct="100 * datum.contended / max(1, datum.acquisitions)",
                avg_wait_us="datum.wait_ns_total / max(1, datum.contended) / 1000",
            )
            .mark_bar()
            .encode(
                y=alt.Y("lock_design:N", title=None),
                x=alt.X("wait_ms:Q", title="total wait (ms)"),
                color=alt.Color("lock_design:N", legend=None),
                opacity=alt.when(design).then(alt.value(1.0)).otherwise(alt.value(0.2)),
                tooltip=[
                    alt.Tooltip("lock_design:N", title="design"),
                    alt.Tooltip("wait_ms:Q", title="total wait (ms)", format=",.3f"),
                    alt.Tooltip("wait_per_op_us:Q", title="wait per op (us)", format=".3f"),
                    *counts("contended", "acquisitions"),
                    alt.Tooltip("rate_pct:Q", title="rate %", format=".3f"),
                    alt.Tooltip("avg_wait_us:Q", title="avg wait (us)", format=".3f"),
                ],
            )
            .properties(name="compare", width=width, height=160, title=CHARTS["compare"])
        )
        memory = (
            base.transform_filter(brush)
            .mark_line(interpolate="step-after")
            .encode(
                x=alt.X("t:Q", title=f"time ({u})"),
                y=alt.Y("pages_used:Q", title="pages used"),
                color=alt.Color("lock_design:N", legend=None),
                opacity=dimmed,
                tooltip=[
                    "lock_design:N",
                    alt.Tooltip("t:Q", title=f"time ({u})"),
                    *counts("pages_used"),
                ],
            )
            .properties(name="memory", width=width, height=160, title=CHARTS["memory"])
        )
        rows.append(timeline)
        rows.append(alt.hconcat(compare, memory))
        charts += ["timeline", "compare", "memory"]
    lower: list[Any] = []
    if d.wait_cdf is not None:
        cdf = (
            alt.Chart(d.wait_cdf)
            .mark_line(interpolate="step-after", point=True)
            .encode(
                x=alt.X(
                    "wait_us:Q", scale=alt.Scale(type="log"), title="wait ≤ (us, log2 buckets)"
                ),
                y=alt.Y(
                    "cdf:Q", title="fraction of contended waits", scale=alt.Scale(domain=[0, 1])
                ),
                color=color,
                opacity=dimmed,
                tooltip=[
                    "lock_design:N",
                    alt.Tooltip("wait_us:Q", title="wait ≤ us"),
                    alt.Tooltip("cdf:Q", format=".3f"),
                    *counts("count"),
                ],
            )
            .properties(name="wait_cdf", width=width, height=200, title=CHARTS["wait_cdf"])
        )
        if d.timeline is None:
            cdf = cdf.add_params(design)
        lower.append(cdf)
        charts.append("wait_cdf")
    if d.classes is not None:
        heat = alt.Chart(d.classes)
        if d.timeline is not None:
            heat = heat.transform_filter(brush)
        heat = (
            heat.mark_rect()
            .encode(
                # zero=False: a brushed interval fills the width instead of a sliver.
                x=alt.X("t:Q", title=f"time ({u})", scale=alt.Scale(zero=False)),
                x2="t_end:Q",
                y=alt.Y(
                    "class_size:O",
                    title="size class (bytes)",
                    sort="descending",
                    axis=alt.Axis(labelOverlap=True),
                ),
                color=alt.Color(
                    "occupancy_pct:Q",
                    title="used %",
                    scale=alt.Scale(scheme="viridis", domain=[0, 100]),
                ),
                tooltip=[
                    alt.Tooltip("t:Q", title=f"time ({u})"),
                    "class_idx:Q",
                    "class_size:Q",
                    *counts("obj_used", "obj_allocated", "pages_used"),
                    alt.Tooltip("occupancy_pct:Q", title="used %", format=".1f"),
                ],
            )
            .properties(name="heatmap", width=width, height=260, title=CHARTS["heatmap"])
        )
        lower.append(heat)
        charts.append("heatmap")
    if lower:
        rows.append(alt.hconcat(*lower) if len(lower) > 1 else lower[0])
    if rows:
        spec = alt.vconcat(*rows).resolve_scale(color="shared") if len(rows) > 1 else rows[0]
        sections.append(
            Section(
                "locks",
                "Lock designs, contention and memory",
                "Drag across the timeline to select an interval: the comparison, memory and "
                "size-class views show only that interval. Double-click clears it. Click a "
                "design in the legend to highlight it.",
                _to_dict(spec),
                charts,
            )
        )

    # ---- LRU & tiers: clicking a pool limit in the sweep picks the tier bars' limit.
    lru: list[Any] = []
    lru_charts: list[str] = []
    limit = None
    if d.sweep is not None:
        limits = sorted(d.sweep["pool_limit_pages"].unique().to_list())
        limit = alt.selection_point(
            fields=["pool_limit_pages"],
            name="limit",
            on="click",
            value=[{"pool_limit_pages": limits[len(limits) // 2]}],
        )
        base = alt.Chart(d.sweep).encode(
            x=alt.X("pool_limit_pages:Q", title="pool limit (pages)"),
            y=alt.Y("disk_faults:Q", title="disk faults (slow swap-ins)"),
            color=alt.Color("lru_design:N", title="LRU design"),
            # the offline optimum is the floor every design is measured against
            strokeDash=alt.condition(
                alt.datum.lru_design == "optimal", alt.value([6, 4]), alt.value([1, 0])
            ),
        )
        # The selected limit is drawn as a rule and larger points, so the tier bars' limit
        # is visible without hovering.
        rule = (
            alt.Chart(d.sweep)
            .mark_rule(color="#888", strokeDash=[4, 3])
            .encode(x="pool_limit_pages:Q")
            .transform_filter(limit)
        )
        points = (
            base.mark_point(filled=True, opacity=1)
            .encode(
                size=alt.when(limit).then(alt.value(160)).otherwise(alt.value(50)),
                tooltip=[
                    "lru_design:N",
                    *counts("pool_limit_pages", "disk_faults", "avoidable_disk_faults"),
                    alt.Tooltip("optimal_gap:Q", title="gap to optimal", format=","),
                    alt.Tooltip("expected_fault_latency_ns:Q", title="fault ns", format=",.0f"),
                    *counts("inversions"),
                    alt.Tooltip("inversion_pct:Q", format=".3f"),
                    *counts("writebacks"),
                ],
            )
            .add_params(limit)
            .properties(name="sweep")
        )
        sweep = alt.layer(rule, base.mark_line(), points).properties(
            width=width, height=220, title=CHARTS["sweep"]
        )
        lru.append(sweep)
        lru_charts.append("sweep")
    if d.tiers is not None:
        tiers = alt.Chart(d.tiers)
        title = CHARTS["tiers"]
        if limit is not None:
            tiers = tiers.transform_filter(limit)
        else:
            title = "tier hits: zswap vs disk"
        tiers = (
            tiers.mark_bar()
            .encode(
                y=alt.Y("lru_design:N", title=None),
                x=alt.X("hits:Q", title="swap-ins served", stack="zero"),
                color=alt.Color(
                    "tier:N",
                    title="tier",
                    scale=alt.Scale(domain=["zswap", "disk"], range=["#4c78a8", "#e45756"]),
                ),
                tooltip=[
                    "lru_design:N",
                    "tier:N",
                    alt.Tooltip("pool_limit_pages:Q", title="pool limit", format=","),
                    *counts("hits"),
                ],
            )
            .properties(name="tiers", width=width, height=160, title=title)
        )
        lru.append(tiers)
        lru_charts.append("tiers")
    rows_lru: list[Any] = []
    if lru:
        # sweep colours LRU designs, tiers colour tiers: two scales, two legends.
        rows_lru.append(
            alt.hconcat(*lru).resolve_scale(color="independent") if len(lru) > 1 else lru[0]
        )
    if d.lru_time is not None:
        rows_lru.append(
            alt.Chart(d.lru_time)
            .mark_line(interpolate="step-after")
            .encode(
                x=alt.X("t:Q", title=f"time ({u})"),
                y=alt.Y("pool_pages:Q", title="zswap pool pages"),
                color=alt.Color("lru_design:N", title="LRU design"),
                tooltip=[
                    "lru_design:N",
                    alt.Tooltip("t:Q", title=f"time ({u})"),
                    *counts("pool_pages", "inversions", "zswap_hits", "disk_swapins", "writebacks"),
                ],
            )
            .properties(name="lru_time", width=width * 2 + 60, height=160, title=CHARTS["lru_time"])
        )
        lru_charts.append("lru_time")
    if d.lru_memcg is not None:
        rows_lru.append(
            alt.Chart(d.lru_memcg)
            .mark_bar()
            .encode(
                y=alt.Y("row:N", title=None),
                yOffset=alt.YOffset("measure:N", sort=list(_MEMCG_MEASURES.values())),
                x=alt.X("pages:Q", title="pages"),
                color=alt.Color(
                    "measure:N", title="per cgroup", sort=list(_MEMCG_MEASURES.values())
                ),
                tooltip=[
                    "lru_design:N",
                    alt.Tooltip("memcg_id:Q", title="memcg (cgroup id)"),
                    alt.Tooltip("pool_limit_pages:Q", title="pool limit", format=","),
                    "measure:N",
                    *counts("pages"),
                ],
            )
            .properties(
                name="lru_memcg",
                width=width * 2 + 60,
                height=alt.Step(8),
                title=MEMCG_CHART,
            )
        )
        lru_charts.append("lru_memcg")
    if rows_lru:
        spec = (
            alt.vconcat(*rows_lru).resolve_scale(color="independent")
            if len(rows_lru) > 1
            else rows_lru[0]
        )
        sections.append(
            Section(
                "lru",
                "LRU designs and swap tiers",
                "Click a point in the sweep to show the tier split at that pool limit.",
                _to_dict(spec),
                lru_charts,
            )
        )
    return sections


def _to_dict(chart: Any) -> dict[str, Any]:
    spec: dict[str, Any] = chart.to_dict()
    spec.setdefault("config", {}).update({"view": {"stroke": None}})
    return spec


# --------------------------------------------------------------------------------- html

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 4px}
.meta{color:#555;margin:0 0 8px} .hint{color:#555;margin:2px 0 10px;font-size:13px}
.absent li{color:#666} footer{margin-top:28px;color:#555;font-size:13px}
table.designs{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.designs th,table.designs td{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}
table.designs th:first-child,table.designs td:first-child{text-align:left}
.ivl{color:#666;font-size:12px} .second{color:#666} .verdict{margin:6px 0}
.flag{background:#fff3cd;border:1px solid #e0b000;padding:6px 10px;margin:8px 0}
table.prov{border-collapse:collapse;font-size:13px;max-width:1100px}
table.prov th,table.prov td{padding:2px 10px;text-align:left;vertical-align:top;
border-bottom:1px solid #ddd} table.prov td:first-child{white-space:nowrap}
h3{font-size:14px;margin:10px 0 2px}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}
"""

# Collect errors and expose the views so a test (or a curious user) can inspect them.
_BOOT = """
window.ztrace = {views: {}, errors: [], ready: false};
window.addEventListener('error', e => window.ztrace.errors.push(String(e.message)));
const ztraceSpecs = %s;
const ztraceOpts = {renderer: 'canvas', actions: {export: true, source: false,
  compiled: false, editor: false}};
Promise.all(Object.entries(ztraceSpecs).map(([id, spec]) =>
  vegaEmbed('#vis-' + id, spec, ztraceOpts).then(r => { window.ztrace.views[id] = r.view; })
)).then(() => { window.ztrace.ready = true; })
  .catch(e => { window.ztrace.errors.push(String(e)); console.error(e); });
"""


def _script_json(obj: Any) -> str:
    # "</" inside a <script> would end it; JSON allows the escaped form "<\\/".
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


_BUNDLE: str | None = None


def _bundle_cache_path() -> Path:
    import vl_convert as vlc

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = f"{vlc.__version__}-vl{vlc.get_vegalite_versions()[-1]}"  # type: ignore[attr-defined]
    return base / "ztrace" / f"vega-bundle-{tag}.js"


def javascript_bundle() -> str:
    """Vega + Vega-Lite + vega-embed as one script, from vl-convert.

    Bundling takes several seconds, so the result is cached per process and on disk
    (``~/.cache/ztrace``, keyed by the vl-convert and Vega-Lite versions). A cache that
    cannot be read or written is skipped, never an error.
    """
    global _BUNDLE
    if _BUNDLE is not None:
        return _BUNDLE
    path = _bundle_cache_path()
    try:
        text = path.read_text(encoding="utf-8")
        if "window.vegaEmbed=" in text:
            _BUNDLE = text
            return text
    except OSError:
        pass
    import vl_convert as vlc

    # the stub marks the optional `snippet` argument as required
    _BUNDLE = vlc.javascript_bundle()  # type: ignore[call-arg]
    try:
        with atomic_file(path, option="cache") as f:
            f.write(_BUNDLE)
    except (OSError, ConfigError):
        pass  # no cache: the next dashboard asks vl-convert again
    return _BUNDLE


def render_html(d: DashData, sections: list[Section], *, title: str = "ztrace dashboard") -> str:
    """The complete page: inlined libraries, specs, absent-chart notes, trust footer."""
    info = d.info
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>",
        # No favicon request: the page fetches nothing at all.
        '<link rel="icon" href="data:,">',
        "<script>\n",
        javascript_bundle(),
        "\n</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(info.get("source_line", ""))}</p>',
        info.get("designs_html", ""),
    ]
    for s in sections:
        parts.append(
            f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>'
            f'<p class="hint">{html.escape(s.hint)}</p><div id="vis-{s.id}"></div></section>'
        )
    if d.absent:
        parts.append('<section class="absent" id="absent"><h2>Not shown</h2><ul>')
        for chart, why in d.absent.items():
            name = CHARTS.get(chart) or _measured_charts()[chart]
            parts.append(f"<li><b>{html.escape(name)}</b>: {html.escape(why)}</li>")
        parts.append("</ul></section>")
    parts.append(f"<footer>{html.escape(info.get('trust_line', ''))}</footer>")
    specs = {s.id: s.spec for s in sections}
    parts.append(f"<script>{_BOOT % _script_json(specs)}</script></body></html>\n")
    return "".join(parts)


def _measured_charts() -> dict[str, str]:
    from ztrace.look.measured_panel import CHARTS as MEASURED

    return MEASURED


# ---------------------------------------------------------------------------------- api


@dataclass
class DashboardResult:
    path: Path
    bytes: int
    seconds: float
    charts: list[str]
    absent: dict[str, str]


def results_for_input(path: str | os.PathLike[str], *, quiet: bool = True) -> Results:
    """A results directory as is; a trace is summarised from its own lock_contention
    events (look never replays: ``ztrace dashboard TRACE`` replays in the CLI first)."""
    p = Path(path)
    if is_results_dir(p):
        return read_results(p)
    from ztrace.look.tracesum import summarise_trace

    return summarise_trace(p, quiet=quiet)


def build_dashboard(
    source: str | os.PathLike[str] | Results,
    out: str | os.PathLike[str],
    *,
    max_bins: int = MAX_BINS,
    max_class_bins: int = MAX_CLASS_BINS,
    title: str | None = None,
    quiet: bool = True,
    inputs: tuple[str | os.PathLike[str], ...] = (),
    force: bool = False,
) -> DashboardResult:
    """Write the dashboard for a results directory, loaded results, or (observed contention
    only) a trace. ``out`` is written atomically (an existing file only with ``force``; a
    device or FIFO is written into: safeio.output_file) and may not be one of ``inputs`` (the
    source is always one) or lie inside one."""
    started = time.perf_counter()
    if not isinstance(source, Results):
        inputs = (*inputs, source)
    check_output(out, inputs)
    results = source if isinstance(source, Results) else results_for_input(source, quiet=quiet)
    if results.trace_path:  # the trace the results came from is an input too (issue 11)
        inputs = (*inputs, results.trace_path)
        check_output(out, inputs)
    measured_only = results.meta.get("ztrace.capture_mode") == "summary"
    if not results.tables and not measured_only:
        raise TraceFormatError(results.path or "<results>", "no results tables to draw")
    d = prepare(results, max_bins=max_bins, max_class_bins=max_class_bins)
    if measured_only:  # a --summary capture: what it measured, and why nothing was replayed
        for chart in d.absent:
            d.absent[chart] = "a --summary capture keeps no event stream to replay"
    d.info["source_line"] = _source_line(results, d)
    d.info["trust_line"] = _trust_line(results)
    d.info["designs_html"] = designs_html(results) + provenance_html(results)
    sections = build_sections(d)
    # the capture's own contention beside the replay (look/measured_panel.py)
    from ztrace.look import measured_panel

    panel = measured_panel.prepare_panel(results)
    sections += measured_panel.sections(panel, Section)
    d.absent.update(panel.absent)
    page = render_html(d, sections, title=title or "ztrace dashboard")
    out = Path(out)
    with output_file(out, force=force, inputs=inputs) as f:
        f.write(page)
    return DashboardResult(
        path=out,
        bytes=len(page.encode("utf-8")),  # not stat: a FIFO or /dev/null has no size
        seconds=time.perf_counter() - started,
        charts=[c for s in sections for c in s.charts],
        absent=dict(d.absent),
    )


def _source_line(results: Results, d: DashData) -> str:
    trace = results.trace_path
    if "measured_only" in results.summary:
        return f"trace: {trace} · a --summary capture: what it measured, no replay"
    src = str(results.path) if results.path else "(in-memory replay)"
    bits = [f"results: {src}"]
    if trace:
        bits.append(f"trace: {trace}")
    if "timeline_bin" in d.info:
        bits.append(f"timeline bin: {d.info['timeline_bin']}")
    if results.summary.get("sample"):
        bits.append("SAMPLE DATA (synthetic fixture, not a replay)")
    if results.summary.get("summarised_trace"):
        bits.append("observed contention from the trace itself (no replay)")
    return " · ".join(bits)


def _trust_line(results: Results) -> str:
    from ztrace.look.report import trust_of

    seen = results.summary.get("measured_only")
    if seen is not None:  # a --summary capture's own counts (look.measured)
        events, lost = seen["events"], seen["lost_events"]
        return f"events: {events:,} · lost events: {lost:,} (from the capture)"
    t = trust_of(results)
    if t.events is None:
        return "events: unknown (trace not found); lost events: unknown"
    return f"events: {t.events:,} · lost events: {t.lost_events or 0:,} (from {t.source})"


def designs_html(results: Results) -> str:
    """The whole-run design comparison above the charts: total wait, wait per op and p99
    wait with their intervals first, contended second, then the verdicts (ranked only where
    intervals do not overlap) and the TCG-guest flag (issue 10 items 4-5)."""
    from ztrace.look.report import human_ns
    from ztrace.look.verdict import (
        LEAD_METRICS,
        METRIC_LABEL,
        NO_DIFFERENCE,
        SECOND_METRICS,
        comparison,
        estimates,
        guest_flag,
        interval_note,
        pair_text,
        verdict_line,
    )

    parts: list[str] = []
    flag = guest_flag(results)
    if flag:
        parts.append(f'<p class="flag" id="cost-flag">{html.escape(flag)}</p>')
    est = estimates(results)
    if not est or results.summary.get("summarised_trace"):
        return "".join(parts)  # observed contention (no replay): nothing to compare
    metrics = (*LEAD_METRICS, *SECOND_METRICS)

    def cell(m: str, d: str) -> str:
        e = est[d].get(m)
        if e is None:
            return "<td>-</td>"
        fmt: Callable[[float], str] = human_ns if m != "contended" else "{:,.0f}".format
        ivl = f' <span class="ivl">[{fmt(e.lo)}, {fmt(e.hi)}]</span>' if e.runs > 1 else ""
        cls = second if m in SECOND_METRICS else ""
        return f"<td{cls}>{html.escape(fmt(e.value))}{ivl}</td>"

    second = ' class="second"'
    head = "".join(
        f"<th{second if m in SECOND_METRICS else ''}>{METRIC_LABEL[m]}</th>" for m in metrics
    )
    order = sorted(est, key=lambda d: est[d]["wait_ns_total"].value)
    body = "".join(
        f"<tr><td>{html.escape(d)}</td>{''.join(cell(m, d) for m in metrics)}</tr>" for d in order
    )
    parts.append(
        '<section id="designs"><h2>Lock designs: what users feel</h2>'
        f'<table class="designs"><tr><th>design</th>{head}</tr>{body}</table>'
    )
    if len(est) > 1:
        lines = [verdict_line(est, m) for m in metrics]
        same = [
            f"{METRIC_LABEL[c['metric']]}: {pair_text(c)}"
            for c in comparison(est)
            if c["verdict"] == NO_DIFFERENCE
        ]
        parts.append(
            '<p class="verdict">'
            + "<br>".join(html.escape(x) for x in (*lines, *same) if x)
            + "</p>"
        )
    parts.append(f'<p class="hint">{html.escape(interval_note(est))}</p>')
    parts.append("</section>")
    return "".join(parts)


def provenance_html(results: Results) -> str:
    """Where every cost came from (measured / fitted / default; issue 10 item 2), read by
    :mod:`ztrace.look.provenance` as ``report`` reads it: one table when every design shares
    it (one replay), else one per group of designs that do. Empty without a provenance."""
    from ztrace.look.provenance import grouped

    groups = grouped(results)
    if not groups:
        return ""

    def table(names: list[str], prov: dict[str, str]) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>"
            for k, v in prov.items()
        )
        return (
            f'<table class="prov" data-designs="{html.escape(",".join(names))}">'
            f"<tr><th>cost</th><th>source</th></tr>{rows}</table>"
        )

    parts = ['<section id="cost-provenance"><h2>Where the costs came from</h2>']
    if len(groups) == 1:
        names, prov = groups[0]
        who = "the one design" if len(names) == 1 else f"all {len(names)} designs"
        parts.append(
            f'<p class="hint">The same for {who} ({html.escape(", ".join(names))}): '
            "each hold time measured (the trace's own durations), fitted (their median) or a "
            "default, and where the hold share, stalls and probe cost came from.</p>"
        )
        parts.append(table(names, prov))
    else:
        parts.append(
            '<p class="hint">Different per design (results of several replays read '
            "together): each hold time measured, fitted or a default.</p>"
        )
        for names, prov in groups:
            parts.append(f"<h3>{html.escape(', '.join(names))}</h3>{table(names, prov)}")
    parts.append("</section>")
    return "".join(parts)
