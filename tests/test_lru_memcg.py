"""Per-cgroup breakdown of a zswap capture (``ztrace.replay.lru.memcg``) on a hand-built guest
output directory: pids map to cgroups through memcg.tsv; loads and writebacks count for the
cgroup of the page's last store; memory.stat deltas are after − before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ztrace.format import TraceMeta, make_events, write_trace
from ztrace.replay.lru.memcg import breakdown, markdown


def test_breakdown_by_task_and_by_entry(tmp_path: Path) -> None:
    # pid 10 is in cg-a, 20 in cg-b, 30 (khugepaged) in none. Page 1: stored by 10 (a),
    # loaded by 20 (readahead in b's task: still a's entry → a's zswpin). Page 2: stored by
    # 20 (b), written back by a kworker (b's zswpwb). Page 3: stored by 30 → "other".
    # A rejected store counts nothing, nor does a failed writeback (page 1's).
    rows = [
        ("zswap_store", 10, 1, "stored"),
        ("zswap_store", 20, 2, "stored"),
        ("zswap_store", 30, 3, "stored"),
        ("zswap_store", 10, 4, "reject_other"),
        ("zswap_load", 20, 1, "hit"),
        ("zswap_writeback", 99, 2, "written"),
        ("zswap_writeback", 99, 1, "failed"),
    ]
    n = len(rows)
    t = make_events(
        ts_ns=np.arange(n, dtype=np.uint64) * 10,
        event=pa.array([r[0] for r in rows]).dictionary_encode(),
        pid=pa.array([r[1] for r in rows], pa.uint32()),
        swap_entry=np.asarray([r[2] for r in rows], dtype=np.uint64),
        outcome=pa.array([r[3] for r in rows], pa.string()).dictionary_encode(),
    )
    write_trace(tmp_path / "trace", t, TraceMeta(kernel_release="6.12", schema_version=2))
    (tmp_path / "memcg.tsv").write_text("10\tcg-a\t28\t48M\n20\tcg-b\t66\t160M\n")
    c = tmp_path / "counters"
    c.mkdir()
    (c / "memcg-cg-a-before.txt").write_text("zswpout 5\nzswpin 0\nzswpwb 0\n")
    (c / "memcg-cg-a-after.txt").write_text("zswpout 6\nzswpin 1\nzswpwb 0\nzswap 0\n")
    (c / "memcg-cg-b-before.txt").write_text("zswpout 0\nzswpin 0\nzswpwb 0\n")
    (c / "memcg-cg-b-after.txt").write_text("zswpout 1\nzswpin 0\nzswpwb 1\n")
    r = breakdown(tmp_path)
    assert r["kernel"] == {
        "cg-a": {"zswpout": 1, "zswpin": 1, "zswpwb": 0},
        "cg-b": {"zswpout": 1, "zswpin": 0, "zswpwb": 1},
    }
    assert r["capture"] == {
        "cg-a": {"zswpout": 1, "zswpin": 1, "zswpwb": 0},
        "cg-b": {"zswpout": 1, "zswpin": 0, "zswpwb": 1},
        "other": {"zswpout": 1, "zswpin": 0, "zswpwb": 0},
    }
    assert "| cg-b | zswpwb | 1 | 1 |" in markdown(r)
