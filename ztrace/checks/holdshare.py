"""``check holds``: the hold share against the contention of the same boot (issue 10).

The replay holds a lock for a *share* of each measured zs_malloc/zs_free duration, measured
on the trace's kernel by the calibration scenario as a bracket [low, high]
(:mod:`ztrace.checks.holdtime`, :mod:`ztrace.replay.holds`). The VM matrix compares its
predictions with captures from other boots, where the probes' speed differs by up to 2-3x
(docs/validation.md, session 14). This check removes that: ``ztrace vm run -k 6.1 -s
holdtime -p threads=4 -p size_fixed=1024 -p trace=1`` measures the shares and then captures
the same load in one boot, and the harness puts the shares beside the capture
(``trace.kernel/holdtime.json``). Here the capture is replayed under its own kernel's design
at each end of the bracket and held against the contention that capture measured (the
spinlock slowpath rows attributed to zsmalloc, as in ``check cross-kernel``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ztrace.checks.crosskernel import design_for_kernel, measured
from ztrace.errors import ConfigError
from ztrace.format import read_meta
from ztrace.replay.hold_ends import ENDS


def _ratio(p: int, m: int | None) -> float | None:
    return round(p / m, 3) if m else None


def check_holds(trace: str | os.PathLike[str], *, seed: int = 0) -> dict[str, Any]:
    """Predicted against measured contention of ``trace`` at each end of the hold-share
    bracket measured in the same boot (``<trace>.kernel/holdtime.json``)."""
    from ztrace.replay.engine import replay

    release = read_meta(trace).kernel_release  # refuses a path that is not a trace first
    cal_path = Path(str(trace) + ".kernel") / "holdtime.json"
    if not cal_path.is_file():
        raise ConfigError(
            f"{trace}: no {cal_path.name} beside it (the same boot's hold shares: "
            "`ztrace vm run -s holdtime -p trace=1`)"
        )
    try:
        cal = json.loads(cal_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{cal_path}: not a holdtime.json ({exc})") from None
    kinds = cal.get("kinds") if isinstance(cal, dict) else None
    if not isinstance(kinds, dict):
        raise ConfigError(f"{cal_path}: not a holdtime.json (no `kinds` object)")
    design = design_for_kernel(release)
    meas = measured(trace)
    if meas["contended"] is None:
        raise ConfigError(f"{trace}: {meas.get('note', 'no lock probes')}")
    rows = []
    for end in ENDS:
        res = replay(trace, locks=[design], seed=seed, hold_end=end)
        s = res.summary[0]
        rows.append(
            {
                "end": end,
                "hold_share": res.cost_provenance.get("hold_share"),
                "contended": int(s["contended"]),
                "wait_ns_total": int(s["wait_ns_total"]),
                "ratio_contended": _ratio(int(s["contended"]), meas["contended"]),
                "ratio_wait": _ratio(int(s["wait_ns_total"]), meas["wait_ns_total"]),
                "ratio_wait_less_floor": _ratio(
                    int(s["wait_ns_total"]), meas.get("wait_ns_less_probe_floor")
                ),
            }
        )
    return {
        "trace": str(trace),
        "kernel": release,
        "design": design,
        "calibration": str(cal_path),
        "threads": _threads(Path(trace)),
        "measured": {
            k: meas.get(k) for k in ("contended", "wait_ns_total", "wait_ns_less_probe_floor")
        },
        # the calibration's own rounds A: the kernel's contended calls per kind (slowpath)
        "calibration_contended_a": _per_kind(kinds, "contended_calls_a"),
        "stall_in_hold": _per_kind(kinds, "stall_in_hold"),
        "predicted": rows,
    }


def _per_kind(kinds: dict[str, Any], field: str) -> dict[str, Any]:
    """``field`` of each kind of a holdtime.json that has it (absent before session 23).

    >>> _per_kind({"malloc": {"n": 3}, "free": {}, "map": None}, "n")
    {'malloc': 3}
    """
    return {k: v[field] for k, v in kinds.items() if isinstance(v, dict) and field in v}


def _threads(trace: Path) -> int | None:
    """zsstress's ``threads=`` of the run (zsstress.args beside the trace or in its run)."""
    for p in (trace.parent / "zsstress.args", Path(str(trace) + ".kernel") / "zsstress.args"):
        if p.is_file():
            for word in p.read_text(errors="replace").split():
                if word.startswith("threads=") and word[8:].isdigit():
                    return int(word[8:])
    return None


def lines(res: dict[str, Any]) -> list[str]:
    """The check as text: the measured line, then one line per end of the bracket."""
    m = res["measured"]
    lf = m.get("wait_ns_less_probe_floor")
    out = [
        f"{res['trace']}: {res['kernel']} (`{res['design']}`), "
        f"{res['threads'] or '?'} zsstress threads; hold shares from {res['calibration']}",
        f"measured: {m['contended']} contended, {m['wait_ns_total'] / 1e6:.3f} ms wait"
        + (f" ({lf / 1e6:.3f} ms less the probe floor)" if lf is not None else ""),
    ]
    for r in res["predicted"]:
        out.append(
            f"  {r['end']:>4}: {r['contended']} contended ({r['ratio_contended']}x), "
            f"{r['wait_ns_total'] / 1e6:.3f} ms wait ({r['ratio_wait']}x; "
            f"{r['ratio_wait_less_floor']}x less floor)"
        )
    return out
