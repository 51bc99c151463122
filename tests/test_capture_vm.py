"""Capture with kprobes in the stock Debian 6.1 and 6.12 guests (``vm`` marker).

Boots each guest under qemu (``ztrace vm run``), runs the ``zram`` scenario with the
``zsmalloc,locks`` probes (kprobes for zs_malloc/zs_free with sizes and durations, the lock
tracepoints with stacks), and checks on the host: the batched emit path lost nothing and
matches the kernel's counters, the per-CPU flush timer attached (batches of 64), and
``ztrace report`` on the guest's trace agrees with its raw lock rows (naming class locks
``class[i]`` from the sizes where the kernel has per-class locks), and every allocator call
carries its switched-out time (``offcpu_ns``). The same scenario under ``capture --summary``
(always-on mode, in-kernel aggregates) loads, counts every operation exactly and reports each
spinlock wait once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ztrace.vm import run as vmrun

pytestmark = [pytest.mark.vm, pytest.mark.slow]

JOBS, MB_PER_JOB = 4, 16
PAGES = JOBS * MB_PER_JOB * 256


def _zram_run(kernel: str, out: Path, **params: str) -> Path:
    """The zram scenario (JOBS writers of MB_PER_JOB each, then a discard) in a guest."""
    import shutil

    if vmrun.find_image() is None or not shutil.which(vmrun.QEMU):
        pytest.skip("no guest image or qemu here (ztrace vm build)")
    base = {"jobs": str(JOBS), "mb_per_job": str(MB_PER_JOB), "probes": "zsmalloc,locks"}
    opts = vmrun.GuestOptions(params={**base, **params}, timeout=1200)
    vmrun.run_scenario(kernel, "zram", out, opts)
    return out


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def guest(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _zram_run(request.param, tmp_path_factory.mktemp(f"cap-{request.param}"))


def test_guest_capture_is_batched_complete_and_reportable(guest: Path, tmp_path: Path) -> None:
    from ztrace.format import read_trace
    from ztrace.look.measured import build_measured_report, load_measured

    trace = read_trace(guest / "trace")
    meta = trace.meta
    assert meta.lost_events == 0
    assert meta.extra["batch"] == "64", meta.extra  # the flush timer attached in the guest
    assert "kprobe:" in meta.extra["attached"]
    # every kretprobe was made through tracefs with 1024 instances, so that tracefs
    # kprobe_profile counts its misses (and the capture reads them into lost_events)
    n_ret = sum(a.startswith("kprobe:r_") for a in meta.extra["attached"].split(","))
    assert meta.extra["kretprobe_maxactive"] == "1024"
    assert int(meta.extra["kprobe_profile_probes"]) == n_ret > 0, meta.extra
    events = trace.table.column("event").cast(pa.string())
    assert pc.sum(pc.equal(events, "zs_malloc")).as_py() == PAGES
    assert pc.sum(pc.equal(events, "zs_free")).as_py() == PAGES
    sizes = trace.table.filter(pc.equal(events, "zs_malloc")).column("size_bytes")
    assert pc.min(sizes).as_py() > 0  # kprobes see the object size
    # each call's switched-out time (sched:sched_switch, session 9): on every zs_malloc and
    # zs_free row, a part of its duration (0 where the thread stayed on its CPU)
    calls = trace.table.filter(pc.is_in(events, pa.array(["zs_malloc", "zs_free"])))
    off = calls.column("offcpu_ns")
    assert off.null_count == 0
    off_ns = off.to_numpy().astype(np.int64)
    dur_ns = calls.column("duration_ns").to_numpy().astype(np.int64)
    assert (off_ns <= dur_ns).all()
    print(json.dumps({"offcpu_calls": int((off_ns > 0).sum()), "offcpu_ns": int(off_ns.sum())}))
    # every spinlock wait is a spin_slowpath row (kprobes); the tracepoint adds its
    # rwlock/mutex/rwsem rows, its plain-spinlock rows being a subset of the slowpath's
    tp = trace.table.filter(pc.equal(events, "lock_contention"))
    tp = tp.filter(pc.not_equal(tp.column("lock_flags").fill_null(0), 1))
    slow = trace.table.filter(pc.equal(events, "spin_slowpath"))
    locks = (
        pa.concat_tables([slow, tp])
        if slow.num_rows
        else trace.table.filter(pc.equal(events, "lock_contention"))
    )
    rep = build_measured_report(load_measured(guest / "trace"))
    assert rep["totals"]["contended"] == locks.num_rows
    wait = locks.column("wait_ns").to_numpy(zero_copy_only=False).astype(np.int64)
    assert rep["totals"]["wait_ns_total"] == int(wait.sum())
    for r in rep["by_lock"]:
        if r["lock_kind"] == "class":
            # sizes are known in kprobe captures: a class lock is named by its index
            assert r["name"].startswith("class["), r
    if _kernel_classes(guest / "trace", meta.kernel_release, rep):
        # the index the probes read from each lock's struct size_class is the one the
        # object sizes give (zs_malloc's size, or a zs_free's handle's), lock by lock: the
        # same trace without lock_classes.json names its class locks from the sizes alone
        import shutil

        bare = tmp_path / "bare"
        shutil.copytree(guest / "trace", bare)
        (bare / "lock_classes.json").unlink()
        inferred = build_measured_report(load_measured(bare))
        assert "inferred from object sizes" in inferred["trust"]["class_names"]
        names = {r["addr"]: r["name"] for r in rep["by_lock"] if r["lock_kind"] == "class"}
        assert names == {
            r["addr"]: r["name"] for r in inferred["by_lock"] if r["lock_kind"] == "class"
        }
        # the validation's measured side (contention.json): every wait it counts on a class
        # lock is at an address the kernel's own struct size_class confirms
        from ztrace.vm import contention

        chk = contention.summarize_trace(guest / "trace", guest)["class_locks_by_kernel"]
        assert chk["waits"] > 0 and chk["waits_at_size_class"] == chk["waits"], chk
        assert chk["locks_at_size_class"] == chk["locks"], chk
    print(json.dumps({"release": meta.kernel_release, "totals": rep["totals"]}))


def _kernel_classes(trace: Path, release: str, rep: dict[str, Any]) -> dict[int, int]:
    """lock_classes.json, checked: on a kernel with class locks and zsmalloc built in (the
    6.12 guest: its BTF has struct size_class), every class lock the report lists is in it,
    and named ``class[i]`` by it; on 6.1 (zsmalloc a module: no BTF read; one pool lock) the
    file is absent."""
    path = trace / "lock_classes.json"
    if not release.startswith("6.12"):
        assert not path.exists()
        return {}
    kernel = {int(k): v for k, v in json.loads(path.read_text()).items()}
    rows = [r for r in rep["by_lock"] if r["lock_kind"] == "class"]
    assert rows, rep["by_lock"]
    for r in rows:
        a = int(r["addr"], 16)
        assert a in kernel and r["name"] == f"class[{kernel[a]}]", (r, kernel)
    assert "read from the kernel's struct size_class" in rep["trust"]["class_names"]
    return kernel


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def summary_guest(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same zram scenario under ``capture --summary`` (``-p capture=summary``)."""
    out = tmp_path_factory.mktemp(f"sum-{request.param}")
    return _zram_run(request.param, out, capture="summary")


def test_guest_summary_loads_counts_exactly_and_reports_slowpath_waits(
    summary_guest: Path,
) -> None:
    """``capture --summary`` with kprobes: the programs load (on 6.1 they did not before
    session 27: the verifier refused the histogram index), the per-operation counts are
    exactly the workload's, every spinlock wait is a lock row with its lock address and stack
    (``event`` = ``spin_slowpath``), none is an op row, and `report` counts each wait once."""
    import pyarrow.parquet as pq

    from ztrace.lockflags import measured_waits
    from ztrace.look.measured import build_measured_report, load_measured

    d = summary_guest / "trace"
    files = sorted(d.glob("summary-*.parquet"))
    assert files and not list(d.glob("part-*.parquet"))
    rows = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
    ops: dict[str, int] = {}
    for r in rows:
        if r["record"] == "op":
            ops[r["op"]] = ops.get(r["op"], 0) + r["count"]
        assert sum(r["hist"]) == r["count"]
    assert ops["zs_malloc"] == ops["zs_free"] == PAGES, ops
    assert "spin_slowpath" not in ops  # the bug: slowpath waits were op rows, lockless
    locks = [r for r in rows if r["record"] == "lock"]
    slow = [r for r in locks if r["event"] == "spin_slowpath"]
    assert slow and all(r["lock_addr"] and r["lock_flags"] == 1 for r in slow)
    keep = measured_waits(
        np.array([r["event"] == "spin_slowpath" for r in locks]),
        np.array([r["event"] == "lock_contention" for r in locks]),
        np.array([r["lock_flags"] for r in locks]),
        True,
    )
    counted = [r for r, k in zip(locks, keep, strict=True) if k]
    rep = build_measured_report(load_measured(d))
    assert rep["totals"]["contended"] == sum(r["count"] for r in counted)
    assert rep["totals"]["wait_ns_total"] == sum(r["total_ns"] for r in counted)
    assert rep["trust"]["waits"].startswith("spinlock slowpath kprobe")
    # no sizes in a summary: its class locks are named by the kernel's own index or not at all
    release = pq.read_metadata(files[0]).metadata[b"ztrace.kernel_release"].decode()
    _kernel_classes(d, release, rep)
    kinds = {r["name"]: r["contended"] for r in rep["by_kind"]}
    print(json.dumps({"kinds": kinds, "totals": rep["totals"]}))
