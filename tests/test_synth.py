"""Synthetic traces: valid, seeded, and shaped like the profile says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from ztrace.errors import ConfigError
from ztrace.format import read_trace
from ztrace.workloads.synth import PAGE_SIZE, PROFILES, synth


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_free_follows_its_malloc_and_counts_are_exact(profile):
    t = synth(profile, events=20_000, seed=3, cpus=4)
    assert t.num_rows == 20_000
    ev = np.array(t.column("event").to_pylist())
    h = t.column("handle").to_numpy()
    ts = t.column("ts_ns").to_numpy()
    assert np.all(np.diff(ts.astype(np.int64)) >= 0)
    live: set[int] = set()
    for e, handle in zip(ev, h, strict=True):
        if e == "zs_malloc":
            assert handle not in live
            live.add(int(handle))
        else:
            live.remove(int(handle))  # KeyError would mean a free without a malloc
    sizes = t.column("size_bytes").to_numpy()[ev == "zs_malloc"]
    assert sizes.min() >= 16 and sizes.max() <= PAGE_SIZE


def test_same_seed_same_trace_other_seed_other_trace():
    a = synth("swap-like", events=5000, seed=1)
    b = synth("swap-like", events=5000, seed=1)
    c = synth("swap-like", events=5000, seed=2)
    assert a.equals(b)
    assert not a.equals(c)


def test_hot_class_profile_concentrates_sizes():
    t = synth("hot-class", events=10_000, seed=0, cpus=8)
    sizes = t.column("size_bytes").to_numpy()[t.column("size_bytes").to_numpy() > 0]
    # all within one or two 16-byte size classes
    assert np.ptp(sizes) <= 32
    assert set(t.column("cpu").to_numpy().tolist()) == set(range(8))


def test_cli_writes_a_valid_trace(tmp_path):
    r = run_cli(
        "synth",
        "--profile",
        "zram-parallel",
        "--events",
        "3000",
        "-o",
        str(tmp_path / "t"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["events"] == 3000
    assert read_trace(tmp_path / "t").meta.source == "synth"


def test_bad_arguments_are_rejected_by_name():
    with pytest.raises(ConfigError, match="unknown profile `nope`"):
        synth("nope")
    with pytest.raises(ConfigError, match="--events 0: must be positive"):
        synth("swap-like", events=0)
    r = run_cli("synth", "--profile", "nope", "-o", "/tmp/x")
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr
