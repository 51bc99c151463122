"""Where every cost of a replay came from (issue 10 item 2): the one reader of it.

The replay stores, per cost term, whether its value was ``measured`` (the trace's own
durations), ``fitted`` (a median of them) or a ``default`` — plus where the lock-hold share,
stalls, probe overhead and stopped time came from — as ``cost_provenance`` in
``summary.json`` and as the Parquet metadata ``ztrace.cost_provenance`` (JSON). ``report``,
the dashboard and the TCG-guest flag (:mod:`ztrace.look.verdict`) all read it here.

One replay has one provenance for all its designs. Results read together from several
directories (``ztrace dashboard A/ B/``) may hold designs of different replays; their
reader then stores ``cost_provenance_by_design`` (design -> provenance, in memory only) and
:func:`by_design` prefers it.
"""

from __future__ import annotations

import json
from typing import Any

from ztrace.format import Results

#: summary.json key (and, prefixed ``ztrace.``, Parquet metadata key) of the provenance
KEY = "cost_provenance"
#: in-memory summary key of results combined from several replays: design -> provenance
BY_DESIGN = "cost_provenance_by_design"

#: tables whose ``lock_design`` column names the replayed designs, most telling first
_DESIGN_TABLES = ("locks_summary", "locks_interval", "timeline", "wait_hist", "locks_by_lock")


def _as_provenance(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def cost_provenance(results: Results) -> dict[str, str]:
    """Cost term -> where it came from; ``summary.json`` first, else the Parquet metadata
    (in-memory results of ``ztrace dashboard TRACE`` carry only the latter); ``{}`` for
    results written before issue 10 or with no replay (a summarised trace)."""
    prov = _as_provenance(results.summary.get(KEY))
    if prov:
        return prov
    raw = results.meta.get(f"ztrace.{KEY}")
    if not raw:
        return {}
    try:
        return _as_provenance(json.loads(raw))
    except ValueError:
        return {}


def designs(results: Results, *, meta: bool = True) -> list[str]:
    """The replayed lock designs named by the results' tables, in the order they first
    appear, else (with ``meta``) by the ``ztrace.lock_designs`` metadata."""
    found: dict[str, None] = {}
    for name in _DESIGN_TABLES:
        if results.has(name):
            col = results[name]["lock_design"].unique(maintain_order=True)
            found.update(dict.fromkeys(str(d) for d in col.to_list()))
    if found:
        return list(found)
    raw = results.meta.get("ztrace.lock_designs", "") if meta else ""
    return [d for d in raw.split(",") if d]


def by_design(results: Results) -> dict[str, dict[str, str]]:
    """Design -> its provenance, for every replayed design that has one."""
    common = cost_provenance(results)
    per = results.summary.get(BY_DESIGN)
    per = per if isinstance(per, dict) else {}
    out: dict[str, dict[str, str]] = {}
    for d in designs(results):
        prov = _as_provenance(per.get(d)) or common
        if prov:
            out[d] = prov
    return out


def grouped(results: Results) -> list[tuple[list[str], dict[str, str]]]:
    """The designs grouped by identical provenance, groups in the designs' order: one group
    when every design came from one replay (always, for one results directory)."""
    groups: list[tuple[list[str], dict[str, str]]] = []
    for d, prov in by_design(results).items():
        for names, p in groups:
            if p == prov:
                names.append(d)
                break
        else:
            groups.append(([d], prov))
    return groups


def combine(parts: list[Results]) -> dict[str, dict[str, str]]:
    """For results read together from several directories: design -> provenance, taken from
    the directory whose tables hold that design (the first one, if several do); ``{}`` when
    all agree (the combined summary's single provenance then says it all)."""
    out: dict[str, dict[str, str]] = {}
    for r in parts:
        prov = cost_provenance(r)
        if prov:
            for d in designs(r, meta=False):
                out.setdefault(d, prov)
    distinct = {json.dumps(p, sort_keys=True) for p in out.values()}
    return out if len(distinct) > 1 else {}
