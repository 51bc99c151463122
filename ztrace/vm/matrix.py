"""The issue-10 scenario set: every workload at two or more concurrency levels, on both guests.

``run_matrix`` boots one guest at a time (TCG guests share the host's cores with everything
else) and interleaves the kernels ABAB within each repetition, alternating which kernel goes
first, so slow stretches of host load hit 6.1 and 6.12 alike. Each run lands in
``OUT/<cell>/<kernel>/rNN/`` with its trace, counters and the measured-contention sidecar
(``trace.kernel/contention.json``, see contention.py); a run directory that already has its
sidecar is kept, so an interrupted matrix resumes where it stopped. ``summarize_matrix`` reduces
the sidecars to median and spread per cell and kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ztrace.vm.run import KERNELS, GuestOptions, VmError, run_scenario


@dataclass(frozen=True)
class Cell:
    """One scenario at one concurrency level."""

    name: str
    scenario: str
    params: dict[str, str] = field(default_factory=dict)


#: At least four workloads, each at two or more concurrency levels (issue 10).
CELLS: tuple[Cell, ...] = (
    Cell("zsstress-none", "zsstress", {"level": "none", "ops": "10000"}),
    Cell("zsstress-light", "zsstress", {"level": "light", "ops": "10000"}),
    Cell("zsstress-heavy", "zsstress", {"level": "heavy", "ops": "10000"}),
    # heavy, but sizes spread over ~100 classes: one pool lock (6.1) vs many class locks (6.12)
    Cell("zsstress-spread", "zsstress", {"level": "spread", "ops": "10000"}),
    # the same loads with zs_compact() every 2 ms beside them (session 31): compaction's
    # pool write holds, per source zspage, and its zspage write lock against the readers
    Cell(
        "zsstress-compact-medium",
        "zsstress",
        {"level": "medium", "ops": "10000", "compact_ms": "2"},
    ),
    Cell(
        "zsstress-compact-spread",
        "zsstress",
        {"level": "spread", "ops": "10000", "compact_ms": "2"},
    ),
    # the matrix measures lock contention: the lock probes, whatever the scenario's default
    Cell("zram-j1", "zram", {"jobs": "1", "mb_per_job": "32", "probes": "zsmalloc,locks"}),
    Cell("zram-j4", "zram", {"jobs": "4", "mb_per_job": "8", "probes": "zsmalloc,locks"}),
    Cell("zram-rw-j1", "zram-rw", {"jobs": "1", "mb_per_job": "32", "runtime": "8"}),
    Cell("zram-rw-j4", "zram-rw", {"jobs": "4", "mb_per_job": "8", "runtime": "8"}),
    Cell("zswap-j1", "zswap", {"jobs": "1", "mb": "96"}),
    Cell("zswap-j4", "zswap", {"jobs": "4", "mb": "96"}),
)


def cells_named(names: Sequence[str] | None) -> list[Cell]:
    """The cells named, or all cells of a scenario named (``zram`` = zram-j1, zram-j4)."""
    if not names:
        return list(CELLS)
    out = [c for c in CELLS if any(n in (c.name, c.scenario) for n in names)]
    unknown = [n for n in names if not any(n in (c.name, c.scenario) for c in CELLS)]
    if unknown:
        raise VmError(
            f"unknown matrix cell {unknown[0]!r}; choose from {', '.join(c.name for c in CELLS)}"
        )
    return out


def run_dir(root: Path, cell: Cell, kernel: str, rep: int) -> Path:
    return root / cell.name / kernel / f"r{rep:02d}"


def plan(cells: Sequence[Cell], reps: int) -> list[tuple[Cell, str, int]]:
    """Run order: repetition by repetition, each cell's two kernels back to back, ABAB."""
    order: list[tuple[Cell, str, int]] = []
    flip = False
    for rep in range(reps):
        for cell in cells:
            ks = list(KERNELS) if not flip else list(reversed(KERNELS))
            order += [(cell, k, rep) for k in ks]
            flip = not flip
    return order


def run_matrix(
    root: str | Path,
    cells: Sequence[Cell],
    reps: int,
    *,
    timeout: float = 900.0,
    on_run: Callable[[Cell, str, int, str], None] | None = None,
) -> list[Path]:
    """Run (or resume) the matrix under ``root``; returns the run directories done."""
    base = Path(root)
    done: list[Path] = []
    for cell, kernel, rep in plan(cells, reps):
        d = run_dir(base, cell, kernel, rep)
        if (d / "trace.kernel" / "contention.json").is_file():
            done.append(d)
            continue
        if d.exists():
            shutil.rmtree(d)  # a half-finished run: start it over
        try:
            run_scenario(
                kernel, cell.scenario, d, GuestOptions(params=dict(cell.params), timeout=timeout)
            )
            status = "ok"
            done.append(d)
        except VmError as exc:
            status = f"failed: {exc}"
        if on_run:
            on_run(cell, kernel, rep, status)
    return done


def run_boots(
    root: str | Path,
    cells: Sequence[Cell],
    reps: int,
    loads_per_boot: int,
    *,
    first_rep: int = 0,
    timeout: float = 1500.0,
    on_run: Callable[[Cell, str, int, str], None] | None = None,
) -> list[Path]:
    """The zsstress cells with several loads per boot (split.py says why and how).

    Boot ``b`` runs every cell ``loads_per_boot`` times, cells interleaved (light heavy light
    heavy ...), under one capture; boots alternate the kernel that goes first (ABAB), as
    :func:`plan` does for single runs. Load ``i`` of the cell's loads in boot ``b`` becomes run
    ``first_rep + b * loads_per_boot + i``, so run *i* of 6.1 and run *i* of 6.12 come from
    back-to-back boots. Boots land in ``OUT/_boots/<kernel>/bNN``; a boot whose loads are all
    split is kept, so the matrix resumes.
    """
    if any(c.scenario != "zsstress" for c in cells):
        raise VmError("several loads per boot: zsstress cells only")
    ops = {c.params.get("ops", "20000") for c in cells}
    # knobs besides the level (e.g. compact_ms) go to every load of the boot: equal in all
    extras = {
        tuple(sorted((k, v) for k, v in c.params.items() if k not in ("level", "ops")))
        for c in cells
    }
    if len(ops) > 1 or len(extras) > 1:
        raise VmError("several loads per boot: the cells may differ only in their level")
    base = Path(root)
    boots = -(-reps // loads_per_boot)
    done: list[Path] = []
    for b in range(boots):
        ks = list(KERNELS) if b % 2 == 0 else list(reversed(KERNELS))
        for kernel in ks:
            dests = [
                run_dir(base, c, kernel, first_rep + b * loads_per_boot + i)
                for i in range(loads_per_boot)
                for c in cells
            ]
            if all((d / "trace.kernel" / "contention.json").is_file() for d in dests):
                done += dests
                continue
            boot = base / "_boots" / kernel / f"b{first_rep + b:02d}"
            if boot.exists():
                shutil.rmtree(boot)
            params = {
                "levels": ",".join(c.params["level"] for c in cells),
                "reps": str(loads_per_boot),
                "ops": next(iter(ops)),
                **dict(next(iter(extras))),
            }
            try:
                run_scenario(kernel, "zsstress", boot, GuestOptions(params=params, timeout=timeout))
                # loads run rep by rep, cells interleaved: dests is in the same order
                from ztrace.vm.split import write_pieces

                done += write_pieces(boot, dests)
                status = "ok"
            except VmError as exc:
                status = f"failed: {exc}"
            if on_run:
                on_run(cells[0], kernel, first_rep + b * loads_per_boot, f"boot {boot}: {status}")
    return done


def _stats(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "min": min(xs),
        "max": max(xs),
        "values": xs,
    }


def summarize_matrix(root: str | Path) -> dict[str, Any]:
    """Per cell and kernel: measured zsmalloc contention over the runs (median, min, max)."""
    base = Path(root)
    out: dict[str, Any] = {}
    for side in sorted(base.glob("*/*/r*/trace.kernel/contention.json")):
        run = side.parent.parent
        kernel, cell = run.parent.name, run.parent.parent.name
        c = json.loads(side.read_text())
        vm = json.loads((run / "vm.json").read_text()) if (run / "vm.json").is_file() else {}
        d = out.setdefault(cell, {}).setdefault(kernel, {"runs": []})
        counts = c.get("event_counts", {})
        d["runs"].append(
            {
                "run": run.name,
                "release": vm.get("release"),
                "contended": c["zsmalloc"]["contended"],
                "wait_ns_total": c["zsmalloc"]["wait_ns_total"],
                "by_kind": {k: v["contended"] for k, v in c.get("by_kind", {}).items()},
                "other_contended": c.get("other", {}).get("contended", 0),
                "zs_ops": sum(
                    counts.get(e, 0) for e in ("zs_malloc", "zs_free", "zs_read", "zs_write")
                ),
                "lost_events": c.get("lost_events", 0),
                "total_s": vm.get("total_s"),
                # the capture's timing check (contention.requests_in_holder_calls)
                "request_in_holder_call": (c["zsmalloc"].get("request_in_holder_call") or {}).get(
                    "share"
                ),
            }
        )
    for cell in out.values():
        for d in cell.values():
            runs = d["runs"]
            d["contended"] = _stats([r["contended"] for r in runs])
            d["wait_ns_total"] = _stats([r["wait_ns_total"] for r in runs])
    return out


def matrix_runs(root: str | Path) -> list[Path]:
    """The finished runs under ``root``: ``<cell>/<kernel>/rNN`` with a known cell and kernel
    and the measured-contention sidecar (what :func:`summarize_matrix` reads)."""
    cells = {c.name for c in CELLS}
    return [
        side.parent.parent
        for side in sorted(Path(root).glob("*/*/r*/trace.kernel/contention.json"))
        if side.parent.parent.parent.name in KERNELS
        and side.parent.parent.parent.parent.name in cells
    ]


def is_matrix_summary(obj: Any) -> bool:
    """Whether ``obj`` (a parsed summary.json) has the shape :func:`summarize_matrix` writes:
    cell -> kernel -> {"runs": [...], "contended": {...}, "wait_ns_total": {...}}."""
    if not isinstance(obj, dict):
        return False
    for kernels in obj.values():
        if not isinstance(kernels, dict) or not kernels:
            return False
        for d in kernels.values():
            if not (
                isinstance(d, dict)
                and isinstance(d.get("runs"), list)
                and isinstance(d.get("contended"), dict)
                and isinstance(d.get("wait_ns_total"), dict)
            ):
                return False
    return True


def check_summary_target(root: str, *, force: bool = False, option: str = "-o") -> None:
    """Refuse to (re)write ``root/summary.json`` with ``--summary-only`` unless ``root`` is a
    matrix output (it has finished runs) and any summary.json there is one ztrace wrote
    (``force``: replace whatever regular file or link is there). Reads only."""
    from ztrace.errors import ConfigError

    shown = root if root else "''"
    if not root:
        raise ConfigError(f"{option} '': give the matrix output directory")
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(
            f"{option} {shown}: no such directory (--summary-only summarises an "
            "existing matrix output)"
        )
    if not matrix_runs(base):
        raise ConfigError(
            f"{option} {shown}: not a ztrace vm matrix output (no "
            "<cell>/<kernel>/rNN/trace.kernel/contention.json)"
        )
    target = base / "summary.json"
    if not os.path.lexists(target) or force:
        return
    ok = False
    if target.is_file() and not target.is_symlink():
        try:
            ok = is_matrix_summary(json.loads(target.read_text()))
        except (OSError, ValueError):
            ok = False
    if not ok:
        raise ConfigError(
            f"{option} {shown}: {target} is not a matrix summary written by ztrace; "
            "not replacing it (--force replaces it)"
        )


def markdown_table(summary: dict[str, Any]) -> str:
    """docs/validation.md rows: cell, kernel, runs, contended and total wait (median [min-max])."""
    rows = [
        "| cell | kernel | runs | zsmalloc contended, median [min–max] "
        "| total wait ms, median [min–max] | zs ops/run (median) | lost events "
        "| requests stamped in a holder's call (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in sorted(summary):
        for kernel in sorted(summary[cell], key=lambda k: tuple(map(int, k.split(".")))):
            d = summary[cell][kernel]
            c, w = d["contended"], d["wait_ns_total"]
            ops = statistics.median([r["zs_ops"] for r in d["runs"]])
            lost = sum(r["lost_events"] for r in d["runs"])
            inside = [s for r in d["runs"] if (s := r.get("request_in_holder_call")) is not None]
            rows.append(
                f"| {cell} | {kernel} | {c['n']} | {c['median']:g} [{c['min']:g}–{c['max']:g}] "
                f"| {w['median'] / 1e6:.2f} [{w['min'] / 1e6:.2f}–{w['max'] / 1e6:.2f}] "
                f"| {ops:g} | {lost} "
                f"| {f'{statistics.median(inside):.2f}' if inside else '—'} |"
            )
    return "\n".join(rows)
