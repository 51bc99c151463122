"""No silent first-run stall (issue 15): a cold numba cache says so on stderr, a warm one not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ztrace.format import write_trace
from ztrace.replay.compile_notice import MESSAGE
from ztrace.workloads import synth


@pytest.mark.slow  # the first process compiles the lock core into an empty cache
def test_compile_message_only_when_the_numba_cache_is_cold(tmp_path: Path) -> None:
    # As tests/test_locks.py's cache-invalidation test: a fresh NUMBA_CACHE_DIR in a
    # subprocess is a cold cache; the second process finds it warm. stderr is a pipe here,
    # not a terminal: the message must appear anyway, and --json stdout must stay clean.
    trace = tmp_path / "t"
    write_trace(
        trace,
        synth.synth("zram-parallel", events=2000, seed=0, cpus=2),
        synth.synth_meta("zram-parallel", cpus=2, seed=0, events=2000),
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "ztrace", "replay", str(trace), "--locks", "class", "--json"]

    def run() -> subprocess.CompletedProcess[str]:
        r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["locks"][0]["lock_design"] == "class"  # stdout: JSON only
        return r

    cold = run()
    assert cold.stderr.count(MESSAGE) == 1, cold.stderr  # once, however many functions compile
    assert any((tmp_path / "cache").rglob("*.nbi"))  # and it did fill the cache
    warm = run()
    assert MESSAGE not in warm.stderr, warm.stderr


@pytest.mark.slow  # the set-up warm compiles everything into an empty cache (~3 min on 2 cores)
def test_the_set_up_warm_covers_a_captures_first_replay(tmp_path: Path) -> None:
    """`make setup`'s warm step (ztrace.cli.warm) leaves nothing for make demo's first replay
    to compile: a real capture with lock rows (`wait_ns`), every lock design, replicas.
    Session 13 found its first replay compiling the measured-wait loop
    (stops._waits_inside), which only a capture reaches."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", *args], env=env, cwd=root, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        return r

    assert MESSAGE in run("ztrace.cli.warm").stderr  # the cache was cold
    sample = root / "replays" / "samples" / "default"
    locks = "class,pool,pools:32,striped:8,magazine"
    first = run("ztrace", "replay", str(sample), "--locks", locks, "--replicas", "3", "--json")
    assert MESSAGE not in first.stderr, first.stderr
