"""Capture against the real kernel, real zram and real BCC (``kernel`` marker).

Skips only without root, or when BPF/bcc is unusable here, and says why.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import ROOT, require_root

pytestmark = pytest.mark.kernel


def _require_bpf() -> None:
    require_root()
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"bcc not importable ({exc})")
    if not Path("/sys/kernel/tracing/events/lock/contention_begin").exists():
        pytest.skip("no lock:contention_begin tracepoint (tracefs not mounted?)")


def _events(table: pa.Table) -> np.ndarray:
    return table.column("event").cast(pa.string()).to_numpy(zero_copy_only=False)


def test_tracepoint_capture_counts_match_the_workload(tmp_path: Path) -> None:
    """3 parallel O_DIRECT writers, 4 passes with a discard after passes 2 and 4: every
    page written is exactly one zs_malloc, every overwrite and discard exactly one zs_free."""
    _require_bpf()
    from ztrace.capture.features import detect
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.format import read_trace
    from ztrace.host.zram import WritersConfig, run_writers, zram_device

    feats = detect()
    if feats.probes["zsmalloc"].status == "missing":
        pytest.skip(f"zsmalloc probe missing here ({feats.probes['zsmalloc'].detail})")
    writers, region, passes = 3, 1024, 4
    cap = Capture(
        CaptureOptions(
            out=tmp_path / "t",
            probes=["zsmalloc", "locks"],
            ringbuf_pages=8192,
            target_tgid=os.getpid(),
            rotate_mb=2,
            reorder_window_ms=100,
        )
    )
    with zram_device(disksize=64 << 20) as dev:
        cap.start()
        th = threading.Thread(target=cap.run, daemon=True)
        th.start()
        workload = WritersConfig(
            writers=writers,
            seconds=120,
            pages_per_writer=region,
            discard_every=2,
            max_passes=passes,
            pin=True,
        )
        res = run_writers(dev, workload)
        mm = dev.mm_stat()
        time.sleep(0.3)
        cap.stop()
        th.join()
    assert res.pages_written == writers * region * passes
    assert mm["orig_data_size"] == 0  # the last discard freed everything
    s = cap.summary
    assert s.lost_events == 0 and s.late_dropped == 0, s.footer()
    trace = read_trace(tmp_path / "t")
    ev = _events(trace.table)
    n_malloc = int((ev == "zs_malloc").sum())
    n_free = int((ev == "zs_free").sum())
    assert n_malloc == res.pages_written
    # frees: the overwrite in passes 2 and 4 and the two discards, each of the whole region
    assert n_free == writers * region * 4
    # every freed handle was allocated earlier in the capture, and frees follow their malloc
    h = trace.table.column("handle").to_numpy()
    ts = trace.table.column("ts_ns").to_numpy()
    assert np.isin(h[ev == "zs_free"], h[ev == "zs_malloc"]).all()
    assert (np.diff(ts.astype(np.int64)) >= 0).all()
    assert trace.meta.source == "capture" and trace.meta.lost_events == 0
    assert len(trace.files) >= 1
    pools = set(trace.table.filter(pa.array(ev != "lock_contention")).column("pool").to_pylist())
    from ztrace.capture.loader import pool_id

    assert pools == {pool_id("zram0")}
    # lock rows, when there are any, carry the lock columns
    locks = trace.table.filter(pa.array(ev == "lock_contention"))
    if locks.num_rows:
        assert locks.column("wait_ns").null_count == 0
        assert set(locks.column("lock_kind").cast(pa.string()).to_pylist()) <= {
            "class",
            "pool",
            "zspage",
            "other",
        }


def test_kprobe_programs_compile_and_load_through_the_verifier() -> None:
    """kprobes cannot attach on this host, but every kprobe program must verify."""
    _require_bpf()
    from bcc import BPF

    from ztrace.capture.loader import PROGRAM, probes_dir

    src = (probes_dir() / PROGRAM).read_bytes()
    names = [
        "zt_zs_malloc_entry",
        "zt_zs_malloc_return",
        "zt_zs_free_entry",
        "zt_zs_free_return",
        "zt_compact_entry",
        "zt_compact_return",
        "zt_migrate_entry",
        "zt_migrate_return",
        "zt_zswap_store_entry",
        "zt_zswap_store_return",
        "zt_zswap_load_entry",
        "zt_zswap_load_return",
        "zt_zswap_inval_entry",
        "zt_zswap_inval_return",
        "zt_zswap_wb_entry",
        "zt_zswap_wb_return",
        "zt_map_entry",
        "zt_access_return",
    ]
    for variant in ([], ["-DZT_ZSWAP_FRONTSWAP"], ["-DZT_ZSWAP_LOAD_INT"]):
        flags = [
            f"-I{probes_dir()}",
            "-DZT_KPROBE_ZS",
            "-DZT_ZSWAP",
            "-DZT_READS",
            "-DZT_RINGBUF_PAGES=64",
            *variant,
        ]
        b = BPF(text=src, cflags=flags)
        try:
            for n in names:
                fn = b.load_func(n.encode(), BPF.KPROBE)
                assert fn.fd > 0, n
        finally:
            b.cleanup()


def test_unprivileged_capture_fails_in_one_line(tmp_path: Path) -> None:
    require_root()  # to switch to nobody
    if not Path("/usr/bin/setpriv").exists():
        pytest.skip("no setpriv")
    out = tmp_path / "o"
    tmp_path.chmod(0o777)
    p = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "ztrace",
            "capture",
            "-o",
            str(out),
            "--duration",
            "1s",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("ztrace: error: capture needs root or CAP_BPF+CAP_PERFMON")
    assert not out.exists()


def test_cli_capture_runs_command_and_prints_footer(tmp_path: Path) -> None:
    _require_bpf()
    from ztrace.format import read_trace

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "ztrace",
            "capture",
            "-o",
            str(tmp_path / "t"),
            "--probes",
            "zsmalloc,locks",
            "--anonymize",
            "--",
            "sleep",
            "0.5",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "=== ztrace capture summary ===" in p.stderr
    assert "lost: 0," in p.stderr
    assert "command exit status: 0" in p.stderr
    t = read_trace(tmp_path / "t", allow_empty=True)
    # the whole process's CPU while consuming, beside the consumer threads' own: every
    # consumer thread is in the process, so it is at least theirs (the writer thread's
    # start, before consuming began, is the only CPU of theirs outside the window: < 5 ms)
    proc = float(t.meta.extra["capture_process_cpu_s"])
    assert proc >= float(t.meta.extra["consumer_cpu_s"]) - 0.005, t.meta.extra
    # the footer prints the same reading to 2 places, the metadata to 3: compare the values,
    # not the strings (a fresh-clone run had 0.00451 s: metadata "0.005", footer "0.00", and
    # "0.005" re-rounded to 2 places is "0.01")
    m = re.search(r"capture process CPU: (\d+\.\d\d) s while consuming", p.stderr)
    assert m, p.stderr
    assert abs(float(m.group(1)) - proc) <= 0.0051, (m.group(0), proc)
    assert t.meta.extra["anonymized"] == "true" and t.meta.extra["host"] == ""
    comms = t.table.column("comm").cast(pa.string()).unique().to_pylist()
    assert all(c.startswith("task-") for c in comms)


def test_kill_9_leaves_only_valid_files(tmp_path: Path) -> None:
    """Capture under load rotating every 0.3 s, SIGKILL it: every part file still reads."""
    _require_bpf()
    from ztrace.format import read_trace, trace_files
    from ztrace.host.zram import zram_device

    out = tmp_path / "t"
    err_path = tmp_path / "stderr"
    with zram_device(disksize=64 << 20), open(err_path, "wb") as err:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ztrace",
                "capture",
                "-o",
                str(out),
                "--quiet",
                "--rotate-seconds",
                "0.3",
                "--probes",
                "zsmalloc,locks",
                "--",
                sys.executable,
                "-m",
                "ztrace",
                "host",
                "writers",
                "--writers",
                "2",
                "--seconds",
                "30",
                "--discard-every",
                "2",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        try:
            # ~5 s here; session 8's second fresh CI run saw no part at all in 60 s from a
            # capture that was still running (its stderr was lost): wait longer, and if the
            # parts still do not come, fail saying what the capture printed and wrote
            t0 = time.monotonic()
            while len(parts := list(out.glob("part-*.parquet"))) < 3:
                assert p.poll() is None, err_path.read_text()
                if time.monotonic() - t0 > 120:
                    hidden = sorted(f.name for f in out.glob(".*")) if out.is_dir() else None
                    pytest.fail(
                        f"{len(parts)} part files after 120 s of a running capture; "
                        f"temporaries {hidden}; its stderr: {err_path.read_text()[-2000:]!r}"
                    )
                time.sleep(0.1)
            time.sleep(0.2)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(30)
        finally:
            # the workload is the capture's child, in its session: end it too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            time.sleep(0.5)  # let the writers' fds close before zram_device resets
    files = trace_files(out)
    assert len(files) >= 3
    rows = 0
    for f in files:
        t = read_trace(f, allow_empty=True)
        rows += t.num_events
        assert t.meta.source == "capture"
    assert rows > 0
    # the file being written at the kill is a hidden temporary, never a part-*.parquet
    assert all(not f.name.startswith(".") for f in files)


def test_pool_filter_by_name(tmp_path: Path) -> None:
    """--pool zram0 keeps the device's ops and names the pool; another name keeps none."""
    _require_bpf()
    from ztrace.capture.features import detect
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.format import read_trace
    from ztrace.host.zram import WritersConfig, run_writers, zram_device

    if detect().probes["zsmalloc"].status == "missing":
        pytest.skip("zsmalloc probe missing here")
    counts = {}
    for pool in ("zram0", "nosuchpool"):
        out = tmp_path / pool
        cap = Capture(
            CaptureOptions(out=out, probes=["zsmalloc"], pool=pool, target_tgid=os.getpid())
        )
        with zram_device(disksize=64 << 20) as dev:
            cap.start()
            th = threading.Thread(target=cap.run, daemon=True)
            th.start()
            res = run_writers(
                dev, WritersConfig(writers=2, seconds=60, pages_per_writer=256, max_passes=2)
            )
            time.sleep(0.6)
            cap.stop()
            th.join()
        t = read_trace(out, allow_empty=True)
        counts[pool] = int((_events(t.table) == "zs_malloc").sum())
        if pool == "zram0":
            assert counts[pool] == res.pages_written
            assert "=zram0" in t.meta.extra["pools"]
    assert counts["nosuchpool"] == 0


def test_batched_tail_reaches_the_ring_without_more_events() -> None:
    """A few events (far fewer than a batch) on an otherwise quiet device must reach the ring
    at the consumer's next read, without a size-triggered flush: the tail is not held back."""
    _require_bpf()
    from ztrace.capture.features import detect
    from ztrace.capture.loader import TICK_NS, Loaded, make_plan
    from ztrace.host.zram import WritersConfig, run_writers, zram_device

    feats = detect()
    if feats.probes["zsmalloc"].status == "missing":
        pytest.skip(f"zsmalloc probe missing here ({feats.probes['zsmalloc'].detail})")
    loaded = Loaded(make_plan(feats, ["zsmalloc"], target_tgid=os.getpid()))
    try:
        assert loaded.plan.batch == 64, loaded.notes
        with zram_device(disksize=16 << 20) as dev:
            one_batch = WritersConfig(
                writers=1, seconds=30, pages_per_writer=8, batch_pages=8, max_passes=1
            )
            res = run_writers(dev, one_batch)
            assert res.pages_written == 8
            got: list[np.ndarray] = []
            # Loaded.read() flushes every CPU's partial batch first (zt_flush_cpu): the first
            # read should hold all 8; the margin covers a loaded host
            deadline = time.monotonic() + 100 * TICK_NS / 1e9
            while sum(len(g) for g in got) < 8 and time.monotonic() < deadline:
                time.sleep(TICK_NS / 1e9)
                got.append(loaded.read())
        ev = np.concatenate(got)
        # 8 zs_malloc (one per page), flushed by the consumer's per-CPU flush, not a full batch
        assert int((ev["type"] == 1).sum()) == 8
        assert loaded.reader.records >= 1
    finally:
        loaded.close()


def test_this_host_uses_raw_tracepoints_where_btf_allows() -> None:
    """On 6.2+ with BTF the kmem/lock probes compile as raw tracepoints (cheaper: no record)."""
    _require_bpf()
    from ztrace.capture import btf
    from ztrace.capture.features import detect
    from ztrace.capture.loader import make_plan

    feats = detect()
    if btf.vmlinux() is None or feats.probes["zsmalloc"].mode != "kmem-tracepoint":
        pytest.skip("no BTF, or zsmalloc is probed with kprobes here")
    plan = make_plan(feats, ["zsmalloc", "locks"])
    assert any(f.startswith("-DZT_KC_NAME_OFF=") for f in plan.cflags)
    assert "-DZT_RAW_TP" in plan.cflags


def test_summary_mode_counts_match_the_workload(tmp_path: Path) -> None:
    """--summary: no event rows, but the per-interval aggregates add up to exactly what the
    workload did, and `report` reads them."""
    _require_bpf()
    import pyarrow.parquet as pq

    from ztrace.capture.features import detect
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.host.zram import WritersConfig, run_writers, zram_device
    from ztrace.look.measured import build_measured_report, load_measured

    feats = detect()
    if feats.probes["zsmalloc"].status == "missing":
        pytest.skip(f"zsmalloc probe missing here ({feats.probes['zsmalloc'].detail})")
    out = tmp_path / "s"
    cap = Capture(
        CaptureOptions(
            out=out,
            probes=["zsmalloc", "locks"],
            target_tgid=os.getpid(),
            summary=True,
            interval_s=0.5,
        )
    )
    with zram_device(disksize=64 << 20) as dev:
        cap.start()
        th = threading.Thread(target=cap.run, daemon=True)
        th.start()
        res = run_writers(
            dev, WritersConfig(writers=2, seconds=120, pages_per_writer=1024, max_passes=3)
        )
        time.sleep(0.6)
        cap.stop()
        th.join()
    files = sorted(out.glob("summary-*.parquet"))
    assert len(files) >= 2 and not list(out.glob(".*.tmp"))
    assert not list(out.glob("part-*.parquet"))  # no event stream
    rows = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
    ops = {}
    for r in rows:
        if r["record"] == "op":
            ops[r["op"]] = ops.get(r["op"], 0) + r["count"]
            assert sum(r["hist"]) == r["count"]
    assert ops["zs_malloc"] == res.pages_written == 2 * 1024 * 3
    assert ops["zs_free"] == 2 * 1024 * 2  # passes 2 and 3 overwrite
    locks = [r for r in rows if r["record"] == "lock"]
    rep = build_measured_report(load_measured(out))
    assert rep["totals"]["contended"] == sum(r["count"] for r in locks)
    assert rep["totals"]["wait_ns_total"] == sum(r["total_ns"] for r in locks)
    assert sum(h["count"] for h in rep["wait_histogram"]) == rep["totals"]["contended"]
    meta = pq.read_schema(files[-1]).metadata
    assert meta[b"ztrace.extra.mode"] == b"summary"
    assert len(meta[b"ztrace.extra.capture_id"]) == 32
    assert cap.summary.lost_events == 0
    # the dashboard reads it too: what it measured, no replay (there is no event stream)
    page = tmp_path / "s.html"
    p = subprocess.run(
        [sys.executable, "-m", "ztrace", "dashboard", str(out), "-o", str(page)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    html = page.read_text()
    total = rep["totals"]["contended"]
    assert f"From the capture itself: {total:,} contended waits" in html
    assert f"events: {sum(r['count'] for r in rows):,} · lost events: 0" in html
    assert "timeline (a --summary capture keeps no event stream to replay)" in p.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "ztrace",
            "dashboard",
            str(out),
            "-o",
            str(page),
            "--force",
            "--locks",
            "class",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("ztrace: error: ")
    assert len(bad.stderr.splitlines()) == 1 and "no event stream to replay" in bad.stderr


def _capture_writers(out: Path, seconds: float, **opts: Any) -> Any:
    """A zsmalloc capture of this process while two zram writers run ``seconds``: the
    finished capture's summary (skips where the zsmalloc probe is missing)."""
    from ztrace.capture.features import detect
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.host.zram import WritersConfig, run_writers, zram_device

    if detect().probes["zsmalloc"].status == "missing":
        pytest.skip("zsmalloc probe missing here")
    cap = Capture(CaptureOptions(out=out, probes=["zsmalloc"], target_tgid=os.getpid(), **opts))
    with zram_device(disksize=64 << 20) as dev:
        cap.start()
        th = threading.Thread(target=cap.run, daemon=True)
        th.start()
        run_writers(dev, WritersConfig(writers=2, seconds=seconds, pages_per_writer=2048))
        time.sleep(0.6)
        cap.stop()
        th.join()
    return cap.summary


def test_summary_max_files_keeps_the_newest_intervals(tmp_path: Path) -> None:
    """--max-files bounds a --summary capture's disk as it does the event parts: the newest
    interval files stay, every aggregated event is kept or counted as deleted, and the
    footer says so."""
    _require_bpf()
    import pyarrow.parquet as pq

    out = tmp_path / "s"
    s = _capture_writers(out, 2, summary=True, interval_s=0.25, max_files=2)
    files = sorted(out.glob("summary-*.parquet"))
    assert len(files) == 2 and s.ring_deleted_files >= 1
    kept = sum(sum(pq.read_table(f, columns=["count"]).column("count").to_pylist()) for f in files)
    assert kept + s.ring_deleted_rows == s.events > 0
    assert files[-1].name == f"summary-{len(files) + s.ring_deleted_files - 1:05d}.parquet"
    assert "ring (--max-files 2): kept the newest 2 parts" in s.footer()
    assert s.files == files


def test_max_size_bounds_the_finished_parts(tmp_path: Path) -> None:
    """--max-size: the finished parts stay within the bound (the part being written is
    extra, docs/capture.md), the oldest go first, and each deleted row is counted."""
    _require_bpf()
    import pyarrow.parquet as pq

    from ztrace.format import read_trace

    limit = 1 << 20
    opts = {"max_size_bytes": limit, "flush_interval_s": 0.05, "reorder_window_ms": 100}
    s = _capture_writers(tmp_path / "t", 3, **opts)
    parts = sorted((tmp_path / "t").glob("part-*.parquet"))
    assert s.ring_deleted_files >= 1, s.footer()
    assert sum(p.stat().st_size for p in parts[:-1]) <= limit
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    assert kept + s.ring_deleted_rows == s.events
    assert parts[-1].name == f"part-{len(parts) + s.ring_deleted_files - 1:05d}.parquet"
    assert "ring (--max-size 1.0 MB): kept the newest" in s.footer()
    read_trace(tmp_path / "t")


def test_trace_metadata_names_host_boot_capture_and_probes(tmp_path: Path) -> None:
    """Host name (not with --anonymize), boot id, a capture id and the exact attachments."""
    _require_bpf()
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.format import read_meta

    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    metas = []
    for anon in (False, True):
        cap = Capture(CaptureOptions(out=tmp_path / f"t{anon}", probes=["locks"], anonymize=anon))
        cap.start()
        cap.stop()
        cap.run()
        metas.append(read_meta(tmp_path / f"t{anon}").extra)
    plain, anon_ = metas
    assert plain["host"] == os.uname().nodename and anon_["host"] == ""
    assert plain["boot_id"] == anon_["boot_id"] == boot
    assert plain["capture_id"] != anon_["capture_id"] and len(plain["capture_id"]) == 32
    assert "contention_begin" in plain["attached"] and "contention_end" in plain["attached"]


def _zram_child(pages: int, *, prefix: str = "") -> list[str]:
    """The writer workload as a child process (one writer), optionally behind a shell
    prefix (e.g. moving itself into a cgroup before exec)."""
    py = f"{sys.executable} -m ztrace host writers --writers 1 --seconds 60 "
    py += f"--pages-per-writer {pages} --max-passes 1"
    return ["/bin/sh", "-c", f"{prefix}exec {py}"]


def test_cpu_filter_keeps_only_the_listed_cpus(tmp_path: Path) -> None:
    _require_bpf()
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    from ztrace.capture.features import detect
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.format import read_trace
    from ztrace.host.zram import WritersConfig, run_writers, zram_device

    if detect().probes["zsmalloc"].status == "missing":
        pytest.skip("zsmalloc probe missing here")
    cap = Capture(
        CaptureOptions(out=tmp_path / "t", probes=["zsmalloc"], target_tgid=os.getpid(), cpus=[1])
    )
    with zram_device(disksize=32 << 20) as dev:
        cap.start()
        th = threading.Thread(target=cap.run, daemon=True)
        th.start()
        # writer i is pinned to CPU i: only writer 1's pages may show up
        res = run_writers(
            dev, WritersConfig(writers=2, seconds=60, pages_per_writer=512, max_passes=2, pin=True)
        )
        time.sleep(0.3)
        cap.stop()
        th.join()
    t = read_trace(tmp_path / "t").table
    ev = _events(t)
    assert set(t.column("cpu").to_pylist()) <= {1}
    assert int((ev == "zs_malloc").sum()) == res.per_thread_pages[1] == 1024
    assert "-DZT_CPU_MASK0=0x2ULL" in cap.plan.cflags


def test_cgroup_filter_keeps_only_tasks_in_the_cgroup(tmp_path: Path) -> None:
    """Two writer processes on the device; only the one inside the cgroup is recorded."""
    _require_bpf()
    import json as _json

    from ztrace.capture.features import detect
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.format import read_trace
    from ztrace.host.zram import zram_device

    if detect().probes["zsmalloc"].status == "missing":
        pytest.skip("zsmalloc probe missing here")
    root = next(
        (
            Path(p)
            for p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
            if Path(p, "cgroup.controllers").exists() or Path(p, "cgroup.type").exists()
        ),
        None,
    )
    if root is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    cg = root / f"ztrace-test-{os.getpid()}"
    cg.mkdir()
    try:
        cap = Capture(CaptureOptions(out=tmp_path / "t", probes=["zsmalloc"], cgroup=str(cg)))
        with zram_device(disksize=32 << 20):
            cap.start()
            th = threading.Thread(target=cap.run, daemon=True)
            th.start()
            inside = subprocess.Popen(
                _zram_child(1024, prefix=f"echo $$ > {cg}/cgroup.procs && "),
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            outside = subprocess.Popen(
                _zram_child(768), stdout=subprocess.PIPE, text=True, cwd=ROOT
            )
            res_in = _json.loads(inside.communicate(timeout=120)[0].splitlines()[-1])
            res_out = _json.loads(outside.communicate(timeout=120)[0].splitlines()[-1])
            time.sleep(0.3)
            cap.stop()
            th.join()
    finally:
        cg.rmdir()
    ev = _events(read_trace(tmp_path / "t").table)
    assert res_out["pages_written"] == 768  # the outside writer did write
    assert int((ev == "zs_malloc").sum()) == res_in["pages_written"] == 1024


def test_max_files_keeps_the_newest_parts_and_says_so(tmp_path: Path) -> None:
    _require_bpf()
    import pyarrow.parquet as pq

    from ztrace.capture.features import detect
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.format import read_trace
    from ztrace.host.zram import WritersConfig, run_writers, zram_device

    if detect().probes["zsmalloc"].status == "missing":
        pytest.skip("zsmalloc probe missing here")
    cap = Capture(
        CaptureOptions(
            out=tmp_path / "t",
            probes=["zsmalloc"],
            target_tgid=os.getpid(),
            rotate_mb=0.25,
            max_files=2,
            flush_interval_s=0.05,
            reorder_window_ms=100,
        )
    )
    with zram_device(disksize=64 << 20) as dev:
        cap.start()
        th = threading.Thread(target=cap.run, daemon=True)
        th.start()
        # writing for 2 s, flushed every 50 ms: many small writes, many 0.25 MB parts
        run_writers(dev, WritersConfig(writers=2, seconds=2, pages_per_writer=2048))
        time.sleep(0.3)
        cap.stop()
        th.join()
    s = cap.summary
    parts = sorted((tmp_path / "t").glob("part-*.parquet"))
    assert len(parts) == 2 and s.ring_deleted_files >= 1
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    assert kept + s.ring_deleted_rows == s.events  # every written row is kept or counted
    # the newest parts: the last kept part is the highest index ever written
    assert parts[-1].name == f"part-{len(parts) + s.ring_deleted_files - 1:05d}.parquet"
    assert "ring (--max-files 2): kept the newest 2 parts" in s.footer()
    read_trace(tmp_path / "t")  # what is left is a valid trace


def test_cli_pid_alias_and_interval_line(tmp_path: Path) -> None:
    _require_bpf()
    args = f"-o {tmp_path / 't'} -p {os.getpid()} --probes locks -i 0.5s --duration 1.6s"
    cmd = [sys.executable, "-m", "ztrace", "capture", *args.split()]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    head = [i for i, line in enumerate(lines) if line.split()[:2] == ["time_s", "events"]]
    assert head, p.stderr
    rows = [line.split() for line in lines[head[0] + 1 :] if line.strip()[:1].isdigit()]
    assert len(rows) >= 2 and all(len(r) == 5 for r in rows)
    assert "-DZT_TARGET_TGID" not in p.stderr


def test_comm_follows_a_rename_between_events_on_one_cpu() -> None:
    """Events carry the comm the task had at each event, although the probes cache the last
    comm per CPU (probes/zs_capture.bpf.c: zt_comm): a writer thread pinned to one CPU writes
    pages as `zt-before`, renames itself (prctl PR_SET_NAME) and writes more as `zt-after`.
    Every zs_malloc before the rename must say `zt-before`, every one after it `zt-after`
    (a cache without the task_rename invalidation keeps `zt-before`)."""
    _require_bpf()
    import ctypes
    import mmap

    from ztrace.capture.features import detect
    from ztrace.capture.loader import TICK_NS, Loaded, make_plan
    from ztrace.host.zram import PAGE, zram_device

    feats = detect()
    if feats.probes["zsmalloc"].status == "missing":
        pytest.skip(f"zsmalloc probe missing here ({feats.probes['zsmalloc'].detail})")
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_name, n = 15, 16
    loaded = Loaded(make_plan(feats, ["zsmalloc"], target_tgid=os.getpid()))
    marks: dict[str, int] = {}

    def writer(path: str) -> None:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})  # one CPU: every event meets that CPU's cached comm
        marks["tid"] = threading.get_native_id()
        buf = mmap.mmap(-1, PAGE)
        fd = os.open(path, os.O_RDWR | os.O_DIRECT)
        try:
            for k, name in enumerate((b"zt-before", b"zt-after")):
                assert libc.prctl(pr_set_name, name, 0, 0, 0) == 0
                marks[name.decode()] = time.monotonic_ns()  # CLOCK_MONOTONIC, as ts_ns
                for i in range(n):
                    buf[:] = os.urandom(PAGE)  # incompressible and never same-filled
                    os.pwrite(fd, buf, (k * n + i) * PAGE)
        finally:
            os.close(fd)
            buf.close()

    try:
        with zram_device(disksize=16 << 20) as dev:
            th = threading.Thread(target=writer, args=(dev.path,))
            th.start()
            th.join()
            got: list[np.ndarray] = []
            deadline = time.monotonic() + 100 * TICK_NS / 1e9
            while sum(int((g["type"] == 1).sum()) for g in got) < 2 * n:
                if time.monotonic() > deadline:
                    break
                time.sleep(TICK_NS / 1e9)
                got.append(loaded.read())
    finally:
        loaded.close()
    ev = np.concatenate(got)
    ev = ev[(ev["type"] == 1) & (ev["tid"] == marks["tid"])]  # the writer's zs_malloc
    assert len(ev) == 2 * n
    after = ev["ts_ns"] >= marks["zt-after"]
    assert int(after.sum()) == n
    assert set(ev["comm"][~after].tolist()) == {b"zt-before"}
    assert set(ev["comm"][after].tolist()) == {b"zt-after"}


def _first(insns: bytes, opcodes: set[int], off: int) -> int:
    """Index of the first BPF instruction with one of ``opcodes`` and offset ``off``."""
    import struct

    for i in range(0, len(insns), 8):
        op, _regs, o = struct.unpack_from("<BBh", insns, i)
        if op in opcodes and o == off:
            return i // 8
    raise AssertionError(f"no instruction {sorted(opcodes)} at offset {off}")


def test_a_batch_is_read_only_after_it_is_claimed() -> None:
    """The compiled programs store ``busy`` (struct zs_batch_hdr offset 6, u16) before they
    first load ``n`` (offset 0, u32). Built without zt_claim's barrier, clang hoisted the load
    of ``n`` in zt_flush_cpu above the store, and a probe in an interrupt between the two
    produced a ring record whose size and count disagreed (session 12's 6.1 guest)."""
    _require_bpf()
    from bcc import BPF

    from ztrace.capture.loader import PROGRAM, probes_dir

    src = (probes_dir() / PROGRAM).read_bytes()
    b = BPF(text=src, cflags=[f"-I{probes_dir()}", "-DZT_SELFTEST"])
    try:
        for fn in (b"zt_flush_cpu", b"zt_selftest"):  # zt_selftest: the probes' zt_begin
            insns = b.dump_func(fn)
            store_busy = _first(insns, {0x6B, 0x6A}, 6)  # STX/ST, size H
            load_n = _first(insns, {0x61}, 0)  # LDX, size W
            assert store_busy < load_n, (fn, store_busy, load_n)
    finally:
        b.cleanup()


def test_a_failed_last_read_still_writes_what_was_read(tmp_path: Path) -> None:
    """If the last read fails (here the per-CPU flush syscall is made to fail once the
    workload's events are read), the capture still writes and closes every event it read,
    then raises. Before session 13 the error left the output directory empty."""
    _require_bpf()
    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.format import read_trace
    from ztrace.host.zram import WritersConfig, run_writers, zram_device

    cap = Capture(
        CaptureOptions(
            out=tmp_path / "t",
            probes=["zsmalloc"],
            ringbuf_pages=8192,
            target_tgid=os.getpid(),
            reorder_window_ms=100,
        )
    )
    with zram_device(disksize=64 << 20) as dev:
        cap.start()
        cfg = WritersConfig(writers=2, seconds=60, pages_per_writer=512, max_passes=1)
        res = run_writers(dev, cfg)
        assert cap.loaded is not None
        cap.loaded.final_flush()  # every CPU's partial batch into the ring

        def refuse() -> None:
            raise OSError(16, "BPF_PROG_TEST_RUN refused (injected)")

        cap.loaded.final_flush = refuse  # type: ignore[method-assign]
        with pytest.raises(OSError, match="injected"):
            cap.run(until=lambda: True)  # one read, then finish(), whose flush fails
    trace = read_trace(tmp_path / "t")
    assert int((_events(trace.table) == "zs_malloc").sum()) == res.pages_written == 1024


_MMAP_STORM = """
import mmap, threading, time
stop = time.time() + 1.5
def w():
    while time.time() < stop:
        m = mmap.mmap(-1, 1 << 16); m[0:1] = b"x"; m.close()
ts = [threading.Thread(target=w) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
"""


def _capture_locks(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ztrace capture --probes locks -o OUT ARGS...`` from the source tree."""
    return subprocess.run(
        [sys.executable, "-m", "ztrace", "capture", "-o", str(out), "--probes", "locks", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def _lost_detail(trace: object) -> dict[str, str]:
    """The trace's ``extra.lost_detail`` (``name=count,...``) as a dict."""
    pairs = trace.meta.extra["lost_detail"].split(",")  # type: ignore[attr-defined]
    return dict(kv.split("=") for kv in pairs)


@pytest.mark.parametrize("mode", ["each", "per-lock"])
def test_lock_stacks_per_lock_reuses_a_locks_last_stack(tmp_path: Path, mode: str) -> None:
    """--lock-stacks per-lock walks a lock address's stack on its first wait and every 64th;
    the waits between carry that walk's stack id, and the footer and metadata count them.
    Four threads mapping and unmapping contend on their process's mmap_lock (an rwsem: the
    lock:contention_begin tracepoint fires on each wait)."""
    _require_bpf()
    import json

    import polars as pl

    from ztrace.format import read_trace

    out = tmp_path / "t"
    p = _capture_locks(out, "--lock-stacks", mode, "--", sys.executable, "-c", _MMAP_STORM)
    assert p.returncode == 0, p.stderr
    t = read_trace(out)
    detail = _lost_detail(t)
    reused = int(detail["stack_reused"])
    locks = pl.from_arrow(t.table).filter(pl.col("event").cast(pl.String) == "lock_contention")
    rows = locks.height
    assert rows >= 200, f"only {rows} lock waits: the mmap storm did not contend\n{p.stderr}"
    known = {int(k) for k in json.loads((out / "stacks.json").read_text())}
    walked = locks.filter(pl.col("stack_id") >= 0)
    # every wait names a stack the capture symbolised, walked or reused
    assert set(walked["stack_id"].to_list()) <= known
    assert walked.height >= 0.99 * rows
    if mode == "each":
        assert t.meta.extra["lock_stacks"] == "each"
        assert reused == 0 and "lock stacks:" not in p.stderr
        return
    assert t.meta.extra["lock_stacks"] == "per-lock:64"
    assert f"lock stacks: per-lock, {reused} waits reused" in p.stderr
    addresses = locks["lock_addr"].n_unique()
    # A wait (one row, at contention_end) can begin more than once: a mutex's first waiter
    # re-emits contention_begin on every pass of its wait loop (kernel/locking/mutex.c:
    # __mutex_lock_common). Since session 32 a begin again keeps the first and walks
    # nothing, but a begin whose row is not written (its end missed, the capture stopping
    # mid-wait) still walks or reuses, so reuses are not bounded by the rows (before, CI
    # once counted 253,497 reuses for 223,327 rows with a runaway guest loading the host).
    # Walks: each address's first begin and every 64th (fewer when two CPUs race the
    # count), begins = reused + walks, so walks <= (addresses + reused / 64 + 1) * 64 / 63.
    walks_at_most = math.ceil((addresses + reused / 64 + 1) * 64 / 63)
    # every row's last begin walked or reused
    assert reused >= 0.9 * (rows - walks_at_most), (reused, rows, addresses)
    # so an address's waits carry few distinct stacks: one per walk at most
    pairs = locks.select("lock_addr", "stack_id").unique().height
    assert pairs <= walks_at_most, (pairs, walks_at_most)


def test_a_wait_longer_than_the_reorder_window_is_kept_in_order(tmp_path: Path) -> None:
    """A lock wait is emitted at its end with its begin time. One that lasts ~2 s, four
    times the default 500 ms reorder window, while thousands of short waits begin and end
    around it, used to be dropped as `late_for_reorder`: the writer had already written
    later rows. The writer now stays behind the oldest wait still in flight in the kernel
    (lock_begin), so the long wait is written, in time order, and nothing is lost."""
    _require_bpf()
    import polars as pl

    from ztrace.format import read_trace

    out = tmp_path / "t"
    p = _capture_locks(out, "--", sys.executable, "-m", "tests.support.long_wait", "2", "3.5")
    if p.returncode != 0 and "userfaultfd:" in p.stderr:
        pytest.skip(f"no userfaultfd here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, p.stderr
    waited = float(re.search(r"^waited (\S+)$", p.stdout, re.MULTILINE)[1])  # type: ignore[index]
    assert waited >= 1.0, p.stdout  # the set-up worked: the waiter really waited
    t = read_trace(out)
    detail = _lost_detail(t)
    assert detail["late_for_reorder"] == "0", (detail, p.stderr)
    assert "late_for_reorder 0" in p.stderr
    ts = t.table.column("ts_ns").to_numpy()
    assert np.all(ts[1:] >= ts[:-1]), "rows out of time order"
    locks = pl.from_arrow(t.table).filter(pl.col("event").cast(pl.String) == "lock_contention")
    long = locks.filter(pl.col("wait_ns") >= 1_000_000_000)
    assert long.height == 1, long
    # the kernel's wait is the one the waiter timed (its write's syscall adds ~nothing)
    assert abs(long["wait_ns"][0] / 1e9 - waited) < 0.1, (long["wait_ns"][0], waited)
    # and the short waits really did overtake it: many began after it and ended before it
    begin = long["ts_ns"][0]
    end = begin + long["wait_ns"][0]
    inside = locks.filter((pl.col("ts_ns") > begin) & (pl.col("ts_ns") + pl.col("wait_ns") < end))
    assert inside.height >= 100, f"only {inside.height} waits inside the long one\n{p.stderr}"


def test_fentry_is_planned_where_zsmalloc_is_built_in_and_refusal_falls_back() -> None:
    """zs_malloc/zs_free go through fentry/fexit when vmlinux BTF has them (this host's
    zsmalloc is built in; zs_malloc has 4 arguments since 6.16), and through kprobes with
    --no-fentry. This host refuses every fentry load (EPERM although root, `doctor
    --check-fentry`): the loader then says why and recompiles with the kprobe pairs, which
    this host has none of either, so the load ends in the kprobe error, not the fentry one."""
    _require_bpf()
    import dataclasses

    from ztrace.capture.features import detect
    from ztrace.capture.loader import Loaded, check_fentry, make_plan, zs_fentry_nargs
    from ztrace.errors import FeatureMissingError

    nargs = zs_fentry_nargs()
    if nargs is None:
        pytest.skip("zs_malloc/zs_free not in vmlinux BTF here")
    feats = detect()
    assert nargs == (4 if feats.version >= (6, 16) else 3)
    kp = dataclasses.replace(
        feats.probes["zsmalloc"], mode="kprobe", attach={"malloc": "zs_malloc", "free": "zs_free"}
    )
    as_kprobe = dataclasses.replace(feats, probes={**feats.probes, "zsmalloc": kp})
    plan = make_plan(as_kprobe, ["zsmalloc"])
    assert plan.fentry == ["zs_malloc", "zs_free"]
    assert "-DZT_FENTRY_ZS" in plan.cflags and f"-DZT_MALLOC_NARGS={nargs}" in plan.cflags
    assert "zs_malloc" not in [fn for fn, _, _ in plan.kprobes]
    off = make_plan(as_kprobe, ["zsmalloc"], fentry=False)
    assert off.fentry == [] and "-DZT_FENTRY_ZS" not in off.cflags
    assert [fn for fn, _, _ in off.kprobes][:2] == ["zs_malloc", "zs_free"]
    works, why = check_fentry()
    if works:
        pytest.skip(f"fentry works on this kernel ({why}): no refusal to fall back from")
    with pytest.raises(FeatureMissingError, match="cannot attach kprobe to `zs_malloc`"):
        Loaded(plan)
    assert "cannot compile/load the BPF program" in plan.fentry_refused
    assert plan.fentry == [] and "-DZT_FENTRY_ZS" not in plan.cflags
    assert [fn for fn, _, _ in plan.kprobes][:2] == ["zs_malloc", "zs_free"]


def _run_lock_prog(fd: int, *args: int) -> None:
    """Run one of the capture's attached lock programs once, in this thread, with these
    tracepoint arguments (BPF_PROG_TEST_RUN on a raw tracepoint program: ctx is the
    tracepoint's u64 argument array)."""
    import ctypes

    from ztrace.capture.loader import prog_test_run, prog_test_run_attr

    ctx = (ctypes.c_uint64 * len(args))(*args)
    err = prog_test_run(prog_test_run_attr(fd, ctx))
    if err:
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")


def test_a_wait_begun_again_or_nesting_another_keeps_its_row(tmp_path: Path) -> None:
    """The kernel's lock programs, run on begins and ends this test orders (the real, attached
    programs through BPF_PROG_TEST_RUN, in this thread, so they see this task): a mutex
    wait that begins again keeps its first begin and flags (kernel/locking/mutex.c re-emits
    contention_begin on each pass of its wait loop); a wait nested inside it (the runqueue
    lock in schedule(), an interrupt's spinlock) gets its own row and leaves the outer one
    whole; a third level is not recorded and counted as an end without a begin. Before
    session 32 the nested begin overwrote the outer one, whose row was lost (CI, stop 37)."""
    _require_bpf()
    import polars as pl

    from ztrace.capture.session import Capture, CaptureOptions
    from ztrace.format import read_trace

    cap = Capture(
        CaptureOptions(
            out=tmp_path / "t", probes=["locks"], target_tgid=os.getpid(), reorder_window_ms=50
        )
    )
    cap.start()
    assert cap.loaded is not None
    funcs = {k.decode(): f.fd for k, f in cap.loaded.bpf.funcs.items()}
    begin = next(fd for name, fd in funcs.items() if name.endswith("contention_begin"))
    end = next(fd for name, fd in funcs.items() if name.endswith("contention_end"))
    th = threading.Thread(target=cap.run, daemon=True)
    th.start()
    # addresses no real lock has (the programs' kernel reads of them fail, as they may)
    outer, inner, third = 0xFFFF_8880_DEAD_0000, 0xFFFF_8880_DEAD_1000, 0xFFFF_8880_DEAD_2000
    mutex_spin, mutex, spin = 33, 32, 1  # LCB_F_MUTEX | LCB_F_SPIN, LCB_F_MUTEX, LCB_F_SPIN
    t0 = time.monotonic_ns()
    _run_lock_prog(begin, outer, mutex_spin)
    time.sleep(0.02)
    _run_lock_prog(begin, outer, mutex)  # the same wait, begun again after its spin
    _run_lock_prog(begin, inner, spin)  # a nested wait
    time.sleep(0.01)
    _run_lock_prog(begin, third, spin)  # a third level
    _run_lock_prog(end, third, 0)
    _run_lock_prog(end, inner, 0)
    _run_lock_prog(begin, outer, mutex_spin)  # woken, not first in line: begun again
    time.sleep(0.02)
    _run_lock_prog(end, outer, 0)
    t1 = time.monotonic_ns()
    time.sleep(0.2)
    cap.stop()
    th.join()
    t = read_trace(tmp_path / "t")
    rows = pl.from_arrow(t.table).filter(pl.col("lock_addr").is_in([outer, inner, third]))
    by = {r["lock_addr"]: r for r in rows.iter_rows(named=True)}
    assert set(by) == {outer, inner}, rows
    o, i = by[outer], by[inner]
    assert o["tid"] == i["tid"] == threading.get_native_id()
    # the outer wait: from its first begin (its flags) to its end, ~50 ms, the nested inside
    assert o["lock_flags"] == mutex_spin
    assert t0 <= o["ts_ns"] and o["ts_ns"] + o["wait_ns"] <= t1
    assert o["wait_ns"] >= 50_000_000
    assert o["ts_ns"] < i["ts_ns"] and i["ts_ns"] + i["wait_ns"] < o["ts_ns"] + o["wait_ns"]
    assert i["lock_flags"] == spin and i["wait_ns"] >= 10_000_000
    assert int(_lost_detail(t)["end_without_begin"]) >= 1  # the third level's end
