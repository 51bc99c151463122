"""``validate cross-kernel --matrix DIR``: the ratio tables over repeated, interleaved VM runs.

``ztrace vm matrix`` leaves ``DIR/<cell>/<kernel>/rNN/`` per run: the capture (``trace/``),
the guest's pool layout and zsstress log, and ``trace.kernel/contention.json``, which marks the
run finished. This module recomputes what the kernel measured from each trace with
ztrace/vm/contention.py (zsmalloc's contended acquisitions and their total wait, attributed by
stack and lock address, spinlock slowpath kprobe included), replays every trace under both
kernels' lock designs, and reduces the runs to the issue-10 table, per cell and metric:

* same kernel: run *i* of kernel A replayed under A's design against run *i*'s measurement;
* cross kernel: run *i* of kernel A replayed under B's design against run *i* of kernel B.
  Runs with the same index were booted back to back (ABAB, ztrace/vm/matrix.py), so the
  pair saw the same host load as nearly as the harness can make it.

Per pair row: ``ratio`` is the **median of the per-run ratios** predicted ÷ measured, and
``ratio_interval`` their [min, max] (the spread over runs); runs whose measurement is 0 have
no ratio and are counted in ``zero_measured`` (their predictions stay in ``per_run``).
``predicted``/``measured`` are medians over the runs, ``interval`` is the [min, max] of the
predictions over runs and replicas (the same meaning as in the single-pair rows of
:mod:`ztrace.checks.crosskernel`), ``runs`` is how many runs gave a ratio.

Nothing is cached: the table is recomputed from the stored traces each time, so a model change
shows up in the next run of the command.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ztrace.checks.crosskernel import METRICS, design_for_kernel
from ztrace.checks.waitparts import cell_wait_parts, parts_markdown
from ztrace.errors import ConfigError, ZtraceError
from ztrace.format import read_meta
from ztrace.replay.hold_ends import DEFAULT_END
from ztrace.vm.contention import summarize

#: issue 10's targets; never widened here (docs/validation.md says where they are missed)
TARGETS = {"same kernel": (0.75, 1.33), "cross kernel": (0.5, 2.0)}


@dataclass
class Run:
    cell: str
    kernel: str
    rep: int
    trace: Path
    release: str
    measured: dict[str, float]
    lost_events: int
    #: the slowpath probe's own share of each measured wait, and the zsmalloc wait less it
    #: (ztrace/vm/contention.py probe_floor); None without enough slowpath rows
    probe_floor_ns: int | None = None
    wait_less_floor_ns: int | None = None
    #: where the measured zsmalloc wait goes (ztrace/vm/contention.py wait_parts); None
    #: where the probe pair's cost was not measured on this kernel
    wait_parts: dict[str, Any] | None = None


#: key of the diagnosis "predicted / measured total wait less the run's probe floor" (pairs
#: of ``wait_ns_total``; the wait-per-contention rows use the same name)
LESS_FLOOR = "ratio_less_floor"


def find_runs(root: str | Path, cells: Sequence[str] | None = None) -> list[Run]:
    """Every finished run under a matrix directory (those with a contention sidecar)."""
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"{base}: not a directory (expected `ztrace vm matrix -o DIR` output)")
    runs: list[Run] = []
    for side in sorted(base.glob("*/*/r[0-9]*/trace.kernel/contention.json")):
        rdir = side.parent.parent
        cell, kernel = rdir.parent.parent.name, rdir.parent.name
        if cells and cell not in cells:
            continue
        try:
            # recomputed, not read from the sidecar: the table follows today's attribution
            c = summarize(rdir)
            release = read_meta(rdir / "trace").kernel_release
        except (OSError, ValueError, ZtraceError) as exc:
            raise ConfigError(f"{rdir / 'trace'}: {exc}") from None
        z = c.get("zsmalloc", {})
        runs.append(
            Run(
                cell=cell,
                kernel=kernel,
                rep=int(rdir.name[1:]),
                trace=rdir / "trace",
                release=release,
                measured={m: float(z.get(m, 0)) for m in METRICS},
                lost_events=int(c.get("lost_events", 0)),
                probe_floor_ns=c.get("probe_floor_ns"),
                wait_less_floor_ns=z.get("wait_ns_less_probe_floor"),
                wait_parts=z.get("wait_parts"),
            )
        )
    if not runs:
        raise ConfigError(f"{base}: no finished runs (no */*/rNN/trace.kernel/contention.json)")
    return runs


def _predict(
    runs: list[Run],
    designs: list[str],
    replicas: int,
    seed: int,
    log: Callable[[str], None],
    **kw: Any,
) -> tuple[dict[Path, dict[str, dict[str, Any]]], list[str]]:
    from ztrace.replay.interval import replay_interval

    pred: dict[Path, dict[str, dict[str, Any]]] = {}
    notes: list[str] = []
    for i, r in enumerate(runs, 1):
        log(f"[{i}/{len(runs)}] replay {r.cell} {r.kernel} r{r.rep:02d} under {','.join(designs)}")
        try:
            res = replay_interval(r.trace, locks=designs, runs=replicas, seed=seed, **kw)
        except ZtraceError as exc:
            notes.append(f"{r.cell} {r.kernel} r{r.rep:02d}: not replayed: {exc}")
            continue
        pred[r.trace] = res.designs
        held = res.first.cost_provenance.get("hold_share")
        if held and held not in notes:
            notes.append(held)
    return pred, notes


def _spread(xs: list[float]) -> list[float] | None:
    return [min(xs), max(xs)] if xs else None


def _verdict(
    kind: str, ratio: float | None, direction: bool | None, predicted: float, measured: float
) -> str:
    if ratio is None:
        # every run measured 0: the model must predict (near) zero too; "near" is not
        # defined by the issue, so only an exact 0 passes
        if measured == 0:
            return "zero case met" if predicted == 0 else "zero case missed"
        return "not measurable"
    lo, hi = TARGETS[kind]
    ok = lo <= ratio <= hi and (kind == "same kernel" or direction is not False)
    return "met" if ok else "missed"


def matrix_pairs(
    root: str | Path,
    *,
    cells: Sequence[str] | None = None,
    replicas: int = 1,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
    hold_share: float | None = None,
    hold_end: str = DEFAULT_END,
    stalls: bool = True,
    closed_loop: bool = True,
) -> dict[str, Any]:
    """``{"pairs": [...], "notes": [...]}`` over every cell of the matrix at ``root``.

    ``hold_share``/``hold_end``/``stalls``/``closed_loop``: see
    :func:`ztrace.replay.engine.replay` (a ``hold_share`` is an experiment, labelled in the
    notes)."""
    runs = find_runs(root, cells)
    kernels = sorted({r.kernel for r in runs}, key=lambda k: tuple(map(int, k.split("."))))
    release = {k: next(r.release for r in runs if r.kernel == k) for k in kernels}
    design = {k: design_for_kernel(release[k]) for k in kernels}
    designs = list(dict.fromkeys(design.values()))
    model = {"stalls": stalls, "closed_loop": closed_loop}
    pred, notes = _predict(
        runs, designs, replicas, seed, log, hold_share=hold_share, hold_end=hold_end, **model
    )
    off = [t for t, on in (("no stalls", stalls), ("open loop", closed_loop)) if not on]
    if off:
        notes.append(f"model: {', '.join(off)} (not the default)")
    by: dict[tuple[str, str], dict[int, Run]] = {}
    for r in runs:
        if r.trace in pred:
            by.setdefault((r.cell, r.kernel), {})[r.rep] = r
    pairs: list[dict[str, Any]] = []
    for cell in sorted({r.cell for r in runs}):
        for src in kernels:
            for tgt in kernels:
                a, b = by.get((cell, src), {}), by.get((cell, tgt), {})
                reps = sorted(set(a) & set(b))
                if not reps:
                    continue
                for metric in METRICS:
                    pairs.append(
                        _pair(cell, metric, a, b, reps, design[src], design[tgt], pred)
                        | {"trace_kernel": release[src], "target_kernel": release[tgt]}
                    )
    waits = [
        w
        for cell in sorted({r.cell for r in runs})
        for k in kernels
        if (w := _wait_per_contention(cell, k, by.get((cell, k), {}), design[k], pred))
    ]
    parts = [
        w
        for cell in sorted({r.cell for r in runs})
        for k in kernels
        if (w := cell_wait_parts(cell, k, by.get((cell, k), {}), design[k], pred))
    ]
    lost = sum(r.lost_events for r in runs)
    notes.append(
        f"{len(runs)} runs under {root}; {lost} events lost in all (see each run's footer)"
    )
    return {
        "pairs": pairs,
        "wait_per_contention": waits,
        "wait_parts": parts,
        "notes": notes,
        "replicas": replicas,
        "targets": TARGETS,
    }


def _wait_per_contention(
    cell: str, kernel: str, a: dict[int, Run], d: str, pred: dict[Path, dict[str, dict[str, Any]]]
) -> dict[str, Any] | None:
    """Same kernel, one cell: the replay's wait per contended acquisition against the
    measured one, raw and less the slowpath probe's floor (a diagnosis, not a target: it
    separates "each wait is too short" from "too many contentions"). Runs where either side
    has no contention, or the run has no floor, are left out."""
    rows = []
    for i, r in sorted(a.items()):
        p = pred[r.trace][d]
        pc, pw = p["contended"]["value"], p["wait_ns_total"]["value"]
        mc = r.measured["contended"]
        if not (pc and mc) or r.wait_less_floor_ns is None or r.probe_floor_ns is None:
            continue
        rows.append(
            {
                "rep": i,
                "predicted_ns": pw / pc,
                "measured_ns": r.measured["wait_ns_total"] / mc,
                "measured_less_floor_ns": r.wait_less_floor_ns / mc,
                "probe_floor_ns": r.probe_floor_ns,
            }
        )
    if not rows:
        return None

    def med(key: str) -> float:
        return float(statistics.median(x[key] for x in rows))

    def ratio(key: str) -> tuple[float | None, list[float] | None]:
        rs = [x["predicted_ns"] / x[key] for x in rows if x[key]]
        return (statistics.median(rs) if rs else None), _spread(rs)

    raw, raw_spread = ratio("measured_ns")
    less, less_spread = ratio("measured_less_floor_ns")
    return {
        "scenario": cell,
        "kernel": kernel,
        "design": d,
        "runs": len(rows),
        "predicted_ns": med("predicted_ns"),
        "measured_ns": med("measured_ns"),
        "measured_less_floor_ns": med("measured_less_floor_ns"),
        "probe_floor_ns": med("probe_floor_ns"),
        "ratio": raw,
        "ratio_interval": raw_spread,
        LESS_FLOOR: less,
        "ratio_less_floor_interval": less_spread,
        "per_run": rows,
    }


def _pair(
    cell: str,
    metric: str,
    a: dict[int, Run],
    b: dict[int, Run],
    reps: list[int],
    own: str,
    d: str,
    pred: dict[Path, dict[str, dict[str, Any]]],
) -> dict[str, Any]:
    kind = "same kernel" if a is b else "cross kernel"
    per_run: list[dict[str, Any]] = []
    for i in reps:
        p = pred[a[i].trace][d][metric]
        m = b[i].measured[metric]
        row = {
            "rep": i,
            "predicted": p["value"],
            "interval": p["interval"],
            "measured": m,
            "ratio": p["value"] / m if m else None,
        }
        less = b[i].wait_less_floor_ns
        if metric == "wait_ns_total" and less:
            # the same wait with the slowpath probe's own floor taken out of every measured
            # wait: what the kernel waited without the probe (a diagnosis, not the target)
            row[LESS_FLOOR] = p["value"] / less
        if kind == "cross kernel":
            row["predicted_own_design"] = pred[a[i].trace][own][metric]["value"]
            row["measured_own_kernel"] = a[i].measured[metric]
        per_run.append(row)
    ratios = [r["ratio"] for r in per_run if r["ratio"] is not None]
    preds = [r["predicted"] for r in per_run]
    meas = [r["measured"] for r in per_run]
    ratio = statistics.median(ratios) if ratios else None
    out: dict[str, Any] = {
        "scenario": cell,
        "design": d,
        "metric": metric,
        "predicted": statistics.median(preds),
        "measured": statistics.median(meas),
        "ratio": ratio,
        "interval": [
            min(r["interval"][0] for r in per_run),
            max(r["interval"][1] for r in per_run),
        ],
        "ratio_interval": _spread(ratios),
        "measured_interval": _spread(meas),
        "runs": len(ratios),
        "zero_measured": len(per_run) - len(ratios),
        "kind": kind,
    }
    direction: bool | None = None
    if kind == "cross kernel":
        # the predicted change (other design vs own design, same traces) against the measured
        # change (target kernel vs the trace's own kernel, back-to-back runs), on the medians
        dp = out["predicted"] - statistics.median(r["predicted_own_design"] for r in per_run)
        dm = out["measured"] - statistics.median(r["measured_own_kernel"] for r in per_run)
        direction = (dp > 0) - (dp < 0) == (dm > 0) - (dm < 0)
        out["predicted_change"], out["measured_change"] = dp, dm
        out["direction_right"] = direction
    less_floor = [r[LESS_FLOOR] for r in per_run if LESS_FLOOR in r]
    if less_floor:
        out[LESS_FLOOR] = statistics.median(less_floor)
        out[f"{LESS_FLOOR}_interval"] = _spread(less_floor)
    out["target"] = list(TARGETS[kind])
    out["verdict"] = _verdict(kind, ratio, direction, out["predicted"], out["measured"])
    out["per_run"] = per_run
    return out


def _short(release: str) -> str:
    m = re.match(r"\d+\.\d+", release)
    return m.group(0) if m else release


def _ratio(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _cell_text(p: dict[str, Any]) -> str:
    """One table cell: median ratio [min–max] over n runs, the verdict in words."""
    if p["ratio"] is None:
        pred = p["predicted"]
        if p["metric"] == "wait_ns_total":
            return f"measured 0, predicted {pred / 1e6:.3g} ms ({p['verdict']})"
        return f"measured 0, predicted {pred:.3g} ({p['verdict']})"
    lo, hi = p["ratio_interval"]
    txt = f"{_ratio(p['ratio'])} [{_ratio(lo)}–{_ratio(hi)}] n={p['runs']}"
    if p["zero_measured"]:
        txt += f" (+{p['zero_measured']} measured 0)"
    verdict = "**missed**" if p["verdict"] == "missed" else p["verdict"]
    if "direction_right" in p:
        verdict += ", direction " + ("right" if p["direction_right"] else "**wrong**")
    return f"{txt}, {verdict}"


def markdown(res: dict[str, Any]) -> str:
    """docs/validation.md's ratio table: per cell and metric, the four predictions' median
    ratio predicted ÷ measured with its [min–max] over the runs, and the verdict."""
    pairs = res["pairs"]
    kernels = sorted(
        {p["trace_kernel"] for p in pairs}, key=lambda r: tuple(map(int, _short(r).split(".")))
    )
    cols = [(a, b) for a in kernels for b in kernels if a == b] + [
        (a, b) for a in kernels for b in kernels if a != b
    ]
    design = {p["target_kernel"]: p["design"] for p in pairs}
    head = [
        f"{'same' if a == b else 'cross'}: {_short(a)} trace → {_short(b)} (`{design[b]}`)"
        for a, b in cols
    ]
    rows = [
        "| cell | metric | " + " | ".join(head) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    by = {(p["scenario"], p["metric"], p["trace_kernel"], p["target_kernel"]): p for p in pairs}
    for cell in sorted({p["scenario"] for p in pairs}):
        for metric in METRICS:
            texts = [
                _cell_text(by[(cell, metric, a, b)]) if (cell, metric, a, b) in by else "no runs"
                for a, b in cols
            ]
            name = "total wait" if metric == "wait_ns_total" else "contended"
            rows.append(f"| {cell} | {name} | " + " | ".join(texts) + " |")
            if metric == "wait_ns_total":
                less = [by.get((cell, metric, a, b), {}) for a, b in cols]
                if any(LESS_FLOOR in p for p in less):
                    rows.append(
                        f"| {cell} | *total wait less floor* | "
                        + " | ".join(
                            _ratio_text(p.get(LESS_FLOOR), p.get(f"{LESS_FLOOR}_interval"))
                            for p in less
                        )
                        + " |"
                    )
    if any(LESS_FLOOR in p for p in pairs):
        rows += [
            "",
            "*Total wait less floor* is a diagnosis, not the issue's metric (no verdict): "
            "the prediction against the measured total wait with the run's slowpath probe "
            "floor taken out of each of its waits, which a kernel without the probe would "
            "not wait.",
        ]
    waits = res.get("wait_per_contention") or []
    if waits:
        rows += [
            "",
            "Wait per contended acquisition, same kernel (µs; medians over runs; ratio = "
            "replay ÷ measured, median [min–max] of the per-run ratios). *Less floor*: each "
            "slowpath row less the run's probe floor (1st percentile of its slowpath rows).",
            "",
            "| cell | kernel (design) | replay | measured | measured less floor (floor) "
            "| ratio | ratio less floor |",
            "|---|---|---|---|---|---|---|",
        ]
        for w in waits:
            rows.append(
                f"| {w['scenario']} | {_short(w['kernel'])} (`{w['design']}`) "
                f"| {w['predicted_ns'] / 1e3:.2f} | {w['measured_ns'] / 1e3:.2f} "
                f"| {w['measured_less_floor_ns'] / 1e3:.2f} ({w['probe_floor_ns'] / 1e3:.2f}) "
                f"| {_ratio_text(w['ratio'], w['ratio_interval'])} "
                f"| {_ratio_text(w['ratio_less_floor'], w['ratio_less_floor_interval'])} "
                f"n={w['runs']} |"
            )
    rows += parts_markdown(res.get("wait_parts") or [])
    return "\n".join(rows)


def _ratio_text(r: float | None, spread: list[float] | None) -> str:
    if r is None or spread is None:
        return "—"
    return f"{_ratio(r)} [{_ratio(spread[0])}–{_ratio(spread[1])}]"
