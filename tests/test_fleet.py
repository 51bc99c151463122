"""ztrace fleet sweep: many traces × designs → one dataset, on a real local Ray or serially."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import ROOT, run_cli
from tests.support.fleet import write_fleet, write_host_trace
from ztrace.fleet.discover import content_hash
from ztrace.format import trace_files

#: 3 traces × (2 lock designs + 1 LRU design × 2 pool limits) = 12 tasks
SWEEP = ["--locks", "class,pool", "--lru", "entry-lru", "--pool-limits", "10%,20%"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fleet(tmp_path_factory.mktemp("fleet") / "traces", 3)


@pytest.fixture(scope="module")
def serial(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "out"
    r = run_cli("fleet", "sweep", str(fleet), *SWEEP, "-j", "1", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["tasks"] == 12 and doc["ran"] == 12 and doc["backend"] == "serial"
    return out


def test_dataset_has_identity_and_parameters(serial: Path, fleet: Path) -> None:
    df = pl.scan_parquet(serial / "fleet.parquet").collect()  # one scan
    assert df.height == 12
    assert sorted(df["host"].unique()) == ["web-00", "web-01", "web-02"]
    locks = df.filter(pl.col("kind") == "locks")
    assert sorted(locks["design"].unique()) == ["class", "pool"]
    assert locks["wait_ns_total"].null_count() == 0
    lru = df.filter(pl.col("kind") == "lru")
    assert sorted(lru["pool_limit"].unique()) == ["10%", "20%"]
    assert lru["disk_swapins"].null_count() == 0
    # the trace each row came from, by absolute path and content
    for path, sha in df.select("trace_path", "trace_sha256").unique().iter_rows():
        assert Path(path).is_absolute()
        assert content_hash(trace_files(path)) == sha


def test_duckdb_reads_the_dataset_in_one_scan(serial: Path) -> None:
    import duckdb

    rows = duckdb.sql(
        f"SELECT kind, design, count(*), count(DISTINCT host) "
        f"FROM '{serial / 'fleet.parquet'}' GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert rows == [("locks", "class", 3, 3), ("locks", "pool", 3, 3), ("lru", "entry-lru", 6, 3)]


def test_provenance_survives_moving_the_results(serial: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(serial, moved)
    from ztrace.fleet import read_fleet

    t = read_fleet(moved)
    srcs = json.loads(t.schema.metadata[b"ztrace.fleet.sources"])
    assert len(srcs) == 3
    for path, sha in srcs:
        assert content_hash(trace_files(path)) == sha


@pytest.mark.slow
def test_ray_two_workers_equals_serial_byte_for_byte(
    fleet: Path, serial: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ztrace[ray]')")
    out = tmp_path / "ray"
    # -j 3: this process and a local Ray with two workers
    r = run_cli("fleet", "sweep", str(fleet), *SWEEP, "-j", "3", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["backend"] == "ray" and doc["ran"] == 12 and doc["ray_workers"] == 2
    # the driver runs the shortest tasks; the last two always wait for Ray's workers
    assert 0 <= doc["tasks_in_driver"] <= 12 - 2
    for name in ("fleet.parquet", "fleet.json"):
        assert (out / name).read_bytes() == (serial / name).read_bytes(), name
    assert sorted(os.listdir(out / "tasks")) == sorted(os.listdir(serial / "tasks"))


def test_longest_tasks_are_started_first(fleet: Path) -> None:
    from ztrace.fleet import Axes, discover, plan
    from ztrace.fleet.runner import estimated_cost, longest_first

    big = write_host_trace(fleet.parent / "big" / "host=big", seed=7, events=40_000)
    traces = discover([str(fleet), str(big)])
    tasks = plan(
        traces, Axes(locks=("class", "pool"), lru=("entry-lru",), pool_limits=("10%",))
    ).tasks
    order = longest_first(tasks)
    costs = [estimated_cost(t) for t in order]
    assert costs == sorted(costs, reverse=True) and sorted(map(id, order)) == sorted(map(id, tasks))
    # the trace with the most allocator events has the longest lock tasks
    assert [t.trace.host for t in order if t.kind == "locks"][:2] == ["big", "big"]
    # ties keep plan order (stable)
    ties = [t for t in order if t.trace.host == "big" and t.kind == "locks"]
    assert [t.design for t in ties] == ["class", "pool"]


def _snapshot(tasks: Path) -> dict[str, tuple[int, int]]:
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in tasks.glob("*.parquet")
        if not p.name.startswith(".")
    }


def test_killed_sweep_rerun_finishes_only_the_missing_tasks(
    fleet: Path, serial: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ztrace", "fleet", "sweep", str(fleet), *SWEEP]
    proc = subprocess.Popen(
        [*cmd, "-j", "1", "-o", str(out), "-q"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_snapshot(out / "tasks")) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _snapshot(out / "tasks")
    assert 2 <= len(before) < 12, f"kill landed outside the run ({len(before)} tasks done)"
    assert not (out / "fleet.parquet").exists()

    r = run_cli("fleet", "sweep", str(fleet), *SWEEP, "-j", "1", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["already_done"] == len(before)
    assert doc["ran"] == 12 - len(before)
    after = _snapshot(out / "tasks")
    assert {k: after[k] for k in before} == before  # finished tasks were not run again
    assert not list((out / "tasks").glob(".*.tmp"))  # the killed write's temporary is gone
    assert (out / "fleet.parquet").read_bytes() == (serial / "fleet.parquet").read_bytes()


def test_failed_task_is_reported_and_the_others_finish(fleet: Path, tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    shutil.copytree(fleet / "host=web-00", traces / "host=good")
    write_host_trace(traces / "host=noram", seed=7, ram=False)  # percent limits need RAM
    out = tmp_path / "out"
    r = run_cli(
        "fleet", "sweep", str(traces), "--lru", "entry-lru", "--pool-limits", "10%,4096",
        "-j", "1", "-o", str(out), "--json",
    )  # fmt: skip
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["ran"] == 4 and len(doc["failed"]) == 1
    (f,) = doc["failed"]
    assert f["trace"].endswith("host=noram") and "pool_limit=10%" in f["task"]
    assert "task failed:" in r.stderr and "host=noram" in r.stderr
    df = pl.read_parquet(out / "fleet.parquet")
    assert df.height == 3  # the other three tasks finished
    (failed_file,) = (out / "failed").glob("*.json")
    assert json.loads(failed_file.read_text())["error"] == f["error"]


def test_refuses_to_write_into_a_replay_directory(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "replay"
    out.mkdir()
    (out / "summary.json").write_text("{}\n")
    r = run_cli("fleet", "sweep", str(fleet), "--locks", "class", "-o", str(out))
    assert r.returncode == 2
    assert r.stderr.startswith("ztrace: error: ") and "refusing" in r.stderr
    assert "Traceback" not in r.stderr
    assert (out / "summary.json").read_text() == "{}\n"
    assert sorted(os.listdir(out)) == ["summary.json"]


def test_no_traces_is_a_one_line_error(tmp_path: Path) -> None:
    r = run_cli("fleet", "sweep", str(tmp_path), "--locks", "class", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no trace" in r.stderr
