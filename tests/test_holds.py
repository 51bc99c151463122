"""Issue 10, hold share: the lock is held for the measured share of a call only (by hand).

Every wait below can be worked out on paper. ``BARE`` holds the lock only for the measured
durations (no object write after malloc, no zspage allocation cost, 20 ns lookup). The
traces carry no thread ids, so no witness bounds a hold (ztrace.replay.stops). The replay
is closed-loop (session 25): CPU1 waits W at 10,500, and its call there was traced without
a wait, so its next op (traced at 20,300) starts W later, at 20,300 + W.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ztrace.errors import ConfigError
from ztrace.format import TraceMeta, make_events, write_trace
from ztrace.replay import holds
from ztrace.replay.costs import CostModel
from ztrace.replay.engine import replay

BARE = CostModel(write_after_malloc=False, alloc_zspage_ns=0, lookup_ns=20)
K61 = "6.1.0-57-amd64"
#: a release no calibration names (6.1.0-57 has a shipped one, replays/calibration)
KNONE = "6.1.0-0-test-amd64"


def _write(tmp_path: Path, release: str, extra: dict[str, str] | None = None, **cols: list) -> Path:
    """A two-CPU trace of ``cols`` (make_events columns) captured on ``release``."""
    out = tmp_path / "t"
    meta = TraceMeta(kernel_release=release, nr_cpus=2, extra=extra or {})
    write_trace(out, make_events(**cols), meta)
    return out


def _trace(tmp_path: Path, release: str = K61, extra: dict[str, str] | None = None) -> Path:
    # t=0: a malloc that grows the class's zspage (ends by 100). t=10,000: CPU0's zs_malloc,
    # 1,000 ns measured; t=10,500: CPU1's zs_malloc arrives at the pool lock. t=20,000: CPU0
    # frees, 1,000 ns measured; t=20,300: CPU1 mallocs again.
    return _write(
        tmp_path,
        release,
        extra,
        ts_ns=[0, 10_000, 10_500, 20_000, 20_300],
        event=["zs_malloc", "zs_malloc", "zs_malloc", "zs_free", "zs_malloc"],
        cpu=[0, 0, 1, 0, 1],
        size_bytes=[100, 100, 100, 0, 100],
        handle=[1, 2, 3, 2, 4],
        duration_ns=[100, 1000, 10, 1000, 10],
    )


def _pool(tr: Path, **kw: object) -> tuple[int, int]:
    s = replay(tr, locks=["pool"], cost_model=BARE, **kw).summary[0]  # type: ignore[arg-type]
    return s["contended"], s["wait_ns_total"]


def test_the_whole_call_is_held_when_no_share_was_measured(tmp_path: Path) -> None:
    # malloc at 10,000 holds 1,000: CPU1 at 10,500 waits 500. The free at 20,000 holds
    # 1,000 - 20 (the pool design has no lookup step) = 980, to 20,980: CPU1, 500 late, at
    # 20,800 waits 180.
    tr = _trace(tmp_path, KNONE)
    assert _pool(tr) == (2, 680)
    # open loop (every op when traced): CPU1 at 20,300 waits 680
    assert _pool(tr, closed_loop=False) == (2, 1180)
    prov = replay(tr, locks=["pool"], cost_model=BARE).cost_provenance
    assert prov["hold_share"].startswith("not measured")


def test_an_experiment_share_shortens_every_hold_and_says_so(tmp_path: Path) -> None:
    tr = _trace(tmp_path, KNONE)
    # 0.6: malloc holds 600 (to 10,600): CPU1 waits 100; free holds 600 - 20 = 580 (to
    # 20,580): CPU1 at 20,400 waits 180
    assert _pool(tr, hold_share=0.6) == (2, 280)
    # 0.3: malloc holds 300 (to 10,300), free 280 (to 20,280): nobody waits
    assert _pool(tr, hold_share=0.3) == (0, 0)
    prov = replay(tr, locks=["pool"], cost_model=BARE, hold_share=0.3).cost_provenance
    assert prov["hold_share"].startswith("experiment: fixed share 0.3")


def _calibration(path: Path, release: str, malloc: list[float], free: list[float]) -> None:
    kinds = {"malloc": {"share": malloc}, "free": {"share": free}}
    path.write_text(json.dumps({"kernel": release, "kinds": kinds}))


def test_the_measured_share_of_the_traces_kernel_is_the_default(tmp_path: Path) -> None:
    tr = _trace(tmp_path)
    side = Path(str(tr) + ".kernel")
    side.mkdir()
    # bracket [0.6, 0.8] for malloc (and malloc_grow, which the file lacks), [0.5, 0.9]
    # for free
    _calibration(side / "holdtime.json", K61, [0.6, 0.8], [0.5, 0.9])
    # default, the low end (0.6, 0.5): malloc to 10,600 (wait 100); free 500 - 20 = 480,
    # to 20,480 (CPU1 at 20,400 waits 80)
    assert _pool(tr) == (2, 180)
    prov = replay(tr, locks=["pool"], cost_model=BARE).cost_provenance
    assert prov["hold_share"].startswith(f"measured on {K61}")
    assert "(low of the bracket" in prov["hold_share"]
    # the middle (0.7 both): malloc to 10,700 (wait 200); free 700 - 20 = 680, to 20,680
    # (CPU1 at 20,500 waits 180)
    assert _pool(tr, hold_end="mid") == (2, 380)
    # high: malloc to 10,800 (wait 300); free 900 - 20 = 880, to 20,880 (at 20,600: 280)
    assert _pool(tr, hold_end="high") == (2, 580)
    # an explicit experiment wins over the measurement
    assert _pool(tr, hold_share=0.3) == (0, 0)


def test_a_share_measured_on_another_kernel_is_refused(tmp_path: Path) -> None:
    tr = _trace(tmp_path)
    side = Path(str(tr) + ".kernel")
    side.mkdir()
    _calibration(side / "holdtime.json", "6.12.95+deb12-amd64", [0.5, 0.6], [0.5, 0.6])
    with pytest.raises(ConfigError, match=r"measured on 6\.12\.95"):
        replay(tr, locks=["pool"], cost_model=BARE)


def test_shipped_calibration_is_found_by_release(tmp_path: Path) -> None:
    _calibration(tmp_path / f"holdtime-{K61}.json", K61, [0.25, 0.5], [0.125, 0.5])
    got = holds.find(tmp_path / "no-such-trace", K61, search=tmp_path)  # the low end
    assert (got.malloc_pm, got.grow_pm, got.free_pm) == (250, 250, 125)
    got = holds.find(tmp_path / "no-such-trace", K61, search=tmp_path, end="mid")
    assert (got.malloc_pm, got.free_pm) == (375, 312)  # 0.375, 0.3125 (rounded to even)
    assert holds.find(tmp_path / "x", KNONE, search=tmp_path).whole
    with pytest.raises(ConfigError, match="within"):
        holds.experiment(1.5)


def test_the_shipped_calibrations_are_the_low_end_of_their_measured_bracket() -> None:
    for release in (K61, "6.12.95+deb12-amd64"):
        f = holds.calibration_dir() / f"holdtime-{release}.json"
        kinds = json.loads(f.read_text())["kinds"]
        got = holds.find(Path("no-such-trace"), release)
        name = f"replays/calibration/holdtime-{release}.json"
        assert got.source.startswith(f"measured on {release}: {name} (low of the bracket")
        for k, pm in (
            ("malloc", got.malloc_pm),
            ("malloc_grow", got.grow_pm),
            ("free", got.free_pm),
        ):
            lo, hi = kinds[k]["share"]
            assert 0 <= lo <= hi and pm == max(1, round(lo * 1000))
            assert 0 < pm < 1000  # a part of the call, never all of it


def test_calibration_summary_by_hand() -> None:
    from ztrace.checks.holdtime import summarize

    # round A: 100 zs_malloc calls, durations 1000 + 10 i at percentile i; round B: 80
    # plain (hold 500, call 2000 with the lock probes) and 20 that grew (hold 1000, call
    # 20,000); round C: every hold 200 longer (the extra handlers inside the window)
    a = {
        "config": "A",
        "malloc": {"calls": 100, "dur_ns": 1500.0, "dur_pct": [1000 + 10 * i for i in range(101)]},
    }
    b = {
        "config": "B",
        "malloc": {"calls": 80, "dur_ns": 2000.0, "hold_ns": 500.0},
        "malloc_grow": {"calls": 20, "dur_ns": 20000.0, "hold_ns": 1000.0},
    }
    c = {
        "config": "C",
        "malloc": {"calls": 80, "dur_ns": 2300.0, "hold_ns": 700.0},
        "malloc_grow": {"calls": 20, "dur_ns": 20400.0, "hold_ns": 1200.0},
    }
    s = summarize([a, b, c])
    # a plain malloc's call: the median of the fastest 80 % of round A = percentile 40 = 1400
    assert s["malloc"]["dur_ns"] == 1400
    assert s["malloc"]["share"] == [round(300 / 1400, 4), round(500 / 1400, 4)]
    # a grow's call: its round-B duration less two holds' worth of lock probes, which a
    # plain malloc shows as 2000 - 1400 = 600: 20,000 - 1,200 = 18,800
    assert s["malloc_grow"]["dur_ns"] == 18800
    assert s["malloc_grow"]["share"] == [round(800 / 18800, 4), round(1000 / 18800, 4)]
    # a round-B call held only 150 ns: the probes' in-window cost is at most that, not 200
    b["malloc"]["hold_min_ns"] = 150.0
    s = summarize([a, b, c])
    assert s["malloc"]["probe_in_window_ns"] == 150
    assert s["malloc"]["share"] == [round(350 / 1400, 4), round(500 / 1400, 4)]


def test_a_guest_check_that_finds_what_the_kernel_lacks_says_one_line(capsys) -> None:
    """holdtime.measure raises FeatureMissingError when /proc/kallsyms lacks a zs_* symbol
    (it needs kprobes, so it runs in the guests); the shared command line of the guest checks
    turns that into the project's one line and exit status 2, not a traceback."""
    from ztrace.checks.holdtime import main
    from ztrace.checks.probecost import run_check
    from ztrace.errors import FeatureMissingError

    def measure(cmd: list[str], rounds: int) -> dict[str, object]:
        raise FeatureMissingError("/proc/kallsyms: no symbol for zs_free")

    assert run_check("holdtime", 3, "cycles", measure, ["--", "true"]) is None
    assert capsys.readouterr().err == "ztrace: error: /proc/kallsyms: no symbol for zs_free\n"
    assert main(["--"]) == 2  # no workload: the same one-line path
    assert capsys.readouterr().err == "ztrace: error: holdtime: give a workload command after --\n"


def test_the_map_paths_pool_lock_hold_is_the_measured_one(tmp_path: Path) -> None:
    # t=0: CPU0 mallocs handle 1 (grows a zspage, done by 100). t=10,000: CPU0 maps handle 1
    # to read it (zs_map_object: the pool lock for the lookup, 6.1 mm/zsmalloc.c); its row's
    # duration spans map..unmap and is not the hold. t=10,100: CPU1's zs_malloc (10 ns, all
    # of it held) asks for the pool lock.
    out = _write(
        tmp_path,
        K61,
        ts_ns=[0, 10_000, 10_100],
        event=["zs_malloc", "zs_read", "zs_malloc"],
        cpu=[0, 0, 1],
        size_bytes=[100, 0, 100],
        handle=[1, 1, 2],
        duration_ns=[100, 5_000, 10],
    )
    side = Path(str(out) + ".kernel")
    side.mkdir()
    kinds = {"malloc": {"share": [1.0, 1.0]}, "free": {"share": [1.0, 1.0]}}
    (side / "holdtime.json").write_text(json.dumps({"kernel": K61, "kinds": kinds}))
    # no map window measured: the lookup holds lookup_ns (20, to 10,020): nobody waits
    assert _pool(out) == (0, 0)
    kinds["map"] = {"share": [0.2, 0.9], "hold_ns": [300, 700]}
    (side / "holdtime.json").write_text(json.dumps({"kernel": K61, "kinds": kinds}))
    # measured [300, 700] ns: the low end (the default) holds to 10,300 (CPU1 waits 200),
    # the middle to 10,500 (400), the high end to 10,700 (600); the map row's own 5,000 ns
    # never counts
    assert _pool(out) == (1, 200)
    assert _pool(out, hold_end="mid") == (1, 400)
    assert _pool(out, hold_end="high") == (1, 600)
    prov = replay(out, locks=["pool"], cost_model=BARE).cost_provenance
    assert "map path's pool-lock hold 300 ns" in prov["hold_share"]
    # 6.12's design takes pool->migrate_lock for read there: a malloc (class lock) never
    # waits for it
    s = replay(out, locks=["class"], cost_model=BARE).summary[0]
    assert (s["contended"], s["wait_ns_total"]) == (0, 0)
    kinds["map"] = {"share": [0.2, 0.9]}
    (side / "holdtime.json").write_text(json.dumps({"kernel": K61, "kinds": kinds}))
    with pytest.raises(ConfigError, match="`map` has no hold bracket"):
        replay(out, locks=["pool"], cost_model=BARE)


def test_a_kprobe_calibration_is_not_applied_to_a_fentry_capture(tmp_path: Path) -> None:
    """The shares are fractions of kprobe durations (each carries the kprobe pair's own
    cost); a capture that probed zs_malloc/zs_free with fentry/fexit (``extra.fentry``) holds
    the whole measured duration instead, and the provenance says why. A calibration that was
    itself measured with fentry applies."""
    out = _trace(tmp_path, extra={"fentry": "zs_malloc,zs_free"})
    side = Path(str(out) + ".kernel")
    side.mkdir()
    _calibration(side / "holdtime.json", K61, [0.6, 0.8], [0.5, 0.9])
    got = holds.find(out, K61)
    assert got.whole and got.source.startswith("not measured for fentry: ")
    assert _pool(out) == (2, 680)  # as with no share: the whole calls held (test above)
    assert "fentry" in replay(out, locks=["pool"], cost_model=BARE).cost_provenance["hold_share"]
    cal = json.loads((side / "holdtime.json").read_text())
    (side / "holdtime.json").write_text(json.dumps({**cal, "fentry": "zs_malloc,zs_free"}))
    assert _pool(out) == (2, 180)  # the fentry calibration's low end, as for kprobes above
