"""Where a matrix cell's measured wait goes, and what the replay predicts against its parts.

A diagnosis for ``check cross-kernel --matrix`` (issue 10, docs/validation.md session 28),
not the issue's metric: the verdicts stay on the measured total wait. Each run's zsmalloc
slowpath waits are split by :func:`ztrace.vm.contention.wait_parts` into the probe pair's
own cost (measured on a free lock, ``-s probewait``), the waits that had no holder to wait
for, the long waits behind a stalled holder, and the rest (``held``), the waits behind a
holder that a model of the holds speaks to. Same kernel only: the replay of a run's own
trace under its own kernel's design, against that run's parts.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

#: the parts, in the order they come off the measured wait
PARTS = ("probe", "without_holder", "long", "held")


class _Run(Protocol):
    trace: Path
    wait_parts: dict[str, Any] | None


def cell_wait_parts(
    cell: str,
    kernel: str,
    runs: Mapping[int, _Run],
    design: str,
    pred: Mapping[Path, dict[str, dict[str, Any]]],
) -> dict[str, Any] | None:
    """Median share of each part in the measured wait over the cell's runs on ``kernel``,
    and the replay's total wait against ``held`` and against ``held`` + ``long``; None
    when no run has parts (the probe pair's cost was not measured on this kernel)."""
    rows = []
    for rep, r in sorted(runs.items()):
        if r.wait_parts is None or r.trace not in pred:
            continue
        ns = r.wait_parts["ns"]
        total = sum(ns[p] for p in PARTS)
        if not total:
            continue
        pw = pred[r.trace][design]["wait_ns_total"]["value"]
        rows.append(
            {"rep": rep, "share": {p: ns[p] / total for p in PARTS}, "predicted_ns": pw}
            | {"held_ns": ns["held"], "held_long_ns": ns["held"] + ns["long"]}
        )
    if not rows:
        return None

    def ratio(key: str) -> tuple[float | None, list[float] | None]:
        rs = [x["predicted_ns"] / x[key] for x in rows if x[key]]
        return (statistics.median(rs) if rs else None), ([min(rs), max(rs)] if rs else None)

    held, held_spread = ratio("held_ns")
    both, both_spread = ratio("held_long_ns")
    first = next(r for r in runs.values() if r.wait_parts is not None).wait_parts
    return {
        "scenario": cell,
        "kernel": kernel,
        "design": design,
        "runs": len(rows),
        "share": {p: statistics.median(x["share"][p] for x in rows) for p in PARTS},
        "ratio_held": held,
        "ratio_held_interval": held_spread,
        "ratio_held_long": both,
        "ratio_held_long_interval": both_spread,
        "probe_cost_ns": first["probe_cost_ns"] if first else None,
        "source": first["source"] if first else None,
        "per_run": rows,
    }


def parts_markdown(parts: list[dict[str, Any]]) -> list[str]:
    """The parts table (lines to append to the matrix table); empty without parts."""
    if not parts:
        return []

    def r(x: float | None, s: list[float] | None) -> str:
        return "—" if x is None or s is None else f"{x:.3g} [{s[0]:.3g}–{s[1]:.3g}]"

    out = [
        "",
        "Where the measured wait goes, same kernel (a diagnosis, not the issue's metric): "
        "median share of the zsmalloc slowpath wait over the runs that is the probe pair's "
        "own cost (measured on a free lock: `ztrace check probewait`), waits no other "
        "thread's call could have caused, waits of 20 µs or more behind a holder, and the "
        "rest behind a holder (*held*); then the replay's total wait ÷ *held*, and ÷ *held* "
        "plus the long waits (median [min–max] over the runs).",
        "",
        "| cell | kernel (design) | probe | without holder | long | held "
        "| replay ÷ held | replay ÷ (held + long) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in parts:
        sh = p["share"]
        kern = p["kernel"]
        out.append(
            f"| {p['scenario']} | {kern} (`{p['design']}`) "
            + "".join(f"| {sh[k]:.2f} " for k in PARTS)
            + f"| {r(p['ratio_held'], p['ratio_held_interval'])} "
            f"| {r(p['ratio_held_long'], p['ratio_held_long_interval'])} n={p['runs']} |"
        )
    return out
