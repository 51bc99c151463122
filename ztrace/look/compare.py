"""``ztrace compare A B``: per-design deltas of the headline metrics with bootstrap intervals.

The unit of resampling is what each side holds many of:

- a **fleet dataset** (``ztrace fleet sweep``): hosts. The statistic is the mean over hosts;
  when both sides hold the same hosts the bootstrap is *paired* (resample hosts, mean of
  per-host B − A), so host-to-host spread does not hide a design's effect.
- **one results set** (a replay of one capture): the timeline's time bins. Additive metrics
  (total wait, disk faults) are the sum over bins, pages the mean over bins; p99 wait and
  fault latency exist once per side, so they get a point delta and no interval.

A delta whose interval straddles zero is reported as "no measurable difference". Percentile
bootstrap, 2,000 resamples, seeded: the same inputs give the same output.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from ztrace.format import Results
from ztrace.look.report import human_ns

NO_DIFF = "no measurable difference"
NO_INTERVAL = "no interval (one value per side)"

Agg = Literal["mean", "sum", "point"]
#: metric -> (label, is a time in ns)
HEADLINE: dict[str, tuple[str, bool]] = {
    "wait_ns_total": ("total wait", True),
    "wait_ns_p99": ("p99 wait", True),
    "disk_swapins": ("disk faults", False),
    "expected_fault_latency_ns": ("fault latency", True),
    "pages": ("pages", False),
}
_SAMPLE_SCHEMA = {
    "design": pl.String,
    "unit": pl.String,
    "metric": pl.String,
    "agg": pl.String,
    "unit_kind": pl.String,
    "value": pl.Float64,
}


@dataclass(frozen=True)
class Delta:
    design: str
    metric: str
    a: float
    b: float
    delta: float
    rel: float | None  # delta / a
    lo: float | None
    hi: float | None
    n_a: int
    n_b: int
    unit: str  # "host" (paired or not) or "bin"
    paired: bool
    verdict: str


def _fleet_design(kind: str, design: str, cpus: int | None, speedup: float | None,
                  pool_limit: str | None) -> str:  # fmt: skip
    if kind == "lru":
        return f"lru:{design} @{pool_limit}"
    extra = (f" cpus={cpus}" if cpus is not None else "") + (
        f" speedup={speedup:g}" if speedup not in (None, 1.0) else ""
    )
    return f"locks:{design}{extra}"


def samples_from_fleet(table: pa.Table) -> pl.DataFrame:
    """Long samples (design, unit=host, metric, agg=mean, value) from a fleet dataset."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    rows = []
    metrics = {m: m for m in HEADLINE if m in df.columns} | {"pages": "pages_used_peak"}
    for r in df.iter_rows(named=True):
        d = _fleet_design(r["kind"], r["design"], r["cpus"], r["speedup"], r["pool_limit"])
        unit = r["host"] if r.get("capture_id") is None else f"{r['host']}/{r['capture_id']}"
        for m, col in metrics.items():
            v = r.get(col)
            if v is not None:
                rows.append((d, unit, m, "mean", "host", float(v)))
    return pl.DataFrame(rows, schema=_SAMPLE_SCHEMA, orient="row")


def samples_from_results(res: Results) -> pl.DataFrame:
    """Long samples from one results set: time bins (sum/mean) and one-off summary values."""
    frames = []

    def add(df: pl.DataFrame, design: pl.Expr, unit: str, col: str, metric: str, agg: Agg) -> None:
        frames.append(
            df.select(
                design.alias("design"),
                pl.col(unit).cast(pl.String).alias("unit"),
                pl.lit(metric).alias("metric"),
                pl.lit(agg).alias("agg"),
                pl.lit("value" if agg == "point" else "bin").alias("unit_kind"),
                pl.col(col).cast(pl.Float64).alias("value"),
            )
        )

    lock = pl.lit("locks:") + pl.col("lock_design")
    if res.has("timeline"):
        tl = res["timeline"]
        add(tl, lock, "bin_start_ns", "wait_ns_total", "wait_ns_total", "sum")
        add(tl, lock, "bin_start_ns", "pages_used", "pages", "mean")
    if res.has("locks_summary"):
        add(res["locks_summary"], lock, "lock_design", "wait_ns_p99", "wait_ns_p99", "point")
    if res.has("lru_summary"):
        s = res["lru_summary"]
        lru = pl.format("lru:{} @{}p", pl.col("lru_design"), pl.col("pool_limit_pages"))
        col = "expected_fault_latency_ns"
        add(s, lru, "lru_design", col, col, "point")
        if res.has("lru_timeline"):
            tl = res["lru_timeline"].join(
                s.select("lru_design", "pool_limit_pages"), on="lru_design", how="left"
            )
            add(tl, lru, "bin_start_ns", "disk_swapins", "disk_swapins", "sum")
        else:
            add(s, lru, "lru_design", "disk_swapins", "disk_swapins", "point")
    if not frames:
        return pl.DataFrame(schema=_SAMPLE_SCHEMA)
    return pl.concat(frames).drop_nulls("value")


def _stat(x: np.ndarray, agg: str, axis: int = -1) -> np.ndarray:
    return x.sum(axis=axis) if agg == "sum" else x.mean(axis=axis)


def _one(
    design: str, metric: str, a: pl.DataFrame, b: pl.DataFrame, resamples: int,
    level: float, rng: np.random.Generator,
) -> Delta:  # fmt: skip
    agg = str(a["agg"][0])
    va, vb = a["value"].to_numpy(), b["value"].to_numpy()
    pa_, pb = float(_stat(va, agg)), float(_stat(vb, agg))
    delta = pb - pa_
    rel = delta / pa_ if pa_ else None
    unit = str(a["unit_kind"][0])
    paired = False
    lo = hi = None
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    common = sorted(set(a["unit"]) & set(b["unit"]))
    if agg != "point" and len(va) > 1 and len(vb) > 1:
        if unit == "host" and len(common) >= 2 and len(common) == len(va) == len(vb):
            paired = True
            am = dict(zip(a["unit"], va, strict=True))
            bm = dict(zip(b["unit"], vb, strict=True))
            diff = np.array([bm[u] - am[u] for u in common])
            idx = rng.integers(0, len(diff), size=(resamples, len(diff)))
            boot = _stat(diff[idx], agg)
        else:
            ia = rng.integers(0, len(va), size=(resamples, len(va)))
            ib = rng.integers(0, len(vb), size=(resamples, len(vb)))
            boot = _stat(vb[ib], agg) - _stat(va[ia], agg)
        lo, hi = (float(x) for x in np.quantile(boot, q))
    if lo is None or hi is None:
        verdict = NO_INTERVAL
    elif lo <= 0 <= hi:
        verdict = NO_DIFF
    else:
        verdict = "B higher" if lo > 0 else "B lower"
    return Delta(design, metric, pa_, pb, delta, rel, lo, hi, len(va), len(vb), unit, paired,
                 verdict)  # fmt: skip


def compare(
    a: pl.DataFrame, b: pl.DataFrame, *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> list[Delta]:
    """Deltas B − A for every (design, headline metric) both sides have, in a fixed order."""
    rng = np.random.default_rng(seed)
    out = []
    designs = sorted(set(a["design"]) & set(b["design"]))
    for d in designs:
        for m in HEADLINE:
            sa = a.filter((pl.col("design") == d) & (pl.col("metric") == m)).sort("unit")
            sb = b.filter((pl.col("design") == d) & (pl.col("metric") == m)).sort("unit")
            if sa.height and sb.height:
                out.append(_one(d, m, sa, sb, resamples, level, rng))
    return out


def _fmt(metric: str, v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    if HEADLINE[metric][1]:
        return ("-" if v < 0 else "") + human_ns(abs(v))
    return f"{v:,.1f}"


def render_text(deltas: Sequence[Delta], a_name: str, b_name: str) -> str:
    """A plain table: one line per design × metric, the verdict last."""
    head = ["design", "metric", "A", "B", "B-A", "rel", "95% interval", "n", "verdict"]
    rows = [head]
    for d in deltas:
        ci = "-" if d.lo is None else f"[{_fmt(d.metric, d.lo)}, {_fmt(d.metric, d.hi)}]"
        n = f"{d.n_a}/{d.n_b} {d.unit}s" + (" paired" if d.paired else "")
        rel = "-" if d.rel is None else f"{d.rel:+.1%}"
        rows.append([d.design, HEADLINE[d.metric][0], _fmt(d.metric, d.a), _fmt(d.metric, d.b),
                     _fmt(d.metric, d.delta), rel, ci, n, d.verdict])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"A = {a_name}", f"B = {b_name}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def render_json(deltas: Sequence[Delta], a_name: str, b_name: str) -> str:
    return json.dumps({"a": a_name, "b": b_name, "deltas": [asdict(d) for d in deltas]},
                      sort_keys=True)  # fmt: skip


def render_csv(deltas: Sequence[Delta]) -> str:
    buf = io.StringIO()
    fields = list(Delta.__dataclass_fields__)
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for d in deltas:
        w.writerow(asdict(d))
    return buf.getvalue()
