"""The ``kbuild`` scenario in the 6.12 guest: parallel gcc-12 compiles in a memory cgroup under
zswap (issue 10, item 6). A short run (4 units, 4 jobs: one wave of compilers, ~3-4 min under
TCG) must leave a normal capture: nothing lost, zswap stores in the thousands, and every
store the kernel counted (``zswpout``) captured, so the trace is the workload's whole zswap
traffic and ``ztrace replay`` takes it."""

from __future__ import annotations

import json
import shutil

import pyarrow.compute as pc
import pytest

from ztrace.vm import run as vmrun

pytestmark = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(scope="module")
def kbuild_run(tmp_path_factory: pytest.TempPathFactory) -> vmrun.VmResult:
    if vmrun.find_image() is None or not shutil.which(vmrun.QEMU):
        pytest.skip("no guest image or qemu here (ztrace vm build)")
    out = tmp_path_factory.mktemp("vm-kbuild-6.12")
    opts = vmrun.GuestOptions(params={"files": "4", "jobs": "4"}, timeout=1200)
    return vmrun.run_scenario("6.12", "kbuild", out, opts)


def test_kbuild_capture_is_complete_zswap_traffic(kbuild_run: vmrun.VmResult) -> None:
    from ztrace.format import read_trace

    out = kbuild_run.outdir
    assert "built 4 of 4 objects" in (out / "guest.log").read_text()  # every compile finished
    trace = read_trace(out / "trace")
    assert trace.meta.lost_events == 0
    assert trace.meta.kernel_release == kbuild_run.release
    events = trace.table.column("event").cast("string")
    stores = trace.table.filter(pc.equal(events, "zswap_store")).num_rows
    loads = trace.table.filter(pc.equal(events, "zswap_load")).num_rows
    before = json.loads((out / "counters" / "before.json").read_text())["vmstat"]
    after = json.loads((out / "counters" / "after.json").read_text())["vmstat"]
    # the compilers overran memory.max: their heaps went to zswap and came back
    assert stores > 2000 and loads > 0, (stores, loads)
    assert stores == after["zswpout"] - before["zswpout"]


def test_kbuild_trace_replays(kbuild_run: vmrun.VmResult) -> None:
    from ztrace.replay.engine import replay

    res = replay(kbuild_run.outdir / "trace", locks=["pool", "class"], progress=False)
    assert {r["lock_design"] for r in res.summary} == {"pool", "class"}
    assert all(r["ops"] > 0 for r in res.summary)
