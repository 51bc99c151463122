"""ztrace export libcachesim: oracleGeneral records read back by libCacheSim itself."""

from __future__ import annotations

from pathlib import Path

import libcachesim as lcs
import numpy as np
import pytest

from tests.conftest import run_cli
from tests.support.fleet import write_host_trace
from ztrace.format import open_trace

#: libCacheSim reads a -1 next access as "never again" (MAX_REUSE_DISTANCE = INT64_MAX)
NEVER = 2**63 - 1


def _read_back(path: Path) -> list[tuple[int, int, int, int]]:
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    out = []
    for _ in range(reader.get_num_of_req()):
        req = reader.read_one_req()
        out.append((req.clock_time, req.obj_id, req.obj_size, req.next_access_vtime))
    with pytest.raises(RuntimeError):  # and nothing after the last record
        reader.read_one_req()
    return out


@pytest.mark.parametrize("stream", ["swap", "alloc"])
def test_round_trip_through_libcachesim(tmp_path: Path, stream: str) -> None:
    trace = write_host_trace(tmp_path / "t", seed=4)
    out = tmp_path / f"{stream}.oracleGeneral"
    r = run_cli("export", "libcachesim", str(trace), "--stream", stream, "-o", str(out))
    assert r.returncode == 0, r.stderr
    got = _read_back(out)

    t = open_trace(trace).read().table
    ev = np.asarray(t.column("event").to_pylist(), dtype=object)
    want = ("zswap_store", "zswap_load") if stream == "swap" else ("zs_malloc", "zs_free")
    keep = np.isin(ev, want)
    key = "swap_entry" if stream == "swap" else "handle"
    ids = t.column(key).to_numpy(zero_copy_only=False)[keep].astype(np.uint64).tolist()
    assert len(got) == int(keep.sum()) > 1000
    assert [g[1] for g in got] == ids  # every request, in trace order, same object
    # next access: the index of the following request to the same object, or -1
    for i, (_, obj, size, nxt) in enumerate(got[:2000]):
        later = [j for j in range(i + 1, len(ids)) if ids[j] == obj]
        assert nxt == (later[0] if later else NEVER)
        assert size > 0
    # libCacheSim's own LRU runs on it: a bigger cache never misses more
    small = lcs.LRU(cache_size=64 * 4096)
    big = lcs.LRU(cache_size=4096 * 4096)
    reader = lcs.TraceReader(str(out), lcs.TraceType.ORACLE_GENERAL_TRACE)
    ms, _ = small.process_trace(reader)
    reader = lcs.TraceReader(str(out), lcs.TraceType.ORACLE_GENERAL_TRACE)
    mb, _ = big.process_trace(reader)
    assert 0 <= mb <= ms <= 1


def test_no_swap_events_is_a_one_line_error(tmp_path: Path) -> None:
    r = run_cli("synth", "--events", "1000", "-o", str(tmp_path / "a"))
    assert r.returncode == 0
    r = run_cli("export", "libcachesim", str(tmp_path / "a"), "-o", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "swap" in r.stderr
    assert not (tmp_path / "x").exists()
