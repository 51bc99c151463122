"""Issue 10, session 25: stalls inside lock holds and the closed-loop replay, by hand.

Every number below can be worked out on paper. The lock core is fed directly (the
``pool`` design: malloc and free each hold ``pool`` for their cost, one step), then the
rate and the caps are read from a calibration and from a trace through the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ztrace.errors import ConfigError
from ztrace.format import TraceMeta, make_events, write_trace
from ztrace.replay import stalls
from ztrace.replay.costs import C_STALL_NS, C_STALL_RATE, STALL_RATE_BITS, CostModel
from ztrace.replay.engine import replay
from ztrace.replay.holds import HoldShares
from ztrace.replay.locks import M_SPIN, N_MODES, OP_FREE, OP_MALLOC, get_design
from ztrace.replay.locks._sim import OPEN_LOOP, S_ACQ, S_CONT, S_HOLD, S_WAIT
from ztrace.replay.locks._state import SimState

Row = tuple[int, int, int, int]  # (arrival ns, cpu, kind, cost ns)


def _run(rows: list[Row], credit: list[int] | None = None, **stall: int) -> SimState:
    """Feed ``rows`` to the ``pool`` design; ``credit=None`` = open loop; ``stall``:
    ``every_ns`` (holds this long or longer are always stalled) and ``stall_ns``."""
    cm = np.concatenate(
        [CostModel().as_array(), HoldShares().as_array(), stalls.Stalls().as_array()]
    )
    if stall:
        cm[C_STALL_RATE] = (1 << STALL_RATE_BITS) // stall["every_ns"]
        cm[C_STALL_NS] = stall["stall_ns"]
    s = SimState(get_design("pool"), 2, 255, cm, False, seed=stall.get("seed", 0))
    a = np.array(rows, dtype=np.int64)
    z = np.zeros(len(a), dtype=np.int64)
    cr = None if credit is None else np.array(credit, dtype=np.int64)
    s.feed(a[:, 0], a[:, 1], a[:, 2], z, z, a[:, 3], z, z, z, credit=cr, final=True)
    return s


def _pool(s: SimState) -> tuple[int, int, int, int]:
    """(acquisitions, contended, wait ns, hold ns) of the pool spinlock."""
    r = 0 * N_MODES + M_SPIN
    return tuple(int(x) for x in s.lstats[r, [S_ACQ, S_CONT, S_WAIT, S_HOLD]])  # type: ignore[return-value]


# CPU0 holds the pool 0..1,000 (a malloc); CPU1's malloc at 500 waits 500 (holds to 1,100);
# CPU1's free was traced at 2,000 and CPU0's free at 2,450, each holding 100.
ROWS: list[Row] = [
    (0, 0, OP_MALLOC, 1000),
    (500, 1, OP_MALLOC, 100),
    (2000, 1, OP_FREE, 100),
    (2450, 0, OP_FREE, 100),
]


def test_open_loop_runs_every_op_when_traced() -> None:
    # CPU1's free at 2,000 (to 2,100) and CPU0's at 2,450 never meet: one wait, 500
    s = _run(ROWS)
    assert _pool(s)[:3] == (4, 1, 500)
    assert s.lag.tolist() == [-OPEN_LOOP, -OPEN_LOOP]  # never late


def test_closed_loop_makes_the_cpus_next_op_as_late_as_its_wait() -> None:
    # CPU1 waited 500 that its traced call did not: its free starts at 2,500, after CPU0's
    # free took the pool at 2,450, and waits 50 (to 2,550, holds to 2,650)
    s = _run(ROWS, credit=[0, 0, 0, 0])
    assert _pool(s)[:3] == (4, 2, 550)
    assert int(s.cpu_free[1]) == 2650
    # the free started 500 late and waited 50: the CPU is 550 late when the trace ends
    assert s.lag.tolist() == [0, 550]


def test_closed_loop_credits_what_the_traced_call_spent_not_working() -> None:
    # CPU1's traced malloc had itself waited (or been stalled) 400 ns that the replay took
    # out of it: only 500 - 400 = 100 of the replay's wait is new, so its free starts at
    # 2,100 (to 2,200): no second wait. A credit past the lateness never makes an op early.
    s = _run(ROWS, credit=[0, 400, 0, 0])
    assert _pool(s)[:3] == (4, 1, 500)
    assert int(s.cpu_free[1]) == 2200
    s = _run(ROWS, credit=[0, 5000, 0, 0])
    assert _pool(s)[:3] == (4, 1, 500) and int(s.cpu_free[1]) == 2100
    # the CPU ran 4,500 ahead of its trace: it starts no op early, but keeps the lead
    assert int(s.lag[1]) == -4500
    # the open-loop credit is the same as no credit array
    assert _pool(_run(ROWS, credit=[int(OPEN_LOOP)] * 4)) == _pool(_run(ROWS))


def test_time_ahead_of_the_trace_is_used_up_by_a_later_delay() -> None:
    # CPU1's traced malloc spent 800 not working and the replay's waits 500: CPU1 is 300
    # ahead. Its free (traced 2,000) starts at 2,000, not earlier, and waits 50 for CPU0's
    # free (1,950..2,050): still 250 ahead, so its op traced at 3,000 starts at 3,000
    # (3,000..3,100) and CPU0's at 3,020 waits 80 for it. Without the lead (lag >= 0) CPU1
    # would be 50 late: at 3,050, after CPU0 (3,020..3,120), waiting 70.
    rows: list[Row] = [
        (0, 0, OP_MALLOC, 1000),
        (500, 1, OP_MALLOC, 100),
        (1950, 0, OP_FREE, 100),
        (2000, 1, OP_FREE, 100),
        (3000, 1, OP_MALLOC, 100),
        (3020, 0, OP_MALLOC, 100),
    ]
    s = _run(rows, credit=[0, 800, 0, 0, 0, 0])
    assert _pool(s)[:3] == (6, 3, 500 + 50 + 80)
    assert int(s.cpu_free[1]) == 3100 and int(s.cpu_free[0]) == 3200
    assert s.lag.tolist() == [80, -250]


def test_a_stalled_hold_holds_the_lock_for_the_stall_too() -> None:
    # Every hold of 100 ns or more is stalled 5,000 ns (open loop). CPU0 holds 0..6,000.
    # CPU1's malloc at 500 waits 5,500 and holds 6,000..11,100. Both frees queue behind
    # their CPU's malloc: CPU0's (traced 2,450) asks at 6,000 and waits 5,100 for CPU1's
    # malloc, holding 11,100..16,200; CPU1's asks at 11,100 and waits 5,100 for it.
    s = _run(ROWS, every_ns=100, stall_ns=5000)
    acq, cont, wait, hold = _pool(s)
    # holds: 4 x (cost + 5,000) = 1,000 + 100 + 100 + 100 + 20,000
    assert (acq, hold) == (4, 21_300)
    assert (cont, wait) == (3, 5_500 + 5_100 + 5_100)
    # no stall: the open-loop numbers above
    assert _pool(_run(ROWS, every_ns=100, stall_ns=0))[:3] == (4, 1, 500)


def test_stalls_land_at_the_measured_rate_and_are_the_same_every_run() -> None:
    # 2,000 holds of 50 ns, far apart on one CPU, at a rate of one stall per 100 ns of
    # hold: each is stalled with probability 1/2 (a 53-bit hash of the seed, the op and
    # its step); the count is binomial(2000, 1/2): 1,000 +- 67 at 3 sigma
    rows: list[Row] = [(i * 10_000_000, 0, OP_MALLOC, 50) for i in range(2000)]
    got = []
    for seed in (0, 1):
        s = _run(rows, every_ns=100, stall_ns=1_000_000, seed=seed)
        stalled = (_pool(s)[3] - 2000 * 50) // 1_000_000
        assert 1000 - 67 <= stalled <= 1000 + 67
        assert _pool(_run(rows, every_ns=100, stall_ns=1_000_000, seed=seed)) == _pool(s)
        got.append(stalled)
    assert got[0] != got[1]  # another seed, other draws


def _calibration(**stall_in_hold: object) -> dict:
    # malloc: 1,000 calls, raw hold 1,000 ns, median call 2,000 ns; free: median 1,600 ns
    return {
        "malloc": {
            "share": [0.1, 0.5],
            "hold_ns": [200.0, 1000.0],
            "dur_ns": 2000.0,
            "samples": 1000,
            "stall_in_hold": {"long_calls": 10, "excess_ns": 1_000_000, "share": 0.5}
            | stall_in_hold,
        },
        "free": {"share": [0.1, 0.5], "hold_ns": [200.0, 800.0], "dur_ns": 1600.0},
    }


def test_rate_and_length_from_a_calibration_by_hand(tmp_path: Path) -> None:
    # half of 10 long calls' excess lies inside the hold: 5 in-hold stalls in 1,000 holds of
    # 1,000 ns (1 ms): 5,000 per second of hold; their excess 0.5 x 1 ms over 5 = 100 µs.
    # The caps are 5x each kind's median; malloc_grow, not calibrated, takes malloc's.
    got = stalls.from_calibration(_calibration(), tmp_path / "h.json", "6.1.0-57-amd64")
    assert (round(got.per_s), got.mean_ns, got.caps) == (5000, 100_000, (10_000, 10_000, 8_000))
    assert got.source.startswith("measured on 6.1.0-57-amd64: ")
    # in the core's fixed point: 5,000 / 1e9 per ns x 2^53
    assert got.as_array()[0] == round(5e-6 * 2**53)
    # a calibration from before session 23 has no stall_in_hold: no stalls, no caps
    old = _calibration()
    del old["malloc"]["stall_in_hold"]
    assert stalls.from_calibration(old, tmp_path / "h.json", "x") == stalls.Stalls()
    with pytest.raises(ConfigError, match="malformed stall_in_hold"):
        stalls.from_calibration(_calibration(share="x"), tmp_path / "h.json", "x")


K61 = "6.1.0-57-amd64"


def _trace_with_calibration(tmp_path: Path, free_ns: list[int], malloc_ns: int) -> Path:
    """CPU0: a zs_malloc at 10,000 measured ``malloc_ns``; CPU1: a zs_malloc at 10,500
    (10 ns); then zs_free calls of ``free_ns`` on CPU1 from 1 ms on, 100 µs apart."""
    n = len(free_ns)
    out = tmp_path / "t"
    write_trace(
        out,
        make_events(
            ts_ns=[0, 10_000, 10_500] + [1_000_000 + 100_000 * i for i in range(n)],
            event=["zs_malloc"] * 3 + ["zs_free"] * n,
            cpu=[0, 0, 1] + [1] * n,
            size_bytes=[100, 100, 100] + [0] * n,
            handle=[1, 2, 3] + [3] * n,  # one real free of handle 3; the rest unmatched
            duration_ns=[100, malloc_ns, 10, *free_ns],
        ),
        TraceMeta(kernel_release=K61, nr_cpus=2),
    )
    side = tmp_path / "t.kernel"
    side.mkdir()
    (side / "holdtime.json").write_text(json.dumps({"kernel": K61, "kinds": _calibration()}))
    return out


BARE = CostModel(write_after_malloc=False, alloc_zspage_ns=0, lookup_ns=20)


def test_a_traced_call_past_its_cap_holds_only_up_to_the_cap(tmp_path: Path) -> None:
    # CPU0's malloc was measured at 30,000 ns: past the cap (10,000) it was stalled. At the
    # low share (0.1) it holds 1,000 (to 11,000): CPU1 at 10,500 waits 500. Uncapped
    # (--no-stalls: no stall model at all), it holds 3,000: CPU1 waits 2,500.
    tr = _trace_with_calibration(tmp_path, [1000] * 10, 30_000)
    r = replay(tr, locks=["pool"], cost_model=BARE)
    assert (r.summary[0]["contended"], r.summary[0]["wait_ns_total"]) == (1, 500)
    # the trace's 10 frees of 1,000 ns, none past 8,000: no stall in the trace, none injected
    assert r.cost_provenance["stalls"].startswith(
        "measured in the trace: 0 of its 10 zs_free calls ran past 8000 ns"
    )
    off = replay(tr, locks=["pool"], cost_model=BARE, stalls=False)
    assert (off.summary[0]["contended"], off.summary[0]["wait_ns_total"]) == (1, 2500)
    assert "stalls" not in off.cost_provenance


def test_the_rate_is_measured_in_the_trace_when_it_has_frees(tmp_path: Path) -> None:
    # 8 frees of 1,000 ns and 2 of 21,000: 2 past the cap (8,000) in 50,000 ns of zs_free
    # time: 40,000 per second; each 21,000 - 1,600 (the calibration's median) = 19,400 ns
    tr = _trace_with_calibration(tmp_path, [1000] * 8 + [21_000] * 2, 2000)
    r = replay(tr, locks=["pool"], cost_model=BARE)
    assert r.cost_provenance["stalls"].startswith(
        "measured in the trace: 2 of its 10 zs_free calls ran past 8000 ns (5x the "
        "calibration's median), 40000 per second of call time, 19.4 µs past the median each"
    )


def test_cli_turns_the_closed_loop_and_the_stalls_off(tmp_path: Path) -> None:
    from tests.conftest import run_cli
    from tests.test_holds import _trace as holds_trace

    # the by-hand trace of test_holds (no calibration: no stalls): CPU1 waits 500 at
    # 10,500; closed loop, its next op waits 180 (680 in all), open loop 680 (1,180)
    tr = holds_trace(tmp_path, "6.1.0-0-test-amd64")
    waits = {}
    for flags in ((), ("--open-loop",), ("--no-stalls", "--open-loop")):
        out = run_cli("replay", str(tr), "--locks", "pool", "--json", "-q", *flags)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)["locks"][0]
        waits[flags] = (got["contended"], got["wait_ns_total"])
    # the default cost model holds a little more than BARE (write after malloc etc.), so
    # compare the loop's effect, not the numbers of test_holds
    assert waits[()][1] < waits[("--open-loop",)][1]
    assert waits[("--open-loop",)] == waits[("--no-stalls", "--open-loop")]
