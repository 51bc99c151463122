"""Results tables of a replay: summary rows and the Arrow tables of docs/results-format.md."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ztrace.format import SCHEMAS
from ztrace.replay.costs import CostModel
from ztrace.replay.ingest import (
    N_SN,
    SN_BIN,
    SN_CLS,
    SN_OBJ_ALLOC,
    SN_OBJ_USED,
    SN_PAGES,
    STD_KEY,
    AllocGroup,
)
from ztrace.replay.locks import MODE_TYPES, N_MODES, LockDesign
from ztrace.replay.locks._sim import (
    CS_ACQ,
    CS_CONT,
    CS_WAIT,
    N_TL,
    S_ACQ,
    S_CONT,
    S_HOLD,
    S_WAIT,
    S_WMAX,
    S_WMIN,
    SC_OPS,
    TL_ACQ,
    TL_CONT,
    TL_OPS,
    TL_WAIT,
    hist_quantile,
)
from ztrace.replay.locks._state import SimState


@dataclass
class ReplayResult:
    """What a replay produced.

    ``summary``: one dict per design (``lock_design, ops, acquisitions, contended,
    contention_rate, wait_ns_total, wait_ns_avg, wait_ns_p50, wait_ns_p99, wait_ns_max,
    hold_ns_total, pages_used_peak, makespan_ns``). ``tables``: results-file stem -> Arrow
    table, as in docs/results-format.md. ``meta``: the run's parameters (Parquet metadata).
    """

    summary: list[dict[str, Any]]
    tables: dict[str, pa.Table]
    meta: dict[str, str]
    counters: dict[str, int] = field(default_factory=dict)
    cost_model: CostModel = field(default_factory=CostModel)
    #: cost term -> where it came from (measured / fitted / default), see CostModel
    cost_provenance: dict[str, str] = field(default_factory=dict)


_U64 = pa.uint64()


def _typed(stem: str, columns: dict[str, list[Any]]) -> pa.Table:
    """``columns`` (name -> values) as the results table ``stem``: its schema's columns, in its
    order, with its types (ztrace.format.results.SCHEMAS)."""
    return pa.table({k: pa.array(columns[k], t) for k, t in SCHEMAS[stem].items()})


def build_tables(
    designs: list[LockDesign],
    sims: list[SimState],
    groups: dict[Any, AllocGroup],
    table: Any,
    bw: int,
    n_bins: int,
) -> tuple[list[dict[str, Any]], dict[str, pa.Table]]:
    summary: list[dict[str, Any]] = []
    by_lock: dict[str, list[Any]] = {k: [] for k in SCHEMAS["locks_by_lock"]}
    by_class: dict[str, list[Any]] = {k: [] for k in SCHEMAS["locks_by_class"]}
    hist_rows: dict[str, list[Any]] = {k: [] for k in SCHEMAS["wait_hist"]}
    tl_parts: list[pa.Table] = []
    pages_cache: dict[tuple[int, int], np.ndarray] = {}
    for d, s in zip(designs, sims, strict=True):
        ls = s.lstats
        acq = int(ls[:, S_ACQ].sum())
        cont = int(ls[:, S_CONT].sum())
        wait = int(ls[:, S_WAIT].sum())
        key = d.allocator_key
        if key not in pages_cache:
            pages_cache[key] = groups[key].pages_timeline(n_bins)
        pages = pages_cache[key]
        summary.append(
            {
                "lock_design": d.name,
                "ops": int(s.sc[SC_OPS]),
                "acquisitions": acq,
                "contended": cont,
                "contention_rate": cont / acq if acq else 0.0,
                "wait_ns_total": wait,
                "wait_ns_avg": wait / cont if cont else 0.0,
                "wait_ns_p50": hist_quantile(s.hist, 0.50),
                "wait_ns_p99": hist_quantile(s.hist, 0.99),
                "wait_ns_max": int(ls[:, S_WMAX].max()) if len(ls) else 0,
                "hold_ns_total": int(ls[:, S_HOLD].sum()),
                "pages_used_peak": int(pages.max()) if len(pages) else 0,
                # when the last op finished (replay clock); >> the trace span = saturated
                "makespan_ns": int(s.cpu_free.max()) if len(s.cpu_free) else 0,
            }
        )
        for row in np.flatnonzero(ls[:, S_ACQ]):
            lid, mode = divmod(int(row), N_MODES)
            is_sub = lid % (1 + d.n_sub) != 0
            by_lock["lock_design"].append(d.name)
            by_lock["lock"].append(d.lock_name(lid))
            # the zspage lock (lid n_locks): an rwlock_t up to 6.14, its writers counted
            plain = lid != d.n_locks and (is_sub or d.pool_lock_type == "spinlock")
            by_lock["lock_type"].append("spinlock" if plain else MODE_TYPES[mode])
            by_lock["acquisitions"].append(int(ls[row, S_ACQ]))
            by_lock["contended"].append(int(ls[row, S_CONT]))
            by_lock["wait_ns_total"].append(int(ls[row, S_WAIT]))
            by_lock["wait_ns_max"].append(int(ls[row, S_WMAX]))
            by_lock["wait_ns_min"].append(int(ls[row, S_WMIN]) if ls[row, S_CONT] else 0)
            by_lock["hold_ns_total"].append(int(ls[row, S_HOLD]))
        for c in np.flatnonzero(s.cstats[:, CS_ACQ]):
            by_class["lock_design"].append(d.name)
            by_class["class_idx"].append(int(c))
            by_class["class_size"].append(int(table.size[c]))
            by_class["acquisitions"].append(int(s.cstats[c, CS_ACQ]))
            by_class["contended"].append(int(s.cstats[c, CS_CONT]))
            by_class["wait_ns_total"].append(int(s.cstats[c, CS_WAIT]))
        for k in np.flatnonzero(s.l2h):
            hist_rows["lock_design"].append(d.name)
            hist_rows["bucket_lo_ns"].append(1 << int(k))
            hist_rows["bucket_hi_ns"].append((1 << (int(k) + 1)) - 1)
            hist_rows["count"].append(int(s.l2h[k]))
        tl = (
            s.tl[:n_bins]
            if s.tl.shape[0] >= n_bins
            else np.vstack([s.tl, np.zeros((n_bins - s.tl.shape[0], N_TL), dtype=np.int64)])
        )
        tl_parts.append(
            pa.table(
                {
                    "lock_design": pa.array([d.name] * n_bins, pa.string()),
                    "bin_start_ns": pa.array(np.arange(n_bins, dtype=np.uint64) * np.uint64(bw)),
                    "bin_ns": pa.array(np.full(n_bins, bw, dtype=np.uint64)),
                    "ops": pa.array(tl[:, TL_OPS].astype(np.uint64)),
                    "acquisitions": pa.array(tl[:, TL_ACQ].astype(np.uint64)),
                    "contended": pa.array(tl[:, TL_CONT].astype(np.uint64)),
                    "wait_ns_total": pa.array(tl[:, TL_WAIT].astype(np.uint64)),
                    "pages_used": pa.array(pages.astype(np.uint64)),
                }
            )
        )
    tables: dict[str, pa.Table] = {}
    tables["locks_summary"] = pa.table(
        {
            "lock_design": pa.array([r["lock_design"] for r in summary], pa.string()),
            **{
                k: pa.array([r[k] for r in summary], _U64)
                for k in ("ops", "acquisitions", "contended")
            },
            "contention_rate": pa.array([r["contention_rate"] for r in summary], pa.float64()),
            "wait_ns_total": pa.array([r["wait_ns_total"] for r in summary], _U64),
            "wait_ns_avg": pa.array([r["wait_ns_avg"] for r in summary], pa.float64()),
            **{
                k: pa.array([r[k] for r in summary], _U64)
                for k in (
                    "wait_ns_p50",
                    "wait_ns_p99",
                    "wait_ns_max",
                    "hold_ns_total",
                    "pages_used_peak",
                    "makespan_ns",
                )
            },
        }
    )
    tables["locks_by_lock"] = _typed("locks_by_lock", by_lock)
    tables["locks_by_class"] = _typed("locks_by_class", by_class)
    tables["wait_hist"] = _typed("wait_hist", hist_rows)
    tables["timeline"] = pa.concat_tables(tl_parts)
    snaps = groups[STD_KEY].snaps
    sn = np.vstack(snaps) if snaps else np.zeros((0, N_SN), dtype=np.int64)
    tables["classes"] = pa.table(
        {
            "bin_start_ns": pa.array(sn[:, SN_BIN].astype(np.uint64) * np.uint64(bw)),
            "class_idx": pa.array(sn[:, SN_CLS].astype(np.int16)),
            "class_size": pa.array(table.size[sn[:, SN_CLS]].astype(np.uint32)),
            "obj_allocated": pa.array(sn[:, SN_OBJ_ALLOC].astype(np.uint64)),
            "obj_used": pa.array(sn[:, SN_OBJ_USED].astype(np.uint64)),
            "pages_used": pa.array(sn[:, SN_PAGES].astype(np.uint64)),
        }
    )
    return summary, tables


def write_results(
    result: ReplayResult,
    out_dir: str | os.PathLike[str],
    extra_tables: dict[str, pa.Table] | None = None,
    *,
    force: bool = False,
    inputs: tuple[str | os.PathLike[str], ...] = (),
    extra_summary: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``result`` (plus e.g. LRU tables) as a results directory; see ztrace.format.results.

    ``force`` and ``inputs`` go to the safe writer: an existing directory is replaced whole
    only with ``force``, and never onto or inside an input (issue 11). ``extra_summary``
    adds keys to summary.json (e.g. ``intervals`` from ``--replicas``)."""
    from ztrace.format import write_results_dir

    tables = dict(result.tables)
    if extra_tables:
        tables.update(extra_tables)
    summary: dict[str, Any] = {
        "locks": result.summary,
        "counters": result.counters,
        "cost_model": json.loads(result.cost_model.to_json()),
        "cost_provenance": result.cost_provenance,
        **(extra_summary or {}),
    }
    return write_results_dir(out_dir, tables, result.meta, summary, force=force, inputs=inputs)
