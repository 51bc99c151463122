"""The folio's memcg id in a 6.12 capture, and the per-memcg replay against the kernel's
per-memcg counters, on a fresh two-cgroup guest run (``zswap-lru`` with
``groups=48M:200,160M:200``; docs/lru-kernel-check.md, "Several memory cgroups").

A ~8 min guest run, so ``vm_long``. Set ZTRACE_LRU_VM612_MEMCG=DIR to reuse an earlier run's
output directory instead of booting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from tests.support.guest_run import guest_run
from ztrace.format import read_trace
from ztrace.replay.lru.kernel_check import check

pytestmark = [pytest.mark.vm, pytest.mark.vm_long, pytest.mark.slow]


@pytest.fixture(scope="module")
def vm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return guest_run(
        tmp_path_factory,
        "ZTRACE_LRU_VM612_MEMCG",
        "6.12",
        "zswap-lru",
        timeout=1800,
        params={"groups": "48M:200,160M:200"},
    )


def test_capture_has_the_folio_memcg(vm2: Path) -> None:
    ids = {
        int(ln.split("\t")[2]): ln.split("\t")[1]
        for ln in (vm2 / "memcg.tsv").read_text().splitlines()
    }
    assert len(ids) == 2
    t = read_trace(vm2 / "trace")
    ev = np.asarray(t.table.column("event").cast("string").to_numpy(zero_copy_only=False))
    mc = np.asarray(pc.fill_null(t.table.column("memcg_id"), 0).to_numpy())
    stores = ev == "zswap_store"
    # every store carries its folio's memcg; the allocators' pages are charged to their
    # cgroups (khugepaged's and kworkers' stores too, which the task's pid cannot place)
    assert stores.any() and (mc[stores] != 0).all()
    # (other cgroups' pages may be reclaimed too, but the allocators' are nearly all)
    assert np.isin(mc[stores], list(ids)).mean() >= 0.9
    assert set(ids) <= set(np.unique(mc[stores]).tolist())
    assert t.meta.extra.get("memcg_id_task_rows") == "0"  # no fallback to the task's cgroup


def test_per_memcg_counters_against_memory_stat(vm2: Path) -> None:
    res = check(vm2, ["entry-lru-2nd-chance"])
    per = res["designs"]["entry-lru-2nd-chance"]["memcg"]
    for name, kc in res["memcg"].items():
        ours = per[str(kc["memcg_id"])]
        # stores are the workload: within 10 % (lost events aside); written back is the
        # design's per-memcg writeback, reported with its difference (docs)
        assert abs(ours["stored"] - kc["zswpout"]) <= 0.10 * kc["zswpout"], (name, ours, kc)
        assert ours["written_back"] > 0 and kc["zswpwb"] > 0, name
