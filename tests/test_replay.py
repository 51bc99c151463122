"""The replay engine end to end: exact small traces, determinism, honest design comparisons,
saturation under --speedup, the CLI and its one-line errors, and the results reader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ztrace.cli.main import main
from ztrace.errors import ConfigError, TraceFormatError
from ztrace.format import TraceMeta, make_events, read_results, write_trace
from ztrace.format.safeio import write_manifest
from ztrace.model.classes import build_classes
from ztrace.replay.costs import CostModel
from ztrace.replay.engine import replay, write_results
from ztrace.workloads.synth import synth, synth_meta

META = TraceMeta(kernel_release="6.18.0", nr_cpus=2)
#: lock holds only; no object write after malloc and free zspage allocation, so waits are
#: easy to check by hand
BARE = CostModel(write_after_malloc=False, alloc_zspage_ns=0, lookup_ns=20)


def _trace(tmp_path: Path, name: str, **cols: object) -> Path:
    out = tmp_path / name
    write_trace(out, make_events(**cols), META)
    return out


@pytest.fixture(scope="module")
def synth_traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 8-CPU synthetic workloads: one hot size class vs sizes spread over classes."""
    d = tmp_path_factory.mktemp("synth")
    out = {}
    for prof in ("hot-class", "spread-classes"):
        t = synth(prof, events=40_000, seed=7, cpus=8)
        write_trace(d / prof, t, synth_meta(prof, cpus=8, seed=7, events=40_000))
        out[prof] = d / prof
    return out


# ------------------------------------------------------------------ exact small traces


def test_two_mallocs_on_different_classes(tmp_path: Path) -> None:
    # Two CPUs each malloc into an empty class 10 ns apart, each measured at 100 ns.
    # Both grow a zspage: lock (20 ns lookup), unlocked alloc (0 ns here), relock. The
    # measured 100 ns already contains the lookup, so the relocked part holds 80 ns.
    # class: different class locks, no wait. pool: CPU1 requests at 10 while CPU0 holds
    # (0..20), gets it at 20 (wait 10) until 40; CPU0's relock at 20 queues behind it
    # (wait 20, 40..120); CPU1's relock at 40 waits for that (wait 80, 120..200).
    tr = _trace(
        tmp_path,
        "t",
        ts_ns=[1000, 1010],
        event=["zs_malloc", "zs_malloc"],
        cpu=[0, 1],
        size_bytes=[100, 2000],
        handle=[1, 2],
        duration_ns=[100, 100],
    )
    res = replay(tr, locks=["class", "pool"], cost_model=BARE)
    s = {r["lock_design"]: r for r in res.summary}
    assert (s["class"]["acquisitions"], s["class"]["contended"], s["class"]["wait_ns_total"]) == (
        4,
        0,
        0,
    )
    assert (
        s["pool"]["acquisitions"],
        s["pool"]["contended"],
        s["pool"]["wait_ns_total"],
        s["pool"]["wait_ns_max"],
        s["pool"]["wait_ns_p50"],
    ) == (4, 3, 10 + 20 + 80, 80, 20)
    assert s["pool"]["hold_ns_total"] == 20 + 20 + 80 + 80  # = the two measured 100 ns
    t = build_classes(8)
    pages = sum(int(t.pages_per_zspage[t.class_for_malloc(x)]) for x in (100, 2000))
    assert s["class"]["pages_used_peak"] == s["pool"]["pages_used_peak"] == pages
    by_class = res.tables["locks_by_class"].to_pylist()
    assert sorted(
        (r["lock_design"], r["class_idx"], r["acquisitions"]) for r in by_class
    ) == sorted([(d, t.class_for_malloc(x), 2) for d in ("class", "pool") for x in (100, 2000)])


def test_malloc_then_free_same_class(tmp_path: Path) -> None:
    # CPU0 mallocs (grows) at 0, measured 100 ns = 20 ns lookup + relocked 20..100; CPU1
    # frees that object at 50 while CPU0's relock holds the class lock: the free's pool
    # read lock (20 ns lookup, shared) is handed over to the class lock at 100: wait
    # 70 -> 100 = 30 ns, in the class design.
    tr = _trace(
        tmp_path,
        "t",
        ts_ns=[0, 50],
        event=["zs_malloc", "zs_free"],
        cpu=[0, 1],
        size_bytes=[100, 0],
        handle=[9, 9],
        duration_ns=[100, 100],
    )
    res = replay(tr, locks=["class"], cost_model=BARE)
    r = res.summary[0]
    assert (r["acquisitions"], r["contended"], r["wait_ns_total"]) == (4, 1, 30)
    rows = {(x["lock"], x["lock_type"]): x for x in res.tables["locks_by_lock"].to_pylist()}
    cls = f"class[{build_classes(8).class_for_malloc(100)}]"
    assert rows[("pool", "rwlock:R")]["acquisitions"] == 1
    assert rows[("pool", "rwlock:R")]["hold_ns_total"] == 100 - 50  # held until hand-over
    assert rows[(cls, "spinlock")]["contended"] == 1
    assert res.counters["mallocs"] == 1 and res.counters["frees"] == 1
    assert res.tables["timeline"].column("pages_used").to_pylist()[-1] == 0


def test_durations_fit_the_cost_model(tmp_path: Path) -> None:
    # Events with duration_ns use it; a trace with measured mallocs fits malloc_ns (median)
    # for those without.
    tr = _trace(
        tmp_path,
        "t",
        ts_ns=[0, 10_000, 20_000, 30_000],
        event=["zs_malloc"] * 4,
        size_bytes=[100] * 4,
        handle=[1, 2, 3, 4],
        duration_ns=[300, 500, 0, 700],
    )
    res = replay(tr, locks=["pool"])
    assert res.cost_model.malloc_ns == 500
    assert res.cost_model.source == "fitted:zs_malloc"
    assert json.loads(res.meta["ztrace.cost_model"])["malloc_ns"] == 500


def test_bad_events_are_counted_not_fatal(tmp_path: Path) -> None:
    tr = _trace(
        tmp_path,
        "t",
        ts_ns=[0, 1, 2, 3],
        event=["zs_free", "zs_malloc", "zs_malloc", "checkpoint"],
        size_bytes=[0, 100, 100, 0],
        handle=[5, 6, 6, 0],
    )
    res = replay(tr, locks=["class"])
    c = res.counters
    assert (c["unmatched_free"], c["dup_malloc"], c["other_events"]) == (1, 1, 1)
    assert res.summary[0]["ops"] == 2


# ------------------------------------------------------------------ determinism


def _hashes(d: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.iterdir())}


def test_same_trace_and_seed_give_identical_files(
    synth_traces: dict[str, Path], tmp_path: Path
) -> None:
    tr = synth_traces["spread-classes"]
    designs = ["class", "pool", "pools:4", "striped:4", "magazine:8"]
    for i in (1, 2):
        res = replay(tr, locks=designs, seed=3, cpus=6, speedup=2.0)
        write_results(res, tmp_path / f"r{i}")
    h1, h2 = _hashes(tmp_path / "r1"), _hashes(tmp_path / "r2")
    assert h1 == h2
    assert set(h1) == {
        "locks_summary.parquet",
        "locks_by_lock.parquet",
        "locks_by_class.parquet",
        "wait_hist.parquet",
        "timeline.parquet",
        "classes.parquet",
        "summary.json",
        "manifest.json",  # issue 11: marks the directory complete
    }
    # another seed spreads events over the 6 CPUs differently
    res3 = replay(tr, locks=["pool"], seed=4, cpus=6, speedup=2.0)
    res1 = read_results(tmp_path / "r1")
    pool1 = [r for r in res1.tables["locks_summary"].to_pylist() if r["lock_design"] == "pool"]
    assert pool1[0]["wait_ns_total"] != res3.summary[0]["wait_ns_total"]


def test_threads_give_the_same_files_as_one_thread(
    synth_traces: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 15: designs and allocator groups on threads, small batches so that a design's
    batch k runs while the groups ingest batch k + 1; the files must not change by a byte."""
    tr = synth_traces["spread-classes"]
    designs = ["class", "pool", "pools:4", "striped:4", "magazine:8"]
    for th in (1, 2, 7):
        res = replay(tr, locks=designs, seed=3, cpus=6, threads=th, batch_rows=4096)
        write_results(res, tmp_path / f"t{th}")
    assert _hashes(tmp_path / "t1") == _hashes(tmp_path / "t2") == _hashes(tmp_path / "t7")


def test_threads_option_and_worker_errors(
    synth_traces: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tr = synth_traces["hot-class"]
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="--threads"):
            replay(tr, locks=["class"], threads=bad)  # type: ignore[arg-type]

    # an error inside a worker thread reaches the caller, and no worker is left running
    import threading

    from ztrace.replay.locks._state import SimState

    def broken(self: SimState, *a: object, **k: object) -> None:
        raise RuntimeError("lock core failed")

    monkeypatch.setattr(SimState, "feed", broken)
    with pytest.raises(RuntimeError, match="lock core failed"):
        replay(tr, locks=["class", "pool"], threads=2, batch_rows=4096)
    assert not [t for t in threading.enumerate() if t.name.startswith("ztrace-")]


# ------------------------------------------------------------------ design comparisons


def _by_design(res: object) -> dict[str, dict]:
    return {r["lock_design"]: r for r in res.summary}  # type: ignore[attr-defined]


def test_pool_beats_class_only_when_cpus_hit_different_classes(
    synth_traces: dict[str, Path],
) -> None:
    # Same 8 CPUs, same rate. When sizes spread over many classes, per-class locks remove
    # almost all waiting that the one pool lock causes. When every op hits one class, the
    # class lock is the pool lock in all but name: waits are of the same order (the pool
    # design still also serialises the object write's lookup on the same lock).
    spread = _by_design(replay(synth_traces["spread-classes"], locks=["class", "pool"]))
    hot = _by_design(replay(synth_traces["hot-class"], locks=["class", "pool"]))
    assert spread["pool"]["wait_ns_total"] > 10 * spread["class"]["wait_ns_total"]
    assert hot["pool"]["wait_ns_total"] < 3 * hot["class"]["wait_ns_total"]
    # ...yet even with every CPU on one hot class, one pool lock contends more: it also
    # serialises zs_free's lookup and the object write, which 6.11+ do under the pool rwlock
    # in read mode (shared) and the zspage lock.
    assert hot["pool"]["contended"] > hot["class"]["contended"]
    assert hot["pool"]["wait_ns_total"] > hot["class"]["wait_ns_total"]
    assert hot["class"]["contention_rate"] > 5 * spread["class"]["contention_rate"]


def test_pools_and_magazines_trade_memory_for_contention(synth_traces: dict[str, Path]) -> None:
    r = _by_design(
        replay(synth_traces["hot-class"], locks=["pool", "pools:32", "class", "magazine:16"])
    )
    assert r["pools:32"]["wait_ns_total"] < r["pool"]["wait_ns_total"] / 5
    assert r["magazine:16"]["wait_ns_total"] < r["class"]["wait_ns_total"] / 5
    # separate pools keep separate partly-filled zspages; magazines hold idle objects
    assert r["pools:32"]["pages_used_peak"] >= r["pool"]["pages_used_peak"]
    assert r["magazine:16"]["pages_used_peak"] >= r["class"]["pages_used_peak"]


def test_every_design_saturates_with_enough_speedup(synth_traces: dict[str, Path]) -> None:
    # Compressing inter-arrival times drives every design into saturation: lock wait per
    # op rises and then plateaus near (CPUs - 1) x hold (each CPU has one request
    # outstanding: a closed system), while the work no longer fits in the trace's time
    # span (makespan >> span): the excess queues in front of the CPUs.
    designs = ["class", "pool", "pools:32", "striped:8", "magazine:16"]
    speeds = (1.0, 10.0, 1000.0)
    res = {k: replay(synth_traces["hot-class"], locks=designs, speedup=k) for k in speeds}
    rows = {k: _by_design(r) for k, r in res.items()}
    for d in designs:
        avg = [rows[k][d]["wait_ns_total"] / rows[k][d]["ops"] for k in speeds]
        assert avg[0] < avg[1] <= avg[2] * 1.01, (d, avg)
        span = int(res[1000.0].meta["ztrace.span_ns"])
        assert rows[1000.0][d]["makespan_ns"] > 2 * span, d
        assert rows[1.0][d]["makespan_ns"] < 1.01 * int(res[1.0].meta["ztrace.span_ns"]) + 10**5
    assert rows[1000.0]["pool"]["contention_rate"] > 0.9
    assert rows[1000.0]["class"]["contention_rate"] > 0.4  # half its locks are shared reads


# ------------------------------------------------------------------ results files


def test_results_files_follow_the_contract(synth_traces: dict[str, Path], tmp_path: Path) -> None:
    res = replay(synth_traces["hot-class"], locks=["class", "pools:4"], seed=1)
    write_results(res, tmp_path / "r")
    back = read_results(tmp_path / "r")
    assert back.meta["ztrace.results_version"] == "1"
    assert back.meta["ztrace.seed"] == "1"
    assert back.summary["locks"] == res.summary
    s = back.tables["locks_summary"].to_pylist()
    assert [r["lock_design"] for r in s] == ["class", "pools:4"]
    tl = back.tables["timeline"]
    assert tl.column("ops").to_numpy().sum() == 2 * res.summary[0]["ops"]
    cl = back.tables["classes"]
    last = cl.filter(pq_equal(cl, "bin_start_ns", int(cl.column("bin_start_ns").to_numpy().max())))
    tl_class = tl.filter(pq_equal(tl, "lock_design", "class"))
    assert (
        int(last.column("pages_used").to_numpy().sum())
        == tl_class.column("pages_used").to_pylist()[-1]
    )
    types = set(back.tables["locks_by_lock"].column("lock_type").to_pylist())
    assert types <= {"spinlock", "rwlock:R", "rwlock:W"}


def pq_equal(table: object, col: str, value: object) -> object:
    import pyarrow.compute as pc

    return pc.equal(table.column(col), value)  # type: ignore[attr-defined]


def test_read_results_rejects_broken_files(tmp_path: Path, synth_traces: dict[str, Path]) -> None:
    with pytest.raises(TraceFormatError, match="no such results directory"):
        read_results(tmp_path / "missing")
    res = replay(synth_traces["hot-class"], locks=["pool"])
    write_results(res, tmp_path / "r")
    f = tmp_path / "r" / "timeline.parquet"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(TraceFormatError, match=r"timeline\.parquet: changed since it was written"):
        read_results(tmp_path / "r")  # the manifest's checksum (issue 11) catches it first
    (tmp_path / "r" / "manifest.json").unlink()
    write_manifest(tmp_path / "r")  # sealed as is: the Parquet check behind it still holds
    with pytest.raises(TraceFormatError, match=r"timeline\.parquet: not a readable Parquet"):
        read_results(tmp_path / "r")
    t = pq.read_table(tmp_path / "r" / "locks_summary.parquet").drop_columns(["contended"])
    pq.write_table(t, tmp_path / "r" / "timeline.parquet")
    (tmp_path / "r" / "manifest.json").unlink()
    write_manifest(tmp_path / "r")
    with pytest.raises(TraceFormatError, match=r"timeline\.parquet"):
        read_results(tmp_path / "r")


# ------------------------------------------------------------------ CLI


def test_cli_json_and_files(
    synth_traces: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            "replay",
            str(synth_traces["hot-class"]),
            "--locks",
            "class,pool",
            "--json",
            "--quiet",
            "-o",
            str(tmp_path / "r"),
            "--seed",
            "2",
            "--bin-ms",
            "5",
        ]
    )
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert [r["lock_design"] for r in doc["locks"]] == ["class", "pool"]
    for r in doc["locks"]:
        assert {
            "lock_design",
            "acquisitions",
            "contended",
            "contention_rate",
            "wait_ns_total",
            "wait_ns_p50",
            "wait_ns_p99",
            "wait_ns_max",
            "hold_ns_total",
            "wait_ns_avg",
        } <= set(r)
    assert "{" not in err
    back = read_results(tmp_path / "r")
    assert back.meta["ztrace.bin_ns"] == "5000000"


def test_cli_human_table_on_stderr(
    synth_traces: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["replay", str(synth_traces["hot-class"]), "--locks", "pool", "--quiet"])
    out, err = capsys.readouterr()
    assert out == ""
    for word in ("contended", "total wait", "max wait", "avg wait", "spinlock", "bad: 0"):
        assert word in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--locks", "nope"], "--locks nope: unknown lock design"),
        (["--locks", "class", "--speedup", "0"], "--speedup must be a positive number"),
        (["--locks", "class", "--speedup", "nan"], "--speedup must be a positive number"),
        (["--locks", "class", "--cpus", "0"], "--cpus must be between 1 and 4096"),
        (["--locks", "class", "--bin-ms", "-1"], "--bin-ms -1.0: must be a positive number"),
        (["--locks", "pools:0"], "--locks pools:0: parameter must be 1..4096"),
        ([], "--locks/--lru: nothing to replay"),
        (["--locks", "class", "--lru", "entry-lru"], "--pool-limit: needed with --lru"),
    ],
)
def test_cli_bad_options_one_line_exit_2(
    synth_traces: dict[str, Path], args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(synth_traces["hot-class"]), "--quiet", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_trace_without_allocator_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tr = _trace(tmp_path, "t", ts_ns=[0, 1], event=["checkpoint", "checkpoint"])
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(tr), "--locks", "class", "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no zs_malloc/zs_free events" in err and len(err.strip().splitlines()) == 1


def test_cli_missing_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(tmp_path / "none"), "--locks", "class"])
    assert exc.value.code == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_api_rejects_bad_options(synth_traces: dict[str, Path]) -> None:
    with pytest.raises(ConfigError):
        replay(synth_traces["hot-class"], locks=["class"], speedup=-2)
    with pytest.raises(ConfigError):
        replay(synth_traces["hot-class"], locks=["class"], cpus=5000)


def test_cpus_option_spreads_over_n_cpus(synth_traces: dict[str, Path]) -> None:
    res = replay(synth_traces["hot-class"], locks=["pool"], cpus=32)
    assert res.meta["ztrace.cpus"] == "32"
    one = replay(synth_traces["hot-class"], locks=["pool"], cpus=1)
    # one CPU never waits for itself
    assert one.summary[0]["contended"] == 0
    assert res.summary[0]["contended"] > 0
    assert np.isclose(res.summary[0]["ops"], one.summary[0]["ops"])


# ------------------------------------------------------------------ golden counts

#: libCacheSim-style exact expectations on a seeded synthetic trace: (acquisitions,
#: contended, wait_ns_total, wait_ns_max, pages_used_peak). A change here is a behaviour
#: change of the replay; regenerate by printing ``res.summary`` and review the diff.
GOLDEN = {
    "class": (11178, 82, 6875, 469, 2280),
    "pool": (11000, 3919, 306656, 608, 2280),
    "pools:32": (12968, 177, 21269, 2635, 12162),
    "striped:8": (11178, 296, 20683, 502, 2280),
    "magazine:16": (5617, 4, 991, 290, 2753),
}


def test_golden_counts(tmp_path: Path) -> None:
    t = synth("spread-classes", events=5000, seed=0, cpus=4)
    write_trace(tmp_path / "g", t, synth_meta("spread-classes", cpus=4, seed=0, events=5000))
    res = replay(tmp_path / "g", locks=list(GOLDEN), seed=0)
    got = {
        r["lock_design"]: (
            r["acquisitions"],
            r["contended"],
            r["wait_ns_total"],
            r["wait_ns_max"],
            r["pages_used_peak"],
        )
        for r in res.summary
    }
    assert got == GOLDEN


def test_lru_without_swap_events_is_a_one_line_error(
    synth_traces: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "replay",
                str(synth_traces["hot-class"]),
                "--quiet",
                "--lru",
                "entry-lru",
                "--pool-limit",
                "1000",
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ztrace: error:") and len(err.strip().splitlines()) == 1


def test_lru_designs_are_delegated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ztrace.workloads.synth_swap import synth_swap

    table, meta = synth_swap("zipf-steady", seed=1, scale=0.05)
    write_trace(tmp_path / "swap", table, meta)
    main(
        [
            "replay",
            str(tmp_path / "swap"),
            "--lru",
            "entry-lru",
            "--pool-limit",
            "500",
            "--json",
            "--quiet",
            "-o",
            str(tmp_path / "r"),
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert [r["lru_design"] for r in doc["lru"]] == ["entry-lru"]
    back = read_results(tmp_path / "r")
    assert set(back.tables) == {"lru_summary", "lru_timeline"}


# ------------------------------------------------------------------ issue 10: honest inputs


def test_trace_without_sizes_is_refused_or_imputed(tmp_path: Path) -> None:
    # The kmem tracepoint fallback records zs_malloc without a size: refuse it, or draw the
    # sizes from a named capture and say so.
    meta = TraceMeta(kernel_release="6.18.0", nr_cpus=2, extra={"probes": "zsmalloc:tracepoint"})
    tr = tmp_path / "nosize"
    write_trace(
        tr,
        make_events(
            ts_ns=[0, 10, 20, 30],
            event=["zs_malloc", "zs_malloc", "zs_free", "zs_free"],
            handle=[1, 2, 1, 2],
        ),
        meta,
    )
    with pytest.raises(TraceFormatError, match=r"all 2 zs_malloc rows have size 0 .*--sizes-from"):
        replay(tr, locks=["class"])
    ref = _trace(tmp_path, "ref", ts_ns=[0], event=["zs_malloc"], size_bytes=[700], handle=[9])
    res = replay(tr, locks=["class"], sizes_from=ref)
    assert res.counters["sizes_imputed"] == 2
    assert res.counters["bad_alloc"] == 0 and res.counters["mallocs"] == 2
    assert res.meta["ztrace.sizes"].startswith("imputed: 2 zs_malloc sizes drawn (seeded) from")
    # both objects got the only reference size: one class, 2 mallocs + 2 frees on it
    t = build_classes(8)
    by_class = res.tables["locks_by_class"].to_pylist()
    assert [r["class_idx"] for r in by_class] == [t.class_for_malloc(700)]


def test_failed_mallocs_are_counted_not_replayed(tmp_path: Path) -> None:
    # zs_malloc returned ERR_PTR(-ENOMEM) (v6.0+) or 0 (before): neither allocated
    # anything, so neither takes a lock in the replay.
    enomem = 2**64 - 12
    tr = _trace(
        tmp_path,
        "t",
        ts_ns=[0, 10, 20, 30],
        event=["zs_malloc", "zs_malloc", "zs_malloc", "zs_free"],
        size_bytes=[100, 100, 100, 0],
        handle=[enomem, 0, 8, 8],
    )
    res = replay(tr, locks=["class"], cost_model=BARE)
    c = res.counters
    assert (c["failed_malloc"], c["mallocs"], c["frees"], c["bad_alloc"]) == (2, 1, 1, 0)
    assert res.summary[0]["ops"] == 2


def test_an_ok_column_marks_failed_mallocs() -> None:
    # A return probe's outcome column (``ok``), where the capture has one: false = failed.
    import pyarrow as pa

    from ztrace.replay.ingest import EV_FREE, EV_MALLOC, malloc_ok

    code = np.array([EV_MALLOC, EV_MALLOC, EV_FREE, EV_MALLOC], dtype=np.int8)
    handle = np.array([5, 6, 6, 2**64 - 12], dtype=np.uint64)
    ok = pa.array([True, False, False, None])
    assert malloc_ok(code, handle, ok).tolist() == [1, 0, 1, 0]


def test_measured_durations_are_never_added_to(tmp_path: Path) -> None:
    # One CPU: a zs_malloc measured at 1000 ns grows a zspage (alloc_zspage costs 600 per
    # page in the model, lookup 20): the op must take 1000 ns, not 20 + 600*pages + 1000.
    # Its zs_free, measured at 500 ns, empties the zspage: 500 ns (20 ns lookup under the
    # pool read lock + 480 under the class lock), not 20 + 500 + free_zspage.
    cm = CostModel(write_after_malloc=False)
    tr = _trace(
        tmp_path,
        "t",
        ts_ns=[0, 5000],
        event=["zs_malloc", "zs_free"],
        size_bytes=[100, 0],
        handle=[1, 1],
        duration_ns=[1000, 500],
    )
    res = replay(tr, locks=["class"], cost_model=cm)
    row = res.summary[0]
    assert row["makespan_ns"] == 5000 + 500
    t = build_classes(8)
    alloc = min(600 * int(t.pages_per_zspage[t.class_for_malloc(100)]), 1000 - 20)
    assert row["hold_ns_total"] == 20 + (1000 - 20 - alloc) + 20 + 480
    prov = res.cost_provenance
    assert prov["zs_malloc"] == "measured (duration_ns of all 1 rows)"
    assert prov["probe_overhead_ns"].startswith("not measured")
    assert json.loads(res.meta["ztrace.cost_provenance"]) == prov


def test_reads_replay_under_each_design(tmp_path: Path) -> None:
    # CPU0 mallocs at 0 (measured 120 ns; it grows a zspage: 20 ns lookup, alloc_zspage
    # 0 ns here, relocked 20..120). CPU1 reads that object at 50 (zs_map_object): pool
    # lookup 20 ns, then the copy. pool: the read waits until 120: 70 ns. class: the
    # malloc holds only its class lock, the read takes the pool read lock: no wait.
    # A read of a handle the trace never allocated is counted, not replayed.
    tr = _trace(
        tmp_path,
        "t",
        ts_ns=[0, 50, 60],
        event=["zs_malloc", "zs_map_object", "zs_obj_read_begin"],
        cpu=[0, 1, 1],
        size_bytes=[100, 0, 0],
        handle=[1, 1, 99],
        duration_ns=[120, 0, 0],
    )
    res = replay(tr, locks=["class", "pool"], cost_model=BARE)
    s = {r["lock_design"]: r for r in res.summary}
    assert (res.counters["reads"], res.counters["unmatched_read"]) == (2, 1)
    assert (s["pool"]["acquisitions"], s["pool"]["contended"], s["pool"]["wait_ns_total"]) == (
        3,
        1,
        70,
    )
    assert (s["class"]["contended"], s["class"]["wait_ns_total"]) == (0, 0)


# ------------------------------------------------------------------ intervals, cross-kernel


def test_intervals_rank_only_what_they_can_tell_apart(synth_traces: dict[str, Path]) -> None:
    from ztrace.replay.interval import compare, replay_interval

    tr = synth_traces["spread-classes"]
    res = replay_interval(tr, locks=["class", "striped:255", "pool"], runs=3)
    plain = {r["lock_design"]: r for r in replay(tr, locks=["class", "pool"]).summary}
    for d in ("class", "pool"):  # replica 0 is the plain replay
        m = res.designs[d]["wait_ns_total"]
        assert m["value"] == plain[d]["wait_ns_total"]
        assert m["interval"][0] <= m["value"] <= m["interval"][1]
    # striped:255 is class under another name: the same intervals, no ranking
    assert res.designs["striped:255"] == res.designs["class"]
    verdicts = {(c["lower"], c["higher"]): c["verdict"] for c in compare(res)}
    assert verdicts[("class", "striped:255")] == "no measurable difference"
    assert verdicts[("striped:255", "pool")] == "lower"  # pool waits far more, no overlap
    assert res.notes and "interleaving only" in res.notes[0]  # synthetic: no durations


def _kernel_trace(tmp_path: Path, name: str, release: str, waits: list[int]) -> Path:
    """Two CPUs malloc into different classes at once, then free; ``waits``: measured
    zsmalloc lock contentions (pool lock)."""
    meta = TraceMeta(
        kernel_release=release, nr_cpus=2, extra={"probes": "zsmalloc:kprobe,locks:tracepoint"}
    )
    n = len(waits)
    write_trace(
        tmp_path / name,
        make_events(
            ts_ns=[0, 5, 1000, 1005] + [2000 + i for i in range(n)],
            event=["zs_malloc", "zs_malloc", "zs_free", "zs_free"] + ["lock_contention"] * n,
            cpu=[0, 1, 0, 1] + [0] * n,
            size_bytes=[100, 2000, 0, 0] + [0] * n,
            handle=[1, 2, 1, 2] + [0] * n,
            duration_ns=[300, 300, 100, 100] + [0] * n,
            lock_kind=[None] * 4 + ["pool"] * n,
            wait_ns=[None] * 4 + waits,
        ),
        meta,
    )
    return tmp_path / name


def test_cross_kernel_json_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _kernel_trace(tmp_path, "k61", "6.1.0-56-amd64", [40, 60])  # pool: 2 contended
    b = _kernel_trace(tmp_path, "k612", "6.12.95+deb12-amd64", [])  # class: none
    main(["validate", "cross-kernel", "--from", str(b), "--to", str(a), "--runs", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    pairs = out["pairs"]
    assert len(pairs) == 8
    keys = {"scenario", "trace_kernel", "target_kernel", "design", "metric", "predicted"}
    assert keys | {"measured", "ratio", "interval", "runs"} <= set(pairs[0])
    got = {(p["trace_kernel"][:4], p["target_kernel"][:4], p["metric"]): p for p in pairs}
    # measured, from the lock_contention rows
    assert got[("6.12", "6.1.", "contended")]["measured"] == 2
    assert got[("6.12", "6.1.", "wait_ns_total")]["measured"] == 100
    assert got[("6.1.", "6.12", "contended")]["measured"] == 0
    assert got[("6.1.", "6.12", "contended")]["ratio"] is None  # nothing to divide by
    # designs: 6.1 (Debian, consolidated pool lock) -> pool, 6.12 -> class
    assert got[("6.12", "6.1.", "contended")]["design"] == "pool"
    assert got[("6.12", "6.12", "contended")]["design"] == "class"
    # predictions are the plain replay of the trace under the target's design
    r = {x["lock_design"]: x for x in replay(b, locks=["class", "pool"]).summary}
    assert got[("6.12", "6.1.", "contended")]["predicted"] == r["pool"]["contended"]
    assert got[("6.12", "6.12", "contended")]["predicted"] == r["class"]["contended"]
    # different classes: pool serialises the two CPUs (contended), class does not
    assert r["pool"]["contended"] > 0 == r["class"]["contended"]
    # measured 6.1 (pool) 2 > 6.12 (class) 0, and predicted pool > class: direction right
    assert got[("6.12", "6.1.", "contended")]["direction_right"] is True
    assert got[("6.1.", "6.12", "contended")]["direction_right"] is True


def test_zswap_loads_and_writebacks_are_reads(tmp_path: Path) -> None:
    # A capture with zswap probes but no zsmalloc read probes: zswap_load (hit) and
    # zswap_writeback decompress the entry, i.e. zs_map_object() its object (6.12
    # zswap_decompress). Entry 5 is stored (700 bytes) and its zs_malloc at 0 grows a
    # zspage (measured 120 ns: lookup 0..20, relocked 20..120). CPU1's load hit at 50
    # waits for the pool spinlock until 120 under `pool` (70 ns), not under `class`. A
    # miss is no read; after zswap_invalidate the entry is gone (an unmatched read).
    tr = _trace(
        tmp_path,
        "t",
        ts_ns=[0, 0, 50, 60, 70, 80],
        event=[
            "zswap_store",
            "zs_malloc",
            "zswap_load",
            "zswap_load",
            "zswap_invalidate",
            "zswap_writeback",
        ],
        cpu=[0, 0, 1, 1, 1, 1],
        size_bytes=[700, 700, 0, 0, 0, 0],
        handle=[5, 77, 5, 6, 5, 5],
        duration_ns=[0, 120, 0, 0, 0, 0],
        swap_entry=[5, None, 5, 6, 5, 5],
        outcome=["stored", None, "hit", "miss", None, "written"],
    )
    res = replay(tr, locks=["class", "pool"], cost_model=BARE)
    assert (res.counters["reads"], res.counters["unmatched_read"]) == (2, 1)
    assert res.meta["ztrace.reads"].startswith("zswap_load hits")
    s = {r["lock_design"]: r for r in res.summary}
    assert (s["pool"]["acquisitions"], s["pool"]["contended"], s["pool"]["wait_ns_total"]) == (
        3,
        1,
        70,
    )
    assert (s["class"]["contended"], s["class"]["wait_ns_total"]) == (0, 0)
