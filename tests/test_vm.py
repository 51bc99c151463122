"""Boot both stock Debian guest kernels (6.1, 6.12) under qemu and check real zram traffic.

Slow and real: the first run builds the guest image (debootstrap + apt, a few minutes, cached
under $ZTRACE_VM_CACHE), then each kernel boots under TCG and runs the ``zram`` scenario: fio
writes 60%-compressible data to /dev/zram0 with several jobs, then discards the device. The
assertions compare the kernel's own counters, and once ``ztrace capture`` exists, the captured
Parquet against them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ztrace.errors import ConfigError
from ztrace.vm import run as vmrun

# Only the guest tests are marked vm/slow; the harness checks at the bottom run anywhere.
VM = [pytest.mark.vm, pytest.mark.slow]

JOBS = 4
MB_PER_JOB = 32  # 4 x 32 MiB = 32768 pages: enough traffic, ~1 min per kernel under TCG
PAGES = JOBS * MB_PER_JOB * 256


def _why_not_runnable() -> str | None:
    """Reason the VM tests cannot run on this machine, or None. Only 'qemu cannot run' skips."""
    if vmrun.find_image() is not None and shutil.which(vmrun.QEMU):
        return None
    if os.geteuid() != 0:
        return "building the guest image needs root (debootstrap), and no image is cached"
    if not shutil.which(vmrun.QEMU) and not shutil.which("apt-get"):
        return f"{vmrun.QEMU} is missing and there is no apt-get to install it"
    return None


_REASON = _why_not_runnable()
if _REASON:
    print(f"test_vm: skipping: {_REASON}")


@pytest.fixture(scope="module")
def image() -> vmrun.VmImage:
    if _REASON:
        pytest.skip(_REASON)
    return vmrun.build_image()


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def zram_run(
    request: pytest.FixtureRequest, image: vmrun.VmImage, tmp_path_factory: pytest.TempPathFactory
) -> vmrun.VmResult:
    kernel = request.param
    out = tmp_path_factory.mktemp(f"vm-zram-{kernel}")
    return vmrun.run_scenario(
        kernel,
        "zram",
        out,
        vmrun.GuestOptions(params={"jobs": str(JOBS), "mb_per_job": str(MB_PER_JOB)}, timeout=900),
    )


def _counters(run: vmrun.VmResult, label: str) -> dict[str, Any]:
    path = run.outdir / "counters" / f"{label}.json"
    assert path.is_file(), f"guest wrote no {path}; see {run.outdir / 'guest.log'}"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.vm
@pytest.mark.slow
def test_guest_kernel_release(zram_run: vmrun.VmResult) -> None:
    uname = _counters(zram_run, "before")["uname_r"]
    assert uname == zram_run.release
    assert uname.startswith(zram_run.kernel + "."), uname
    inv = json.loads((zram_run.outdir / "inventory.json").read_text())
    names = {ln.split()[2] for ln in inv["kallsyms"]}
    assert {"zs_malloc", "zs_free"} <= names
    assert "vmlinux" in inv["btf"]


@pytest.mark.vm
@pytest.mark.slow
def test_zram_stores_and_discards_every_page(zram_run: vmrun.VmResult) -> None:
    before = _counters(zram_run, "before")["zram"]["zram0"]
    written = _counters(zram_run, "after-write")["zram"]["zram0"]
    after = _counters(zram_run, "after-discard")["zram"]["zram0"]
    assert before["mm_stat"]["orig_data_size"] == 0
    mm = written["mm_stat"]
    # fio --refill_buffers makes every page distinct and non-zero: no same-filled shortcuts, so
    # every written page is a zsmalloc object.
    assert mm["same_pages"] == 0
    assert mm["orig_data_size"] == PAGES * 4096
    # 60% compressible: stored bytes are well under the original, but not trivially small.
    ratio = mm["compr_data_size"] / mm["orig_data_size"]
    assert 0.2 < ratio < 0.8, ratio
    assert mm["mem_used_total"] >= mm["compr_data_size"]
    assert written["io_stat"]["failed_writes"] == 0
    assert written["stat"]["write_sectors"] == PAGES * 8
    # The discard freed every object and zram counted one free notification per page.
    assert after["mm_stat"]["orig_data_size"] == 0
    assert after["mm_stat"]["compr_data_size"] == 0
    assert after["io_stat"]["notify_free"] - written["io_stat"]["notify_free"] == PAGES


@pytest.mark.vm
@pytest.mark.slow
def test_zram_capture_matches_kernel_counters(zram_run: vmrun.VmResult) -> None:
    avail = (zram_run.outdir / "capture_available").read_text().strip()
    assert avail == "yes", "`ztrace capture --help` failed in the guest; see guest.log"
    import pyarrow.compute as pc

    from ztrace.format import read_trace

    trace = read_trace(zram_run.outdir / "trace")
    assert trace.meta.lost_events == 0
    assert trace.meta.source == "capture"
    assert trace.meta.kernel_release == zram_run.release
    written = _counters(zram_run, "after-write")["zram"]["zram0"]
    after = _counters(zram_run, "after-discard")["zram"]["zram0"]
    stored = written["mm_stat"]["orig_data_size"] // 4096 - written["mm_stat"]["same_pages"]
    freed = after["io_stat"]["notify_free"] - written["io_stat"]["notify_free"]
    events = trace.table.column("event").cast("string")
    mallocs = trace.table.filter(pc.equal(events, "zs_malloc"))
    frees = trace.table.filter(pc.equal(events, "zs_free"))
    # One zs_malloc per stored page, one zs_free per discarded page, nothing lost.
    assert mallocs.num_rows == stored == PAGES
    assert frees.num_rows == freed == PAGES
    # zram passes the compressed length to zs_malloc and adds the same length to
    # compr_data_size, so the captured sizes must sum to the kernel's byte count exactly.
    assert pc.sum(mallocs.column("size_bytes")).as_py() == written["mm_stat"]["compr_data_size"]
    # Every freed handle was allocated during the capture.
    assert set(frees.column("handle").to_pylist()) == set(mallocs.column("handle").to_pylist())


# ------------------------------------------------- in-kernel load generator (zsstress.ko)


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def zsstress_heavy(
    request: pytest.FixtureRequest, image: vmrun.VmImage, tmp_path_factory: pytest.TempPathFactory
) -> vmrun.VmResult:
    out = tmp_path_factory.mktemp(f"vm-zsstress-{request.param}")
    # 4 threads on 2 vCPUs, back to back, one size class: ~1-2 min per kernel under TCG
    params = {"level": "heavy", "ops": "5000"}
    return vmrun.run_scenario(
        request.param, "zsstress", out, vmrun.GuestOptions(params=params, timeout=900)
    )


@pytest.mark.vm
@pytest.mark.slow
def test_zsstress_contends_on_zsmalloc_locks(zsstress_heavy: vmrun.VmResult) -> None:
    log = (zsstress_heavy.outdir / "zsstress.log").read_text()
    assert "zsstress: done" in log and "bad_data=0" in log, log
    side = json.loads((zsstress_heavy.outdir / "trace.kernel" / "contention.json").read_text())
    assert side["lost_events"] == 0
    done = dict(re.findall(r"(\w+)=(\d+)", log.split("zsstress: done", 1)[1].splitlines()[0]))
    mallocs, frees, reads = (int(done[k]) for k in ("mallocs", "frees", "reads"))
    # 4 threads x 5000 ops, each one zs_malloc, zs_free or read; rmmod frees the rest
    assert mallocs + frees + reads == 4 * 5000
    ev = side["event_counts"]
    assert ev["zs_malloc"] == mallocs == ev["zs_write"]  # each stored object written once (WO)
    assert ev["zs_free"] == mallocs  # in the loop or at rmmod: every object freed
    assert ev["zs_read"] == reads
    zs = side["zsmalloc"]
    assert side["has_spin_slowpath"], "no spin_slowpath rows: the slowpath kprobe did not attach"
    if zsstress_heavy.kernel == "6.1":
        # hundreds per 10k ops per thread when measured; some even on a loaded host
        assert zs["contended"] > 0 and zs["wait_ns_total"] > 0, side
        # 6.1 (6.2 consolidation backported): one pool spinlock, named by stack and by address
        assert side["by_kind"]["pool"]["contended"] == zs["contended"]
        assert [lk["name"] for lk in side["locks"]] == ["pool.lock"]
        assert zs["stack_and_address_agree"] == zs["contended"]
    else:
        # 6.12: zs_malloc/zs_free take class locks; zs_free's and the map path's read side of
        # pool->migrate_lock never waits without a migration writer. Counts are ~10x below
        # 6.1's (20 vs 404 per 40k ops measured), so a quiet run may see none: only the kind
        # is asserted here; the bundled sample pins the numbers.
        assert side["by_kind"]["class"]["contended"] == zs["contended"]


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.vm_long
def test_several_zsstress_loads_in_one_boot_split_per_load(
    image: vmrun.VmImage, tmp_path: Path
) -> None:
    """A boot per kernel, four loads each under one capture (none light none light), split
    into four runs whose events match each load's own counters (split.py checks, this too)."""
    from ztrace.vm.matrix import cells_named, run_boots

    cells = cells_named(["zsstress-none", "zsstress-light"])
    cells = [type(c)(c.name, c.scenario, c.params | {"ops": "2000"}) for c in cells]
    done = run_boots(tmp_path, cells, 2, 2)
    assert len(done) == 8  # 2 cells x 2 loads x 2 kernels
    for d in done:
        side = json.loads((d / "trace.kernel" / "contention.json").read_text())
        log = (d / "zsstress.log").read_text()
        n = dict(re.findall(r"(\w+)=(\d+)", log.split("zsstress: done", 1)[1].splitlines()[0]))
        ev = side["event_counts"]
        assert ev["zs_malloc"] == int(n["mallocs"]) and ev["zs_read"] == int(n["reads"])
        assert side["lost_events"] == 0
        if d.parent.parent.name == "zsstress-none":
            assert side["zsmalloc"]["contended"] == 0  # one thread: nothing to contend with


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.vm_long
def test_numpy_sorts_right_in_the_tcg_guest(image: vmrun.VmImage, tmp_path: Path) -> None:
    """The capture segfault's cause and fix (docs/vm.md): under qemu's TCG numpy's AVX2 int64
    argsort is wrong; with lib.sh's NPY_DISABLE_CPU_FEATURES every round is right."""
    run = vmrun.run_scenario(
        "6.1", "npsort", tmp_path / "np", vmrun.GuestOptions(params={"rounds": "60"})
    )
    lines = (run.outdir / "npsort-baseline.jsonl").read_text().splitlines()
    head, last = json.loads(lines[0]), json.loads(lines[-2])
    assert head["dispatch_on"] == [] and last == {"rounds": 60, "bad": 0}
    assert lines[-1] == "rc=0"
    # as shipped: reported, not asserted (it depends on the host's qemu and CPU)
    print((run.outdir / "npsort-default.jsonl").read_text().splitlines()[-2])


@pytest.mark.vm
@pytest.mark.slow
def test_zsstress_module_builds_for_both_guest_kernels(image: vmrun.VmImage) -> None:
    from ztrace.vm.kmod import build_module

    for kernel in vmrun.KERNELS:
        ko = build_module(image, kernel)
        release = image.kernel_files(kernel)[2]
        # vermagic must name the guest's exact release, or insmod refuses the module
        assert f"vermagic={release} ".encode() in ko.read_bytes()


# ------------------------------------------------------------ zram oracle inside the guest


def _oracle_in_guest(
    kernel: str, ops: int, image: vmrun.VmImage, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Run the ``oracle`` scenario with ``ops`` ops and check what holds on every kernel:
    page-exact before and after compaction, and per op. numba's JIT under TCG, not the ops,
    dominates the ~6-7 min oracle phase (2,400 ops: 445 s on 6.12; 4,800: 440 s on 6.1)."""
    out = tmp_path_factory.mktemp(f"vm-oracle-{kernel}")
    vmrun.run_scenario(
        kernel, "oracle", out, vmrun.GuestOptions(params={"ops": str(ops)}, timeout=1500)
    )
    res: dict[str, Any] = json.loads((out / "oracle.json").read_text())
    assert res["kernel_release"].startswith(kernel + ".")
    assert res["checkpoints"] > 0 and res["zs_malloc_events"] > 0
    assert res["mismatches_before_compaction"] == 0
    assert res["mismatches_after_compaction"] == 0
    assert res["per_op_mismatches"] == 0 and res["classification_errors"] == 0
    return res


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.vm_long
def test_zram_oracle_in_the_61_guest(
    image: vmrun.VmImage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """6.1 runs the <= 6.3 fullness generation and the legacy class table: 0 mismatches.

    The heaviest VM tests (~11 min each under load: pip-installing numba ~2.5 min and
    JIT-compiling the model under TCG dominate), hence vm_long.
    """
    res = _oracle_in_guest("6.1", 2000, image, tmp_path_factory)
    assert res["legacy_classes"] and not res["ratio_groups"]


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.vm_long
def test_zram_oracle_in_the_612_guest(
    image: vmrun.VmImage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """6.12 runs the >= 6.3 chain-size class table (Debian: CONFIG_ZSMALLOC_CHAIN_SIZE=8, read
    from the guest's /boot/config) and the >= 6.4 in-use-ratio groups: 0 mismatches.

    8,000 ops, not 2,000: at seed 1 the 2,000-op trace replays identically under the <= 6.3
    fullness groups, so it could not tell the two generations apart; the 8,000-op trace
    mismatches them at 4 of 11 checkpoints (docs/validation.md).
    """
    res = _oracle_in_guest("6.12", 8000, image, tmp_path_factory)
    assert not res["legacy_classes"] and res["ratio_groups"]
    assert res["chain_size"] == 8 and res["chain_size_source"].startswith("/boot/config-6.12.")
    # 6.12 is before 6.14's "zram: free slot memory early during write": alloc, then free
    assert res["alloc_before_free"]


# ---------------------------------------- bundled zsstress pair (replays/samples, no guest)

SAMPLES = Path(__file__).resolve().parent.parent / "replays" / "samples"


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_bundled_zsstress_pair_matches_its_sidecar(kernel: str) -> None:
    """The shipped 6.1/6.12 zsstress captures re-attribute to their recorded contention."""
    from ztrace.format import read_meta
    from ztrace.vm.contention import summarize_trace

    name = f"guest-{kernel}-zsstress"
    trace, aux = SAMPLES / name, SAMPLES / f"{name}.kernel"
    side = json.loads((aux / "contention.json").read_text())
    again = summarize_trace(trace, aux)
    assert again["zsmalloc"] == side["zsmalloc"] and again["locks"] == side["locks"]
    assert read_meta(trace).kernel_release.startswith(kernel + ".")
    assert side["lost_events"] == 0
    zs = side["zsmalloc"]
    assert (
        zs["contended"] > 0
        and zs["stack_and_address_agree"] + zs["attributed_by_address_only"] <= zs["contended"]
    )
    if kernel == "6.1":  # one pool spinlock: every zsmalloc contention is on it
        assert [lk["name"] for lk in side["locks"]] == ["pool.lock"]
        assert side["by_kind"]["pool"]["contended"] == zs["contended"]
    else:  # class locks; zs_free's migrate_lock read side never waits without a writer
        assert side["by_kind"]["class"]["contended"] > 0


# ---------------------------------------------------------------- harness checks (no guest)


def test_zsstress_scenario_needs_the_module() -> None:
    assert vmrun.needs_kmod("zsstress")
    assert not vmrun.needs_kmod("zram")
    assert {"zsstress", "zram-rw"} <= set(vmrun.scenarios())


def test_matrix_interleaves_kernels_abab() -> None:
    from ztrace.vm.matrix import CELLS, cells_named, plan

    cells = cells_named(["zram"])
    assert [c.name for c in cells] == ["zram-j1", "zram-j4"]
    order = [(c.name, k) for c, k, _ in plan(cells, 2)]
    assert order == [
        ("zram-j1", "6.1"),
        ("zram-j1", "6.12"),
        ("zram-j4", "6.12"),
        ("zram-j4", "6.1"),
        ("zram-j1", "6.1"),
        ("zram-j1", "6.12"),
        ("zram-j4", "6.12"),
        ("zram-j4", "6.1"),
    ]
    # at least four workloads, each at two or more concurrency levels
    per = {}
    for c in CELLS:
        per.setdefault(c.scenario, []).append(c)
    assert len(per) >= 4 and all(len(v) >= 2 for v in per.values())
    with pytest.raises(vmrun.VmError, match="unknown matrix cell 'nope'"):
        cells_named(["nope"])


def _two_load_boot(tmp_path: Path) -> Path:
    """A boot directory as zsstress.sh leaves it with levels=heavy reps=2: the bundled 6.1
    capture twice, the second copy 10 s later (the scenario sleeps 3 s between loads)."""
    import pyarrow as pa

    from ztrace.format import read_trace, write_trace

    name = "guest-6.1-zsstress"
    tr = read_trace(SAMPLES / name)
    later = tr.table.set_column(
        tr.table.schema.get_field_index("ts_ns"),
        "ts_ns",
        pa.compute.add(tr.table.column("ts_ns"), pa.scalar(10_000_000_000, pa.uint64())),
    ).cast(tr.table.schema)
    boot = tmp_path / "boot"
    boot.mkdir()
    write_trace(boot / "trace", pa.concat_tables([tr.table, later]), tr.meta)
    shutil.copy(SAMPLES / name / "stacks.json", boot / "trace" / "stacks.json")
    aux = SAMPLES / f"{name}.kernel"
    for f in ("zs_pool_layout.json", "vm.json"):
        shutil.copy(aux / f, boot / f)
    log = (aux / "zsstress.log").read_text()
    (boot / "zsstress.log").write_text(log + log)
    args = (aux / "zsstress.args").read_text().split(" ", 1)[1].strip()
    (boot / "zsstress.runs").write_text(f"1\theavy\t{args}\n2\theavy\t{args}\n")
    return boot


def test_split_cuts_a_multi_load_boot_into_checked_runs(tmp_path: Path) -> None:
    from ztrace.vm.split import write_pieces

    boot = _two_load_boot(tmp_path)
    dests = [tmp_path / "zsstress-heavy" / "6.1" / f"r{i:02d}" for i in range(2)]
    assert write_pieces(boot, dests) == dests
    want = json.loads((SAMPLES / "guest-6.1-zsstress.kernel" / "contention.json").read_text())
    for i, d in enumerate(dests):
        side = json.loads((d / "trace.kernel" / "contention.json").read_text())
        # each load is exactly the bundled capture again: same events, same contention
        assert side["event_counts"] == want["event_counts"]
        assert side["zsmalloc"] == want["zsmalloc"]
        vm = json.loads((d / "vm.json").read_text())
        assert (vm["load"], vm["loads"], vm["level"]) == (i, 2, "heavy")
        assert (d / "zsstress.log").read_text().count("zsstress: done") == 1
    # a window that does not hold what the module counted is refused, not guessed
    log = (boot / "zsstress.log").read_text()
    (boot / "zsstress.log").write_text(log.replace("reads=6899", "reads=6898", 1))
    with pytest.raises(vmrun.VmError, match="6899 zs_read in its window, the module counted 6898"):
        write_pieces(boot, [tmp_path / "x0", tmp_path / "x1"])


def test_boot_runs_only_zsstress_cells_differing_in_level(tmp_path: Path) -> None:
    from ztrace.vm.matrix import cells_named, run_boots

    with pytest.raises(vmrun.VmError, match="zsstress cells only"):
        run_boots(tmp_path, cells_named(["zsstress-heavy", "zram-j4"]), 5, 3)


def test_cross_kernel_matrix_medians_over_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate cross-kernel --matrix`: per-run ratios against each run's own measurement,
    their median and spread, cross-kernel runs paired by index, and the direction."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ztrace.cli.main import main
    from ztrace.format import read_trace, write_trace
    from ztrace.replay.engine import replay
    from ztrace.vm.contention import summarize

    # two runs per kernel: r00 the bundled capture, r01 the same capture with its measured
    # contention halved (every other slowpath row dropped), so the ratios differ by run

    root = tmp_path / "mx"
    for k in ("6.1", "6.12"):
        src, aux = SAMPLES / f"guest-{k}-zsstress", SAMPLES / f"guest-{k}-zsstress.kernel"
        for rep in (0, 1):
            d = root / "zsstress-heavy" / k / f"r{rep:02d}"
            d.mkdir(parents=True)
            tr = read_trace(src)
            t = tr.table
            if rep:
                lock = pc.is_in(t.column("event").cast(pa.string()), pa.array(["spin_slowpath"]))
                idx = pa.array(range(t.num_rows))
                odd = pc.equal(pc.bit_wise_and(idx, 1), 1)
                t = t.filter(pc.invert(pc.and_(lock, odd)))
            write_trace(d / "trace", t, tr.meta)
            shutil.copy(src / "stacks.json", d / "trace" / "stacks.json")
            shutil.copytree(aux, d / "trace.kernel")
            shutil.copy(aux / "zs_pool_layout.json", d / "zs_pool_layout.json")
            shutil.copy(aux / "zsstress.log", d / "zsstress.log")
    main(["validate", "cross-kernel", "--matrix", str(root), "--json"])
    out = json.loads(capsys.readouterr().out)
    got = {(p["trace_kernel"][:4], p["target_kernel"][:4], p["metric"]): p for p in out["pairs"]}
    assert len(got) == 8
    for (tk, gk, metric), p in got.items():
        assert p["runs"] == 2 and p["scenario"] == "zsstress-heavy"
        per = p["per_run"]
        for r in per:
            run = root / "zsstress-heavy" / ("6.1" if gk == "6.1." else "6.12") / f"r{r['rep']:02d}"
            assert r["measured"] == summarize(run)["zsmalloc"][metric]  # recomputed
            tr = root / "zsstress-heavy" / ("6.1" if tk == "6.1." else "6.12") / f"r{r['rep']:02d}"
            plain = {x["lock_design"]: x for x in replay(tr / "trace", locks=[p["design"]]).summary}
            assert r["predicted"] == plain[p["design"]][metric]  # replica 0 = plain replay
            assert r["ratio"] == r["predicted"] / r["measured"]
        ratios = sorted(r["ratio"] for r in per)
        assert p["ratio"] == pytest.approx(sum(ratios) / 2)  # the median of two
        assert p["ratio_interval"] == ratios
        # r01 measured about half of r00: the spread is real, not one number twice
        assert per[1]["measured"] < per[0]["measured"]
        assert p["kind"] == ("same kernel" if tk == gk else "cross kernel")
        assert ("direction_right" in p) == (tk != gk)
    # wait per contention, same kernel: the replay's and the run's own, raw and less floor
    waits = {w["kernel"]: w for w in out["wait_per_contention"]}
    assert set(waits) == {"6.1", "6.12"}
    for k, w in waits.items():
        same = {
            m: got[(p["trace_kernel"][:4], p["target_kernel"][:4], m)]
            for p in out["pairs"]
            if p["kind"] == "same kernel" and p["trace_kernel"].startswith(k + ".")
            for m in ("contended", "wait_ns_total")
        }
        for row in w["per_run"]:
            pr = {m: next(r for r in same[m]["per_run"] if r["rep"] == row["rep"]) for m in same}
            assert row["predicted_ns"] == pytest.approx(
                pr["wait_ns_total"]["predicted"] / pr["contended"]["predicted"]
            )
            assert row["measured_ns"] == pytest.approx(
                pr["wait_ns_total"]["measured"] / pr["contended"]["measured"]
            )
            run = root / "zsstress-heavy" / k / f"r{row['rep']:02d}"
            s = summarize(run)
            assert row["probe_floor_ns"] == s["probe_floor_ns"] > 0
            assert row["measured_less_floor_ns"] == pytest.approx(
                s["zsmalloc"]["wait_ns_less_probe_floor"] / s["zsmalloc"]["contended"]
            )
            assert row["measured_less_floor_ns"] < row["measured_ns"]
        assert w["ratio_less_floor"] > w["ratio"]
    main(["validate", "cross-kernel", "--matrix", str(root), "--markdown"])
    table = capsys.readouterr().out
    assert "| zsstress-heavy | contended |" in table and "n=2" in table
    for row in ("| zsstress-heavy | 6.1 (`pool`) |", "| zsstress-heavy | 6.12 (`class`) |"):
        assert row in table


def test_pool_layout_from_btf_dump() -> None:
    sys.path.insert(0, str(Path(vmrun.__file__).parent))
    try:
        import counters
    finally:
        sys.path.pop(0)
    dump = (
        "[7] TYPEDEF 'spinlock_t' type_id=8\n"
        "[9] STRUCT 'zs_pool' size=2240 vlen=3\n"
        "\t'name' type_id=1 bits_offset=0\n"
        "\t'size_class' type_id=2 bits_offset=64\n"
        "\t'lock' type_id=7 bits_offset=17408\n"
        "[10] STRUCT 'other' size=8 vlen=1\n"
        "\t'lock' type_id=7 bits_offset=0\n"
    )
    lay = counters.pool_layout(dump)
    assert lay["size"] == 2240
    assert lay["members"]["lock"] == {"offset": 2176, "type": "spinlock_t"}
    with pytest.raises(ValueError):
        counters.pool_layout("[1] INT 'int' size=4")


def _lock_rows_trace(out: Path, rows: list[tuple], pool: int, release: str) -> None:
    """A capture of one zs_malloc and lock rows (event, lock_addr, kind, wait, flags[,
    stack]) at ``out``, the zs_malloc's pool ``pool``."""
    from ztrace.format import TraceMeta, make_events, write_trace

    n = len(rows)
    cols = {
        "ts_ns": list(range(n)),
        "event": [r[0] for r in rows],
        "pool": [pool if r[0] == "zs_malloc" else 0 for r in rows],
        "size_bytes": [100 if r[0] == "zs_malloc" else 0 for r in rows],
        "handle": [8 if r[0] == "zs_malloc" else 0 for r in rows],
        "lock_addr": [r[1] for r in rows],
        "lock_kind": [r[2] for r in rows],
        "wait_ns": [r[3] for r in rows],
        "lock_flags": [r[4] for r in rows],
    }
    if all(len(r) > 5 for r in rows):
        cols["stack_id"] = [r[5] for r in rows]
    write_trace(out, make_events(**cols), TraceMeta(kernel_release=release, source="capture"))


def test_contention_sidecar_attributes_by_stack_and_address(tmp_path: Path) -> None:
    """Hand-built trace: which rows count as zsmalloc contention, and their waits."""
    from ztrace.vm.contention import summarize, write_sidecar

    pool = 0xFFFF0000
    lock = pool + 2176  # pool->lock per the layout below
    cls = 0xAAAA0000  # some class lock
    rows = [
        # event, lock_addr, kind, wait, flags, stack
        ("zs_malloc", None, None, None, None, None),
        ("spin_slowpath", lock, "pool", 100, 1, 1),  # zs_malloc waiting on pool->lock
        ("spin_slowpath", lock, "other", 50, 1, -1),  # stack lost: the address still says pool
        ("spin_slowpath", cls, "class", 30, 1, 2),
        ("spin_slowpath", cls + 4, "class", 7, 1, 3),  # rwlock's wait_lock: not counted
        ("lock_contention", lock, "pool", 90, 1, 1),  # queued waiter: a subset of the above
        ("lock_contention", 0x1234, "pool", 40, 2 | 1, 4),  # rwlock:R, tracepoint only
        ("spin_slowpath", 0x5678, "other", 1000, 1, 5),  # not zsmalloc
        ("spin_slowpath", 0x9ABC, "class", 500, 1, 6),  # an irq inside zs_free: not zsmalloc's
        ("spin_slowpath", 0xDEF0, "class", 9, 1, 7),  # zone lock under alloc_zspage: a callee's
    ]
    _lock_rows_trace(tmp_path / "trace", rows, pool, "6.1.0-57-amd64")
    (tmp_path / "trace" / "stacks.json").write_text(
        json.dumps(
            {
                "1": ["native_queued_spin_lock_slowpath", "_raw_spin_lock", "zs_malloc"],
                "2": ["native_queued_spin_lock_slowpath", "zs_free"],
                "3": ["native_queued_spin_lock_slowpath", "queued_read_lock_slowpath", "zs_free"],
                "4": ["queued_read_lock_slowpath", "zs_free"],
                "5": ["native_queued_spin_lock_slowpath", "try_to_wake_up"],
                "6": [
                    "native_queued_spin_lock_slowpath",
                    "_raw_spin_lock_irqsave",
                    "vring_interrupt",
                    "asm_common_interrupt",
                    "zs_free",
                ],
                "7": [
                    "native_queued_spin_lock_slowpath",
                    "_raw_spin_lock_irqsave",
                    "rmqueue_bulk",
                    "get_page_from_freelist",
                    "alloc_zspage",
                    "zs_malloc",
                ],
            }
        )
    )
    (tmp_path / "zs_pool_layout.json").write_text(
        json.dumps({"size": 2240, "members": {"lock": {"offset": 2176, "type": "spinlock_t"}}})
    )
    s = summarize(tmp_path)
    assert s["source"].startswith("spin_slowpath")
    zs = s["zsmalloc"]
    # slowpath rows 100 + 50 + 30, plus the tracepoint-only rwlock:R row 40
    assert zs["contended"] == 4 and zs["wait_ns_total"] == 220
    assert zs["attributed_by_address_only"] == 1 and zs["stack_and_address_agree"] == 1
    assert s["all_contended"]["rwlock_internal_excluded"] == 1
    assert s["other"] == {"contended": 3, "wait_ns_total": 1509}
    assert s["all_contended"]["irq_inside_zsmalloc_excluded"] == 1
    assert s["all_contended"]["callee_lock_excluded"] == 1
    assert s["by_kind"]["pool"]["contended"] == 2 + 1  # incl. the rwlock:R row's kind
    assert s["locks"][0] == {
        "addr": hex(lock),
        "name": "pool.lock",
        "kind": "pool",
        "contended": 2,
        "wait_ns_total": 150,
    }
    # the tracepoint alone: only the queued waiter and the rwlock row
    assert s["tracepoint"]["zsmalloc"]["contended"] == 2
    assert s["tracepoint"]["zsmalloc"]["wait_ns_total"] == 130
    path = write_sidecar(tmp_path)
    assert path == tmp_path / "trace.kernel" / "contention.json"
    assert json.loads(path.read_text())["zsmalloc"]["contended"] == 4
    # 8 slowpath rows are too few for a probe floor
    assert s["probe_floor_ns"] is None and zs["wait_ns_less_probe_floor"] is None


def test_contended_requests_stamped_in_a_holders_call(tmp_path: Path) -> None:
    """The capture's timing check, by hand: a contended request on one CPU counts as seen
    when another CPU is inside a zs_* call that takes that lock kind at its stamp (6.12
    class locks: zs_malloc and zs_free; zs_write's map takes none); the matrix table
    carries the run's share."""
    from ztrace.format import TraceMeta, make_events, write_trace
    from ztrace.vm.contention import summarize, write_sidecar
    from ztrace.vm.matrix import markdown_table, summarize_matrix

    cls = 0xAAAA0000
    rows = [
        # ts, cpu, event, duration, kind, stack
        (100, 1, "zs_malloc", 100, None, None),  # CPU 1 holds from 100 to 200
        (120, 0, "spin_slowpath", None, "class", 1),  # inside CPU 1's zs_malloc: seen
        (300, 1, "zs_write", 100, None, None),  # a map: no class lock
        (330, 0, "spin_slowpath", None, "class", 1),  # only a zs_write running: not seen
        (500, 0, "zs_free", 50, None, None),
        (520, 0, "spin_slowpath", None, "class", 1),  # its own CPU's call: not seen
        (600, 0, "zs_free", 100, None, None),
        (650, 1, "spin_slowpath", None, "class", 1),  # inside CPU 0's zs_free: seen
    ]
    t = make_events(
        ts_ns=[r[0] for r in rows],
        cpu=[r[1] for r in rows],
        event=[r[2] for r in rows],
        duration_ns=[r[3] or 0 for r in rows],
        lock_addr=[cls if r[4] else None for r in rows],
        lock_kind=[r[4] for r in rows],
        wait_ns=[10 if r[4] else None for r in rows],
        lock_flags=[1 if r[4] else None for r in rows],
        stack_id=[r[5] for r in rows],
    )
    run = tmp_path / "zsstress-heavy" / "6.12" / "r00"
    write_trace(run / "trace", t, TraceMeta(kernel_release="6.12.95+deb12-amd64", source="capture"))
    (run / "trace" / "stacks.json").write_text(
        json.dumps({"1": ["native_queued_spin_lock_slowpath", "_raw_spin_lock", "zs_malloc"]})
    )
    seen = summarize(run)["zsmalloc"]["request_in_holder_call"]
    # at 120 of CPU 1's 100..200 (0.2) and at 650 of CPU 0's 600..700 (0.5)
    assert seen == {
        "rows": 4,
        "inside": 2,
        "share": 0.5,
        "position_tenths": [0, 0, 1, 0, 0, 1, 0, 0, 0, 0],
    }
    write_sidecar(run)
    table = markdown_table(summarize_matrix(tmp_path))
    assert table.splitlines()[0].endswith("| requests stamped in a holder's call (median) |")
    assert table.splitlines()[2].endswith("| 0.50 |")


def test_probe_floor_comes_off_slowpath_waits_only(tmp_path: Path) -> None:
    """The slowpath probe's floor (1st percentile of the run's slowpath rows) comes off each
    zsmalloc slowpath wait, never below 0, and not off tracepoint rows."""
    from ztrace.format import TraceMeta, make_events, write_trace
    from ztrace.vm.contention import PROBE_FLOOR_MIN_ROWS, summarize

    # event, wait, stack: two zs_malloc waits on pool->lock (5000, and 1000 below the floor),
    # an rwlock:R tracepoint row (40), and 150 slowpath rows of another lock at 1500 each
    rows = [("spin_slowpath", 5000, 1), ("spin_slowpath", 1000, 1), ("lock_contention", 40, 4)]
    rows += [("spin_slowpath", 1500, 5)] * 150
    assert sum(r[0] == "spin_slowpath" for r in rows) >= PROBE_FLOOR_MIN_ROWS
    n = len(rows)
    t = make_events(
        ts_ns=list(range(n)),
        event=[r[0] for r in rows],
        lock_addr=[0x1234 if r[2] == 4 else 0x5678 for r in rows],
        lock_kind=["pool" if r[2] in (1, 4) else "other" for r in rows],
        wait_ns=[r[1] for r in rows],
        lock_flags=[3 if r[2] == 4 else 1 for r in rows],
        stack_id=[r[2] for r in rows],
    )
    write_trace(tmp_path / "trace", t, TraceMeta(kernel_release="6.1.0-57-amd64", source="capture"))
    (tmp_path / "trace" / "stacks.json").write_text(
        json.dumps(
            {
                "1": ["native_queued_spin_lock_slowpath", "_raw_spin_lock", "zs_malloc"],
                "4": ["queued_read_lock_slowpath", "zs_free"],
                "5": ["native_queued_spin_lock_slowpath", "try_to_wake_up"],
            }
        )
    )
    s = summarize(tmp_path)
    assert s["probe_floor_ns"] == 1500
    zs = s["zsmalloc"]
    assert zs["contended"] == 3 and zs["wait_ns_total"] == 5000 + 1000 + 40
    assert zs["wait_ns_less_probe_floor"] == (5000 - 1500) + 0 + 40


def test_waits_without_a_holder_are_counted_per_lock_kind(tmp_path: Path) -> None:
    """A wait is without a holder when no other thread was in a call that takes that lock
    at any time during it: 6.1's pool lock is taken by zs_malloc, zs_free and, for the first
    MAP_CALL_NS of a zs_read/zs_write span, its map lookup (session 28)."""
    from ztrace.format import TraceMeta, make_events, write_trace
    from ztrace.vm.contention import MAP_CALL_NS, summarize

    pool = 0x7000
    # ts, tid, event, duration, wait (slowpath rows)
    rows = [
        (1000, 1, "zs_malloc", 5000, None),
        (2000, 2, "spin_slowpath", None, 400),  # inside tid 1's zs_malloc: a holder
        (10_000, 1, "zs_write", 20_000, None),  # the map lookup: its first MAP_CALL_NS
        (10_000 + MAP_CALL_NS - 100, 2, "spin_slowpath", None, 300),  # in it: a holder
        (10_000 + MAP_CALL_NS + 500, 2, "spin_slowpath", None, 6000),  # the copy: none
        (40_000, 2, "zs_free", 3000, None),
        (41_000, 2, "spin_slowpath", None, 1000),  # only its own thread's call: none
    ]
    t = make_events(
        ts_ns=[r[0] for r in rows],
        tid=[r[1] for r in rows],
        cpu=[r[1] - 1 for r in rows],
        event=[r[2] for r in rows],
        duration_ns=[r[3] or 0 for r in rows],
        lock_addr=[pool if r[4] else None for r in rows],
        lock_kind=["pool" if r[4] else None for r in rows],
        wait_ns=[r[4] for r in rows],
        lock_flags=[1 if r[4] else None for r in rows],
        stack_id=[1 if r[4] else None for r in rows],
    )
    run = tmp_path / "r00"
    write_trace(run / "trace", t, TraceMeta(kernel_release="6.1.0-57-amd64", source="capture"))
    (run / "trace" / "stacks.json").write_text(
        json.dumps({"1": ["native_queued_spin_lock_slowpath", "_raw_spin_lock", "zs_malloc"]})
    )
    got = summarize(run)["zsmalloc"]["waits_without_holder"]
    assert got == {
        "rows": 4,
        "without_holder": 2,
        "share": 0.5,
        "wait_share": round(7000 / 7700, 4),
        "wait_ns_p50_without": 3500,
        "wait_ns_p50_with": 350,
    }


def test_unknown_kernel_and_scenario_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(vmrun.VmError, match=r"unknown guest kernel '5\.10'"):
        vmrun.run_scenario("5.10", "zram", tmp_path / "o")
    with pytest.raises(vmrun.VmError, match=r"unknown scenario 'nope'.*zram"):
        vmrun.run_scenario("6.1", "nope", tmp_path / "o")


def test_scenarios_are_listed() -> None:
    assert {"zram", "zswap", "swap-zram", "inventory", "zsstress", "zram-rw", "kbuild"} <= set(
        vmrun.scenarios()
    )
    assert "lib" not in vmrun.scenarios() and "cgexec" not in vmrun.scenarios()


def test_qemu_command_shares_tree_read_only_and_keeps_image_clean(tmp_path: Path) -> None:
    manifest = {
        "key": "k",
        "image": "rootfs.img",
        "kernels": {"6.1": {"release": "6.1.0-1-amd64", "vmlinuz": "v", "initrd": "i"}},
    }
    img = vmrun.VmImage(tmp_path, manifest)
    cmd = vmrun.qemu_command(
        img, "6.1", "zram", tmp_path / "out", vmrun.GuestOptions(params={"mb_per_job": "8"})
    )
    argv = " ".join(cmd)
    assert "snapshot=on" in argv
    assert f"path={vmrun.SRC_ROOT},mount_tag=ztsrc,security_model=none,readonly=on" in argv
    assert "ztrace.scenario=zram" in argv and "ztrace.mb_per_job=8" in argv
    # the guest learns its accelerator: under TCG lib.sh turns numpy's AVX2 sorts off
    assert "ztrace.accel=tcg" in argv and "-accel tcg,thread=multi" in argv
    kvm_guest = vmrun.GuestOptions(accel="kvm")
    kvm = " ".join(vmrun.qemu_command(img, "6.1", "zram", tmp_path / "out", kvm_guest))
    assert "ztrace.accel=kvm" in kvm and "-cpu host" in kvm
    # the CLI's rule (vm.run.parse_param), also where a caller builds the command alone
    with pytest.raises(ConfigError, match="no spaces"):
        vmrun.qemu_command(img, "6.1", "zram", tmp_path, vmrun.GuestOptions(params={"x": "a b"}))


def test_counters_snapshot_runs_on_this_kernel(tmp_path: Path) -> None:
    # counters.py is the guest's counter dump; on the host it must still produce valid JSON
    # (zram/zswap sections are just empty when the host has none).
    script = Path(vmrun.__file__).with_name("counters.py")
    env = {**os.environ, "ZTRACE_VM_OUT": str(tmp_path)}
    subprocess.run([sys.executable, str(script), "host"], env=env, check=True, timeout=60)
    data = json.loads((tmp_path / "counters" / "host.json").read_text())
    assert data["uname_r"] == os.uname().release
    assert "vmstat" in data and "zram" in data and "zswap_params" in data


def test_loads_per_boot_share_every_knob_but_the_level(tmp_path: Path) -> None:
    # one boot runs every cell's loads under one capture, so a knob other than the level
    # (compact_ms) must be the same for all; the compacting cells share theirs
    from ztrace.vm.matrix import Cell, cells_named, run_boots

    mixed = [Cell("a", "zsstress", {"level": "medium", "compact_ms": "2"}),
             Cell("b", "zsstress", {"level": "spread"})]  # fmt: skip
    with pytest.raises(vmrun.VmError, match="may differ only in their level"):
        run_boots(tmp_path, mixed, 2, 2)
    both = cells_named(["zsstress-compact-medium", "zsstress-compact-spread"])
    assert {c.params["compact_ms"] for c in both} == {"2"}
    assert {c.params["level"] for c in both} == {"medium", "spread"}


def test_contention_sidecar_trusts_the_pool_address_over_the_stack(tmp_path: Path) -> None:
    # 6.12 (session 31): read_lock(&pool->migrate_lock) is inlined into zs_map_object, so a
    # reader's wait there looks like a zspage lock's by stack; the address says the pool's.
    # A write wait in zs_compact at another address (the source zspage's migrate_write_lock)
    # is a zspage lock's, the pool's address being known.
    from ztrace.vm.contention import summarize

    pool = 0xFFFF0000
    mig = pool + 64  # pool->migrate_lock
    rows = [
        ("zs_malloc", None, None, None, None),
        ("lock_contention", mig, "zspage", 40, 2 | 1),  # rwlock:R in zs_map_object
        ("lock_contention", mig, "pool", 70, 4 | 1),  # rwlock:W of the pool in zs_compact
        ("lock_contention", 0x7777000, "pool", 25, 4 | 1),  # rwlock:W elsewhere: a zspage
    ]
    _lock_rows_trace(tmp_path / "trace", rows, pool, "6.12.95+deb12-amd64")
    (tmp_path / "zs_pool_layout.json").write_text(
        json.dumps({"size": 128, "members": {"migrate_lock": {"offset": 64, "type": "rwlock_t"}}})
    )
    s = summarize(tmp_path)
    assert s["by_kind"]["pool"] == {"contended": 2, "wait_ns_total": 110}
    assert s["by_kind"]["zspage"] == {"contended": 1, "wait_ns_total": 25}
    assert {(d["name"], d["kind"], d["contended"]) for d in s["locks"]} == {
        ("pool.migrate_lock", "pool", 2),
        ("zspage lock", "zspage", 1),
    }
