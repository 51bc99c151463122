"""The dashboard's measured side: what a capture saw, beside what the replay predicts.

Two charts, both from the capture the results were replayed from (``ztrace.trace`` in the
results metadata), read through :mod:`ztrace.look.measured` -- the same contention table
``ztrace report TRACE`` prints, so the page and the report cannot disagree:

* ``flame``: a flame graph of lock waits as an icicle chart (root at the top). Each rectangle
  is a frame of the folded stacks (:func:`ztrace.look.measured.folded`: root first, the lock
  kind as the innermost frame), its width the total wait (ns) below it. Frames narrower than
  ``min_frac`` of the total are not drawn, but still count in their parents' widths, as
  flamegraph.pl's ``--minwidth`` does.
* ``vs_replayed``: contended count and total wait, measured (the capture's
  ``lock_contention`` rows) beside every replayed design (``locks_summary``).

Every number on the page is a raw integer from those tables (ns, counts); units are only
applied in axis titles and tooltips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ztrace.errors import TraceFormatError
from ztrace.look.measured import Measured, folded_weights, is_trace, load_measured

if TYPE_CHECKING:
    from ztrace.format import Results
    from ztrace.look.dashboard import Section

#: chart ids of this panel (the dashboard lists them in ``CHARTS``)
CHARTS: dict[str, str] = {
    "flame": "measured lock waits by stack (flame graph, width = total wait)",
    "vs_replayed": "measured vs replayed: contended and total wait per design",
}
MEASURED = "measured"
#: frames narrower than this share of the total wait are not drawn (flamegraph.pl --minwidth)
MIN_FRAC = 0.002
#: flame graph width in px
FLAME_WIDTH = 1100


@dataclass
class Panel:
    """The measured panel's frames, or why it is absent."""

    flame: pl.DataFrame | None
    versus: pl.DataFrame | None
    absent: dict[str, str]
    totals: dict[str, int]


def flame_nodes(m: Measured, *, min_frac: float = MIN_FRAC) -> pl.DataFrame:
    """The icicle layout of the folded stacks: one row per drawn frame.

    Columns: ``path`` (root-first frames joined by ``;``), ``name``, ``depth`` (the root
    ``all`` is 0), ``x0``/``x1`` (ns offsets: ``x1 - x0 == wait_ns``), ``wait_ns``,
    ``contended``, ``lock_kind`` (the kind with most wait below the frame) and ``label``
    (``name`` where the frame is wide enough to print it). Siblings are in name order.
    """
    tree: dict[str, Any] = {"w": 0, "n": 0, "kinds": {}, "kids": {}}
    counts = folded_weights(m, "contended")
    for path, weight in sorted(folded_weights(m, "wait_ns_total").items()):
        if weight <= 0:
            continue  # as in folded(): a zero-wait line draws nothing
        kind = path.rsplit(";", 1)[-1].strip("[]")
        node = tree
        for part in ("all", *path.split(";")):
            node = node["kids"].setdefault(part, {"w": 0, "n": 0, "kinds": {}, "kids": {}})
            node["w"] += weight
            node["n"] += counts[path]
            node["kinds"][kind] = node["kinds"].get(kind, 0) + weight
    rows: list[dict[str, Any]] = []
    total = sum(k["w"] for k in tree["kids"].values())
    cut = min_frac * total

    # Depth-first, preorder, siblings in name order, with an explicit stack: a stack of
    # thousands of frames must not hit Python's recursion limit (fuzz report s21, item 11).
    todo: list[tuple[str, dict[str, Any], str, int, int]] = []
    if "all" in tree["kids"]:
        todo.append(("all", tree["kids"]["all"], "", 0, 0))
    while todo:
        name, node, path, depth, x0 = todo.pop()
        if node["w"] <= 0 or (depth > 0 and node["w"] < cut):
            continue
        kind = max(sorted(node["kinds"]), key=lambda k: node["kinds"][k])
        # as many characters as fit the rectangle (~6.5 px each at 10 px) at FLAME_WIDTH
        fit = int(FLAME_WIDTH * node["w"] / total / 6.5) if total else 0
        rows.append(
            {
                "path": path,
                "name": name,
                "depth": depth,
                "x0": x0,
                "x1": x0 + node["w"],
                "wait_ns": node["w"],
                "contended": node["n"],
                "lock_kind": kind,
                "label": name if len(name) <= fit else (name[: fit - 1] + "…" if fit > 3 else ""),
            }
        )
        x = x0
        kids = []
        for kid in sorted(node["kids"]):
            child = node["kids"][kid]
            kids.append((kid, child, f"{path};{kid}" if path else kid, depth + 1, x))
            x += child["w"]
        todo.extend(reversed(kids))  # popped in name order
    schema = {
        "path": pl.Utf8,
        "name": pl.Utf8,
        "depth": pl.Int64,
        "x0": pl.Int64,
        "x1": pl.Int64,
        "wait_ns": pl.Int64,
        "contended": pl.Int64,
        "lock_kind": pl.Utf8,
        "label": pl.Utf8,
    }
    return pl.DataFrame(rows, schema=schema)


def versus_rows(m: Measured, results: Results | None) -> pl.DataFrame:
    """Measured totals, then each replayed design's, as (source, design, contended, wait)."""
    rows = [
        {
            "source": MEASURED,
            "design": MEASURED,
            "contended": int(m.table["contended"].sum()) if len(m.table) else 0,
            "wait_ns_total": int(m.table["wait_ns_total"].sum()) if len(m.table) else 0,
        }
    ]
    if results is not None and results.has("locks_summary"):
        for r in results["locks_summary"].sort("lock_design").to_dicts():
            rows.append(
                {
                    "source": "replayed",
                    "design": str(r["lock_design"]),
                    "contended": int(r["contended"]),
                    "wait_ns_total": int(r["wait_ns_total"]),
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "source": pl.Utf8,
            "design": pl.Utf8,
            "contended": pl.Int64,
            "wait_ns_total": pl.Int64,
        },
    )


def _decades(top: int) -> list[int]:
    """Axis ticks for a symlog scale: 0 and the powers of ten up to ``top``."""
    return [0, *(10**k for k in range(len(str(max(top, 1)))))]


def is_capture(trace: str | None) -> bool:
    """True for a trace that ``ztrace capture`` wrote (parts or ``--summary`` intervals):
    only a capture's lock rows are measurements (a synthesized trace's are not)."""
    if not trace or not is_trace(trace):
        return False
    p = Path(trace)
    if p.is_dir() and not any(p.glob("part-*.parquet")):
        return True  # summary-*.parquet only: always a capture
    from ztrace.format import read_meta

    try:
        return read_meta(p).source == "capture"
    except (TraceFormatError, OSError):
        return False


def prepare_panel(results: Results) -> Panel:
    """The panel for ``results``: drawn when their trace is a capture with lock rows."""
    trace = results.trace_path
    absent: dict[str, str] = {}
    why = ""
    m: Measured | None = None
    if not is_capture(trace):
        return Panel(None, None, {}, {})  # synthetic or no trace: nothing was measured
    assert trace is not None
    try:
        m = load_measured(trace)
    except TraceFormatError as exc:
        why = str(exc)
    if m is None:
        return Panel(None, None, dict.fromkeys(CHARTS, why or "no lock rows"), {})
    totals = {
        "contended": int(m.table["contended"].sum()) if len(m.table) else 0,
        "wait_ns_total": int(m.table["wait_ns_total"].sum()) if len(m.table) else 0,
    }
    flame = flame_nodes(m)
    if flame.is_empty():
        absent["flame"] = "the capture measured no lock waits"
        flame_df = None
    elif not m.stacks:
        absent["flame"] = "the capture has no stacks.json (no stacks to fold)"
        flame_df = None
    else:
        flame_df = flame
    return Panel(flame_df, versus_rows(m, results), absent, totals)


def sections(panel: Panel, section_cls: type[Section]) -> list[Section]:
    """The panel as one dashboard section (none when both charts are absent)."""
    import altair as alt

    charts: list[Any] = []
    ids: list[str] = []
    if panel.flame is not None:
        total = int(panel.flame.filter(pl.col("depth") == 0)["wait_ns"][0])
        depth = max(panel.flame["depth"].to_list()) + 1
        base = alt.Chart(panel.flame).encode(
            x=alt.X("x0:Q", axis=None, scale=alt.Scale(domain=[0, total], nice=False)),
            y=alt.Y(
                "depth:Q",
                axis=None,
                scale=alt.Scale(domain=[0, depth], nice=False, reverse=True),
            ),
        )
        tips = [
            alt.Tooltip("name:N", title="frame"),
            alt.Tooltip("wait_ns:Q", title="total wait (ns)", format=","),
            alt.Tooltip("contended:Q", format=","),
            alt.Tooltip("lock_kind:N", title="lock"),
        ]
        rect = (
            base.transform_calculate(depth1="datum.depth + 1")
            .mark_rect(stroke="white", strokeWidth=0.5)
            .encode(
                x2="x1:Q",
                y2="depth1:Q",
                color=alt.Color("lock_kind:N", title="lock"),
                tooltip=tips,
            )
            .properties(name="flame")
        )
        text = (
            base.transform_calculate(ymid="datum.depth + 0.5")
            .mark_text(align="left", dx=2, fontSize=10, color="black")
            .encode(y=alt.Y("ymid:Q", axis=None, scale=alt.Scale(reverse=True)), text="label:N")
        )
        charts.append(
            alt.layer(rect, text).properties(
                width=FLAME_WIDTH, height=max(120, 16 * depth), title=CHARTS["flame"]
            )
        )
        ids.append("flame")
    if panel.versus is not None:
        enc_color = alt.Color("source:N", title="", scale=alt.Scale(domain=[MEASURED, "replayed"]))
        bars = []
        for field, title, name in (
            ("contended", "contended", "vs_replayed"),
            ("wait_ns_total", "total wait (ns)", "vs_replayed_wait"),
        ):
            bars.append(
                alt.Chart(panel.versus)
                .mark_bar()
                .encode(
                    x=alt.X("design:N", sort=None, title=None),
                    # symlog: a replay can predict 100x what was measured, and 0 is valid
                    y=alt.Y(
                        f"{field}:Q",
                        title=title,
                        scale=alt.Scale(type="symlog"),
                        axis=alt.Axis(values=_decades(max(panel.versus[field].to_list()))),
                    ),
                    color=enc_color,
                    tooltip=[
                        "design:N",
                        "source:N",
                        alt.Tooltip("contended:Q", format=","),
                        alt.Tooltip("wait_ns_total:Q", title="total wait (ns)", format=","),
                    ],
                )
                .properties(name=name, width=360, height=200, title=f"{title}")
            )
        charts.append(alt.hconcat(*bars).properties(title=CHARTS["vs_replayed"]))
        ids.append("vs_replayed")
    if not charts:
        return []
    from ztrace.look.dashboard import _to_dict

    spec = alt.vconcat(*charts).resolve_scale(color="independent") if len(charts) > 1 else charts[0]
    hint = (
        f"From the capture itself: {panel.totals['contended']:,} contended waits, "
        f"{panel.totals['wait_ns_total']:,} ns in total. Hover a frame for its wait."
    )
    return [section_cls("measured", "Measured contention (the capture)", hint, _to_dict(spec), ids)]
