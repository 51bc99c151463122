"""The calibration's own contention count and where long calls stall (session 23, issue 10):
``ztrace.checks.holdtime`` with the spinlock slowpath probe, on hand-made call records whose
answers can be worked out on paper."""

from __future__ import annotations

from typing import Any

import pytest

from ztrace.checks.holdtime import round_stats, spin_slowpath, stall_in_hold, summarize
from ztrace.errors import FeatureMissingError

POOL = 0xFFFF_8880_0000_1000


def rec(
    fn: int, dur: int, *, hold: int = 0, slow: int = 0, slow_ns: int = 0, offcpu: int = 0
) -> dict[str, Any]:
    """One call record as holdtime.measure() builds it (a spin hold when ``hold``)."""
    n = 1 if hold else 0
    return {
        "fn": fn,
        "dur": dur,
        "size": 1024,
        "hold": [hold, 0],
        "n": [n, 0],
        "other": [0, 0],
        "lock": [POOL if hold else 0, 0],
        "open": 0,
        "req": [dur // 4 if hold else 0, 0],
        "rel": [dur // 4 if hold else 0, 0],
        "t0": 1_000_000,
        "cpu": 0,
        "slow": slow,
        "slow_ns": slow_ns,
        "offcpu": offcpu,
    }


def test_round_stats_counts_the_contended_calls_and_their_slowpath_time() -> None:
    recs = [
        rec(0, 2000),
        rec(0, 3000, slow=1, slow_ns=900),
        rec(0, 2500, slow=2, slow_ns=1500),  # two slowpath entries: one contended call
        rec(1, 1800),
        rec(1, 4000, slow=1, slow_ns=2000),
        rec(2, 1500),
    ]
    row = round_stats("A", recs)
    assert row["malloc"]["contended_calls"] == 2
    assert row["malloc"]["slowpath_wait_ns"] == 2400
    assert row["free"]["contended_calls"] == 1 and row["free"]["slowpath_wait_ns"] == 2000
    assert row["map"]["contended_calls"] == 0 and row["map"]["slowpath_wait_ns"] == 0


def test_records_from_before_the_slowpath_probe_give_no_count() -> None:
    old = [{k: v for k, v in rec(0, 2000).items() if k not in ("slow", "slow_ns")}]
    assert "contended_calls" not in round_stats("A", old)["malloc"]


def test_round_b_samples_flag_the_contended_calls() -> None:
    recs = [rec(0, 2000, hold=500), rec(0, 5000, hold=600, slow=1, slow_ns=2500, offcpu=7)]
    got = round_stats("B", recs)["malloc"]["samples"]
    assert got == [[500, 2000, 0, 0], [600, 5000, 1, 7]]


def test_stall_in_hold_by_hand() -> None:
    calm = [[100, 1000, 0, 0]] * 9  # median time on a CPU 1,000 ns, median hold 100 ns
    # two long calls (> 5 x 1,000 on a CPU): 9,000 ns of excess each; one holds 5,500 ns
    # (5,400 of its excess inside the hold: over half), the other the usual 100 ns
    long = [[5500, 10_000, 0, 0], [100, 10_000, 0, 0]]
    # a contended call's wait is before its hold: left out, however long
    waited = [[100, 50_000, 1, 0]]
    # switched out for 40,000 of its 41,000 ns: on a CPU for 1,000, not a long call
    slept = [[100, 41_000, 0, 40_000]]
    got = stall_in_hold(calm + long + waited + slept)
    assert got == {"long_calls": 2, "excess_ns": 18_000, "share": 0.3, "calls_mostly_inside": 1}


def test_stall_in_hold_needs_long_calls() -> None:
    assert stall_in_hold([[100, 1000, 0, 0]] * 5) is None
    assert stall_in_hold([[100, 50_000, 1, 0]]) is None  # only contended calls
    assert stall_in_hold([]) is None
    # two-element samples (holdtime.json before session 23) count as uncontended, on a CPU
    got = stall_in_hold([[100, 1000]] * 9 + [[1100, 11_000]])
    assert got is not None and got["share"] == 0.1 and got["calls_mostly_inside"] == 0


def _cycle(contended_a: int, hold_b: float) -> list[dict[str, Any]]:
    a = {"config": "A", "malloc": {"calls": 99, "dur_ns": 2000.0, "contended_calls": contended_a}}
    b = {
        "config": "B",
        "malloc": {
            "calls": 99,
            "dur_ns": 3000.0,
            "hold_ns": hold_b,
            "hold_min_ns": 300,
            "family": "_raw_spin_lock",
            "samples": [[hold_b, 3000, 0, 0]] * 9 + [[hold_b, 30_000, 0, 0]],
        },
    }
    c = {"config": "C", "malloc": {"calls": 99, "dur_ns": 3500.0, "hold_ns": hold_b + 200}}
    return [a, b, c]


def test_summarize_takes_the_median_contended_count_of_rounds_a() -> None:
    s = summarize(_cycle(10, 600.0) + _cycle(40, 600.0) + _cycle(25, 600.0))["malloc"]
    assert s["contended_calls_a"] == 25
    # the long calls' 27,000 ns of excess each lie wholly outside the hold
    assert s["stall_in_hold"] == {
        "long_calls": 3,
        "excess_ns": 81_000,
        "share": 0.0,
        "calls_mostly_inside": 0,
    }
    # the bracket is untouched by the new fields: [600 - 200, 600] / 2,000
    assert s["share"] == [0.2, 0.3]


def test_the_slowpath_name_of_the_kernel() -> None:
    assert spin_slowpath([(1, "queued_spin_lock_slowpath")]) == "queued_spin_lock_slowpath"
    with pytest.raises(FeatureMissingError, match="queued_spin_lock_slowpath"):
        spin_slowpath([(1, "zs_malloc")])
