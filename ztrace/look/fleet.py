"""The fleet page: what a design would do to each host, aggregated before charting.

From a fleet dataset (``ztrace fleet sweep``), per host and design, the *predicted change*
is the design's headline metric divided by the baseline design's on the same host and the
same other parameters: total wait for lock designs (baseline: the first lock design swept,
e.g. ``class``), disk faults for LRU designs (baseline: the first LRU design, per pool
limit). Only aggregates reach the page, so its size depends on designs, not hosts:

- ``ratio_hist``: the distribution across hosts of log2(change), 40 bins per design;
- ``gain_lose``: hosts that gain (< −5 %), lose (> +5 %) or stay within ±5 %, per design;
- ``worst``: the ``top`` hosts each design hurts most, with host, trace path and both
  values in the tooltip.

One offline file (the dashboard's inlined Vega bundle); ``window.ztrace`` as in
:mod:`ztrace.look.dashboard`, so the same browser harness drives it.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pyarrow as pa

from ztrace.errors import ConfigError
from ztrace.look.dashboard import DashData, Section, _to_dict, render_html

#: kind -> (metric, label)
METRIC = {"locks": ("wait_ns_total", "total wait"), "lru": ("disk_swapins", "disk faults")}
CHARTS = {
    "ratio_hist": "distribution across hosts of the predicted change (design ÷ baseline)",
    "gain_lose": "hosts that gain, lose or stay within ±5 %",
    "worst": "hosts each design hurts most",
}
BINS = 40
BAND = 0.05


def changes(table: pa.Table, source: str = "fleet dataset") -> pl.DataFrame:
    """Per (host, design config): baseline value, design value and ratio (design ÷ base)."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    out = []
    for kind, (metric, _) in METRIC.items():
        k = df.filter(pl.col("kind") == kind)
        if k.is_empty():
            continue
        if metric not in df.columns:
            raise ConfigError(f"{source}: {kind} rows but no `{metric}` column")
        base = k["design"][0]  # plan order: the first design swept of this kind
        same = ["trace_path", "cpus", "speedup", "pool_limit"]
        b = k.filter(pl.col("design") == base).select(*same, pl.col(metric).alias("base"))
        d = k.filter(pl.col("design") != base).join(b, on=same, how="inner", nulls_equal=True)
        cfg = pl.format("{}:{} vs {}", pl.lit(kind), pl.col("design"), pl.lit(base))
        lim = pl.when(pl.col("pool_limit").is_not_null()).then(
            pl.format(" @{}", pl.col("pool_limit"))
        )
        out.append(
            d.select(
                (cfg + lim.otherwise(pl.lit(""))).alias("design"),
                "host",
                "trace_path",
                pl.lit(METRIC[kind][1]).alias("metric"),
                pl.col("base").cast(pl.Float64),
                pl.col(metric).cast(pl.Float64).alias("value"),
            )
        )
    if not out:
        return pl.DataFrame()
    c = pl.concat(out)
    # a host with a zero baseline: +1 on both sides keeps the ratio finite and ordered
    return c.with_columns(((pl.col("value") + 1) / (pl.col("base") + 1)).alias("ratio"))


def aggregate(c: pl.DataFrame, top: int = 20) -> dict[str, pl.DataFrame]:
    """The three small frames the page charts."""
    c = c.with_columns(pl.col("ratio").log(2).alias("log2"))
    lo, hi = float(c["log2"].min()), float(c["log2"].max())  # type: ignore[arg-type]
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    w = (hi - lo) / BINS
    hist = (
        c.with_columns(((pl.col("log2") - lo) / w).floor().clip(0, BINS - 1).alias("bin"))
        .group_by("design", "bin")
        .agg(pl.len().alias("hosts"))
        .with_columns(
            (2 ** (lo + pl.col("bin") * w)).alias("ratio_lo"),
            (2 ** (lo + (pl.col("bin") + 1) * w)).alias("ratio_hi"),
        )
        .sort("design", "bin")
    )
    verdict = (
        pl.when(pl.col("ratio") > 1 + BAND)
        .then(pl.lit("loses"))
        .when(pl.col("ratio") < 1 - BAND)
        .then(pl.lit("gains"))
        .otherwise(pl.lit("within ±5 %"))
    )
    gl = (
        c.group_by("design", verdict.alias("verdict"))
        .agg(pl.len().alias("hosts"))
        .sort("design", "verdict")
    )
    worst = (
        c.sort("ratio", descending=True)
        .group_by("design", maintain_order=True)
        .head(top)
        .with_columns(pl.col("ratio").rank("ordinal", descending=True).over("design").alias("rank"))
        .select("design", "rank", "host", "trace_path", "metric", "base", "value", "ratio")
        .sort("design", "rank")
    )
    return {"ratio_hist": hist, "gain_lose": gl, "worst": worst}


def build_page(table: pa.Table, *, source: str, top: int = 20) -> str:
    """The fleet page's HTML."""
    import altair as alt

    c = changes(table, source)
    if c.is_empty():
        raise ConfigError(f"{source}: fewer than two designs of a kind: nothing to compare")
    agg = aggregate(c, top)
    hosts = c["host"].n_unique()
    design = alt.Color("design:N", title="design vs baseline")
    hist = (
        alt.Chart(alt.Data(values=agg["ratio_hist"].to_dicts()), name="ratio_hist")
        .mark_bar(opacity=0.7)
        .encode(
            x=alt.X("ratio_lo:Q", scale=alt.Scale(type="log", base=2),
                    title="predicted change (design ÷ baseline, log scale)"),
            x2="ratio_hi:Q",
            y=alt.Y("hosts:Q", stack=None, title="hosts"),
            color=design,
            tooltip=["design:N", alt.Tooltip("ratio_lo:Q", format=".3f"),
                     alt.Tooltip("ratio_hi:Q", format=".3f"), "hosts:Q"],
        )
        .properties(width=560, height=220, title=CHARTS["ratio_hist"])
    )  # fmt: skip
    gl = (
        alt.Chart(alt.Data(values=agg["gain_lose"].to_dicts()), name="gain_lose")
        .mark_bar()
        .encode(
            y=alt.Y("design:N", title=None),
            x=alt.X("hosts:Q", stack="zero"),
            color=alt.Color("verdict:N", scale=alt.Scale(
                domain=["gains", "within ±5 %", "loses"], range=["#2a9d4a", "#bbbbbb", "#d1453b"])),
            tooltip=["design:N", "verdict:N", "hosts:Q"],
        )
        .properties(width=560, title=CHARTS["gain_lose"])
    )  # fmt: skip
    worst = (
        alt.Chart(alt.Data(values=agg["worst"].to_dicts()), name="worst")
        .mark_circle(size=70)
        .encode(
            x=alt.X("ratio:Q", scale=alt.Scale(type="log", base=2), title="change (÷ baseline)"),
            y=alt.Y("host:N", sort="-x", title=None),
            color=design,
            tooltip=["host:N", "design:N", "metric:N", alt.Tooltip("ratio:Q", format=".3f"),
                     alt.Tooltip("base:Q", title="baseline", format=",.0f"),
                     alt.Tooltip("value:Q", title="design", format=",.0f"), "trace_path:N"],
        )
        .properties(width=560, title=f"{CHARTS['worst']} (top {top} per design)")
    )  # fmt: skip
    spec = _to_dict(alt.vconcat(hist, gl, worst).resolve_scale(color="independent"))
    sections = [
        Section(
            id="fleet",
            title=f"{hosts} hosts",
            hint="Change per host = the design's metric ÷ the baseline's on that host "
            "(total wait for lock designs, disk faults for LRU designs); > 1 hurts. "
            "Hover a point for the host's trace.",
            spec=spec,
            charts=list(CHARTS),
        )
    ]
    info = {"source_line": f"fleet dataset: {source}", "trust_line": "ztrace fleet (docs/fleet.md)"}
    d = DashData(time_unit="ms", info=info)
    return render_html(d, sections, title="ztrace fleet")


def page_rows(table: pa.Table, top: int = 20) -> dict[str, Any]:
    """Row counts of what the page inlines (its size does not grow with hosts)."""
    return {k: v.height for k, v in aggregate(changes(table), top).items()}
