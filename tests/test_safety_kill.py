"""Issue 11: ``kill -9`` during replay and sweep writes (the capture writer's test is in
tests/test_capture_kernel.py::test_kill_9_leaves_only_valid_files).

The writer is killed the moment anything new appears next to (or inside) its output, so the
kill lands while it writes, not before or after. Afterwards either the old complete output or
nothing stands at the output path; a partial directory never does, and readers refuse
anything that is not complete (hidden temporaries left beside it included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.safety_util import ROOT, cli, swap_trace, synth, tree_hash


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("kill")
    return {
        "trace": synth(d / "trace", events=20000, cpus=8),
        "swap": swap_trace(d / "swap", rows=60000),
    }


def _listing(d: Path) -> set[str]:
    return set(os.listdir(d)) if d.is_dir() else set()


def _kill_while_writing(args: list[str], out: Path, delay: float, timeout: float = 120) -> str:
    """Run ``ztrace ARGS``; SIGKILL it ``delay`` s after a new entry appears in ``out``'s
    parent or inside ``out``. Returns "killed" or "finished" (it was done before that)."""
    parent = out.parent
    seen_parent, seen_out = _listing(parent), _listing(out)
    p = subprocess.Popen(
        [sys.executable, "-m", "ztrace", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if _listing(parent) - seen_parent or _listing(out) != seen_out:
                time.sleep(delay)
                if p.poll() is not None:
                    return "finished"
                os.kill(p.pid, signal.SIGKILL)
                p.wait(30)
                return "killed"
            if p.poll() is not None:
                return "finished"
            time.sleep(0.0005)
        raise AssertionError("the writer neither wrote nor finished in time")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(30)
        assert p.stderr is not None
        p.stderr.close()


def _assert_complete_or_absent(out: Path, old_hash: str | None) -> None:
    if not out.exists():
        return
    if old_hash is not None and tree_hash(out) == old_hash:
        return  # the old complete output, untouched
    # otherwise it must be a complete new output, which the reader accepts
    p = cli("report", out, "--json")
    assert p.returncode == 0, f"a partial {out} stands: {sorted(_listing(out))}\n{p.stderr}"


def _run_kills(args: list[str], out: Path, old: bool, delays=(0.0, 0.003, 0.015)) -> int:
    """Kill the writer once per delay (seconds after it starts writing); check each time."""
    killed = 0
    for delay in delays:
        old_hash = tree_hash(out) if old else None
        how = _kill_while_writing(args, out, delay)
        killed += how == "killed"
        _assert_complete_or_absent(out, old_hash)
        # a writer's hidden temporary may be left beside the output (a kill between the
        # swap and the clean-up leaves the old directory there): read on purpose, it is
        # either refused with one line or a complete output the manifest vouches for
        for x in out.parent.iterdir():
            if x.is_dir() and x != out and x.name.startswith("."):
                r = cli("report", x)
                assert r.returncode in (0, 2), r.stderr
                if r.returncode == 2:
                    assert len(r.stderr.splitlines()) == 1, r.stderr
    return killed


def test_kill_9_replay_into_a_new_directory(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o" / "r"
    out.parent.mkdir()
    args = ["replay", inputs["trace"], "--locks", "class,pool,striped:8", "-q", "-o", out]
    assert _run_kills(args, out, old=False, delays=(0.0,)) == 1
    assert not out.exists() or cli("report", out).returncode == 0


def test_kill_9_replay_over_old_results(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o" / "r"
    out.parent.mkdir()
    args = ["replay", inputs["trace"], "--locks", "class,pool,striped:8", "-q", "-o", out]
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    old = tree_hash(out)
    forced = [*args, "--force"]
    killed = _run_kills(forced, out, old=True)
    assert killed >= 1
    # nothing stands, or the old results, or complete new ones (identical bytes: same seed)
    assert not out.exists() or tree_hash(out) == old


def test_kill_9_sweep(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o" / "s"
    out.parent.mkdir()
    args = [
        "sweep",
        inputs["swap"],
        "--lru",
        "none,entry-lru,swap-lru",
        "--pool-limits",
        "100,200,400",
        "-q",
        "-o",
        out,
    ]
    assert _run_kills(args, out, old=False, delays=(0.0,)) == 1
    p = cli(*args, "--force")
    assert p.returncode == 0, p.stderr
    killed = _run_kills([*args, "--force"], out, old=True)
    assert killed >= 1


def test_kill_9_fleet_sweep(tmp_path: Path) -> None:
    """``fleet sweep`` (a resumable writer: one file per task, then the dataset). Killed while
    it writes, at several moments: every visible file is complete (tasks and fleet.parquet
    read whole; temporaries are hidden), a rerun resumes to the same bytes as an unkilled run,
    and a killed rerun over a finished sweep leaves its dataset as it was."""
    import pyarrow.parquet as pq

    from tests.support.fleet import write_fleet

    traces = write_fleet(tmp_path / "traces", 2, events=3000, scale=0.05)
    args = ["fleet", "sweep", traces, "--locks", "class,pool", "--lru", "entry-lru",
            "--pool-limits", "10%", "-j", "1", "-q", "-o"]  # fmt: skip
    clean = tmp_path / "clean"
    p = cli(*args, clean)
    assert p.returncode == 0, p.stderr
    want = (clean / "fleet.parquet").read_bytes()

    def visible_complete(out: Path) -> None:
        for f in [*(out / "tasks").glob("*.parquet"), *out.glob("fleet.parquet")]:
            assert not f.name.startswith(".")
            pq.read_table(f)  # raises on a partial file

    out = tmp_path / "o" / "f"
    out.parent.mkdir()
    killed = 0
    for delay in (0.0, 0.003, 0.015, 0.05):
        killed += _kill_while_writing([*args, out], out, delay) == "killed"
        visible_complete(out)
    assert killed >= 1
    p = cli(*args, out)
    assert p.returncode == 0, p.stderr
    assert (out / "fleet.parquet").read_bytes() == want
    assert not [f for f in out.rglob(".*") if f.name.endswith(".tmp")]
    for delay in (0.0, 0.003):  # a rerun over the finished sweep rewrites the same dataset
        _kill_while_writing([*args, out], out, delay)
        visible_complete(out)
        assert (out / "fleet.parquet").read_bytes() == want
