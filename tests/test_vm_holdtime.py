"""The hold-time calibration scenario in a real guest (issue 10: ``ztrace vm run -s holdtime``).

Boots the 6.1 guest under TCG and measures how long zsmalloc's pool lock is held inside
zs_malloc/zs_free/zs_map_object (ztrace/checks/holdtime.py). ~10 min under load (boot, BCC's
compile, 3 x 3 probe rounds), hence ``vm_long``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_vm import _REASON
from ztrace.vm import run as vmrun


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.vm_long
def test_holdtime_measures_a_hold_shorter_than_the_call(tmp_path: Path) -> None:
    if _REASON:
        pytest.skip(_REASON)
    vmrun.build_image()
    out = tmp_path / "hold"
    # trace=1: the same load under the real capture too, in the same boot (session 14)
    guest = vmrun.GuestOptions(params={"rounds": "3", "ops": "3000", "trace": "1"}, timeout=1500)
    vmrun.run_scenario("6.1", "holdtime", out, guest)
    res = json.loads((out / "holdtime.json").read_text())
    assert res["kernel"].startswith("6.1.")
    b_rounds = [r for r in res["rounds"] if r["config"] == "B"]
    for kind in ("malloc", "free"):
        k = res["kinds"][kind]
        assert k["family"] == "_raw_spin_lock"
        # one lock, 6.1's pool->lock (mm/zsmalloc.c: zs_malloc, zs_free), in every call. The
        # probes track only a lock the zs_* function itself asks for (its return address in
        # the function's text; session 18). Before, the first lock of any caller was tracked:
        # a lock the call's callees took first became the call's lock in 1-3 of ~1,055
        # mallocs per round on a quiet host, and in over 1 % in one CI run, which failed here.
        # Interrupts' locks are not tracked either (IRQ stack: zh_task_context, session 8)
        assert all(r[kind]["lock_addresses"] == 1 for r in b_rounds)
        assert all(r[kind]["top_lock_share"] == 1.0 for r in b_rounds)
        # the callees' lock requests are counted instead (0-2 per round in session 18)
        assert all(0 <= r[kind]["other_lock_calls"] <= r[kind]["calls"] for r in b_rounds)
        lo, hi = k["share"]
        # zs_malloc allocates its handle before spin_lock(), zs_free frees it after
        # spin_unlock(): the hold is a part of the call, never all of it. That holds for
        # the hold without the probes' own in-window cost (the bracket's low end); the high
        # end keeps that cost (~0.9 us, a third of a call) and is measured in another round
        # than the call, so it may pass 1 (a CI run gave 1.0077 for one kind)
        assert 0 <= lo < 1 and lo <= hi
        assert k["hold_ns"][0] < k["dur_ns"] and k["hold_ns"][0] <= k["hold_ns"][1]
        # where the hold sits (session 15): the lock is asked for after the call's entry and
        # released before its return, so both gaps are a real part of the call in round B
        for gap in ("request_share", "release_share"):
            assert 0 < k[gap] < 1, (kind, gap, k[gap])
        assert k["request_ns"] > 0 and k["release_ns"] > 0
    # the slowpath probe (session 23) counts only a spin lock the zs_* function asked for: one
    # zsstress thread on a pool of its own meets no other holder (a shrinker's zs_compact of
    # this pool is the one exception the kernel allows, hence not a strict 0)
    for r in res["rounds"]:
        for kind in ("malloc", "free", "map"):
            assert r[kind].get("contended_calls", 0) <= 2, (r["round"], kind, r[kind])
    # the same boot's shares go beside its capture, where every replay looks first
    assert json.loads((out / "trace.kernel" / "holdtime.json").read_text()) == res
    # the capture round: the rounds' load once more, under the capture's own probes
    from ztrace.format.trace import open_trace

    tr = open_trace(out / "trace")
    assert tr.meta.kernel_release == res["kernel"] and tr.meta.lost_events == 0
    t = tr.read(columns=["event", "duration_ns"]).table
    for event in ("zs_malloc", "zs_free"):
        rows = zip(t["event"].to_pylist(), t["duration_ns"].to_pylist(), strict=True)
        d = [v for e, v in rows if e == event]
        # one thread, ops=3000 (1,312 mallocs at seed 1 on 6.1 this session), every call timed
        assert len(d) > 1000 and all(v is not None and v > 0 for v in d)


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.vm_long
def test_holdtime_with_contention_checks_its_shares_in_the_same_boot(tmp_path: Path) -> None:
    """Four zsstress threads on one size class (6.1: one pool lock): the calibration's rounds
    count the kernel's own contended calls, and ``check holds`` replays the same boot's
    capture at each end of the measured bracket (session 23)."""
    if _REASON:
        pytest.skip(_REASON)
    from ztrace.checks.holdshare import check_holds

    vmrun.build_image()
    out = tmp_path / "hold4"
    params = {"rounds": "2", "ops": "3000", "trace": "1", "threads": "4", "size_fixed": "1024"}
    vmrun.run_scenario("6.1", "holdtime", out, vmrun.GuestOptions(params=params, timeout=1500))
    res = json.loads((out / "holdtime.json").read_text())
    kinds = ("malloc", "free", "map")
    # four threads on one pool lock contend, when the guest's two vCPUs run at the same time
    # (hundreds of calls a round A on a quiet host). Under CI, beside another guest, one whole
    # round A once counted 0 while the rounds after it counted 222-1,400: so the calibration
    # as a whole must count contention, its rounds A together too, not each round
    counted = {
        r["round"]: sum(r[k].get("contended_calls", 0) for k in kinds) for r in res["rounds"]
    }
    assert sum(counted.values()) > 0, counted
    assert sum(counted[r["round"]] for r in res["rounds"] if r["config"] == "A") > 0, counted
    for r in res["rounds"]:
        for k in kinds:
            # a contended call spent time in the slowpath, and only a contended call did
            row = r[k]
            assert (row["contended_calls"] > 0) == (row["slowpath_wait_ns"] > 0), (r["round"], k)
            assert row["contended_calls"] <= row["calls"]
    for kind in ("malloc", "free"):
        assert "contended_calls_a" in res["kinds"][kind]
        placed = res["kinds"][kind].get("stall_in_hold")
        # the long calls' extra time, switched-out time taken off (session 23: about the
        # hold share lies inside the hold)
        if placed is not None:
            assert placed["share"] >= 0 and placed["excess_ns"] > 0
            assert 0 <= placed["calls_mostly_inside"] <= placed["long_calls"]
    got = check_holds(out / "trace")
    assert got["design"] == "pool" and got["threads"] == 4
    assert got["measured"]["contended"] > 0
    ends = {r["end"]: r for r in got["predicted"]}
    assert set(ends) == {"low", "mid", "high"}
    for r in ends.values():
        assert str(out / "trace.kernel" / "holdtime.json") in r["hold_share"]
        assert r["ratio_contended"] == round(r["contended"] / got["measured"]["contended"], 3)
    # a longer hold never makes less contention on this load
    assert ends["low"]["contended"] <= ends["mid"]["contended"] <= ends["high"]["contended"]
