"""``check locks``' summary over interleaved rounds, worked out by hand (no root needed).

The kernel run itself is tests/test_validate_locks.py; this checks the arithmetic that turns
its rows into the median ratio and min-max spread the CLI prints.
"""

from __future__ import annotations

from typing import Any

from ztrace.checks.locks import summarize
from ztrace.look.tables import render_lock_check

CONFIGS = [("calibration", 4, 0), ("validation", 4, 4), ("validation", 2, 4)]


def _pred(contended: float, wait: float) -> dict[str, Any]:
    return {"contended": 10, "wait_ns": 1000, "ratio_contended": contended, "ratio_wait": wait}


def _rows(ratios: list[tuple[float, float, float, float]]) -> list[dict[str, Any]]:
    """One round per tuple: (4 writers contended, wait, 2 writers contended, wait)."""
    rows: list[dict[str, Any]] = []
    for r, (c4, w4, c2, w2) in enumerate(ratios):
        base = {"round": r, "ops_malloc": 5, "ops_free": 5, "lost_events": 0}
        base |= {"contended": 10, "wait_ns": 1000}
        rows.append(
            base
            | {"config": 0, "role": "calibration", "writers": 4, "discard_every": 0}
            | {"default": _pred(0.1, 0.01), "fitted": _pred(1.0, 0.7)}
        )
        rows.append(
            base
            | {"config": 1, "role": "validation", "writers": 4, "discard_every": 4}
            | {"default": _pred(0.1, 0.01), "calibrated": _pred(c4, w4)}
        )
        rows.append(
            base
            | {"config": 2, "role": "validation", "writers": 2, "discard_every": 4}
            | {"default": _pred(0.2, 0.02), "calibrated": _pred(c2, w2)}
        )
    return rows


def test_summary_is_the_median_over_rounds_with_its_spread() -> None:
    # round 1 is the outlier a loaded host gives: the median ignores it, the spread shows it
    rows = _rows([(2.0, 2.5, 1.5, 3.0), (11.0, 10.4, 0.1, 0.05), (3.0, 2.0, 1.0, 2.0)])
    s = summarize(rows, CONFIGS, prediction="calibrated")
    got = [(x["writers"], x["metric"], x["ratio"], x["interval"]) for x in s]
    assert got == [
        (4, "contended", 3.0, [2.0, 11.0]),
        (4, "wait_ns_total", 2.5, [2.0, 10.4]),
        (2, "contended", 1.0, [0.1, 1.5]),
        (2, "wait_ns_total", 2.0, [0.05, 3.0]),
    ]
    assert s[0]["ratios"] == [2.0, 11.0, 3.0]  # in round order
    # the default prediction is summarized the same way (--no-calibrate judges it)
    d = summarize(rows, CONFIGS, prediction="default")
    assert [x["ratio"] for x in d] == [0.1, 0.01, 0.2, 0.02]


def test_even_rounds_take_the_mean_of_the_middle_two() -> None:
    s = summarize(
        _rows([(1.0, 1.0, 1.0, 1.0), (3.0, 5.0, 1.0, 1.0)]), CONFIGS, prediction="calibrated"
    )
    assert [x["ratio"] for x in s[:2]] == [2.0, 3.0]


def test_the_table_prints_each_round_and_the_summary() -> None:
    rows = _rows([(2.0, 2.5, 1.5, 3.0), (11.0, 10.4, 0.1, 0.05), (3.0, 2.0, 1.0, 2.0)])
    res = {
        "host": {"kernel": "6.18.0", "cpus": 2},
        "rounds": 3,
        "hold_caps": True,
        "runs": rows,
        "hold_scales": [3.0, 2.5, 3.5],
        "hold_scale": 3.0,
        "summary": summarize(rows, CONFIGS, prediction="calibrated"),
        "notes": ["a note"],
    }
    text = render_lock_check(res)
    assert "3 interleaved round(s), hold-time scale median 3.00" in text
    assert "(per round 3.00, 2.50, 3.50); holds capped by each CPU's traced gap" in text
    assert len([ln for ln in text.splitlines() if "calibrated" in ln and "." in ln]) >= 6
    assert "4 writers, discard every 4: contended      (calibrated) 3.00 [2.00, 11.00]" in text
    assert "2 writers, discard every 4: wait_ns_total  (calibrated) 2.00 [0.05, 3.00]" in text
    assert text.rstrip().endswith("note: a note")


def test_hold_caps_by_hand() -> None:
    """Two CPUs, stamps interleaved in the table: each CPU's caps come from its own rows."""
    import numpy as np

    from ztrace.checks.locks import hold_caps

    big = 1 << 40
    # CPU 0: malloc 0, free 400, free 560 (a discard burst), malloc 2000
    # CPU 1: free 100 (its first row: nothing before it), malloc 150, malloc 900
    ts = np.array([0, 100, 150, 400, 560, 900, 2000])
    cpu = np.array([0, 1, 1, 0, 0, 1, 0])
    free = np.array([False, True, False, True, True, False, False])
    assert hold_caps(ts, cpu, free).tolist() == [400, big, 750, 400, 160, big, big]
    # out of order in the table: the caps follow time, not row order
    rev = slice(None, None, -1)
    assert hold_caps(ts[rev], cpu[rev], free[rev]).tolist() == [big, big, 160, 400, 750, big, 400]
