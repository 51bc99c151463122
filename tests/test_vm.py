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
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
        params={"jobs": str(JOBS), "mb_per_job": str(MB_PER_JOB)},
        timeout=900,
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


# ---------------------------------------------------------------- harness checks (no guest)


def test_unknown_kernel_and_scenario_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(vmrun.VmError, match=r"unknown guest kernel '5\.10'"):
        vmrun.run_scenario("5.10", "zram", tmp_path / "o")
    with pytest.raises(vmrun.VmError, match=r"unknown scenario 'nope'.*zram"):
        vmrun.run_scenario("6.1", "nope", tmp_path / "o")


def test_scenarios_are_listed() -> None:
    assert {"zram", "zswap", "swap-zram", "inventory"} <= set(vmrun.scenarios())
    assert "lib" not in vmrun.scenarios()


def test_qemu_command_shares_tree_read_only_and_keeps_image_clean(tmp_path: Path) -> None:
    manifest = {
        "key": "k",
        "image": "rootfs.img",
        "kernels": {"6.1": {"release": "6.1.0-1-amd64", "vmlinuz": "v", "initrd": "i"}},
    }
    img = vmrun.VmImage(tmp_path, manifest)
    cmd = vmrun.qemu_command(img, "6.1", "zram", tmp_path / "out", params={"mb_per_job": "8"})
    argv = " ".join(cmd)
    assert "snapshot=on" in argv
    assert f"path={vmrun.SRC_ROOT},mount_tag=ztsrc,security_model=none,readonly=on" in argv
    assert "ztrace.scenario=zram" in argv and "ztrace.mb_per_job=8" in argv
    with pytest.raises(vmrun.VmError, match="no spaces"):
        vmrun.qemu_command(img, "6.1", "zram", tmp_path, params={"x": "a b"})


def test_counters_snapshot_runs_on_this_kernel(tmp_path: Path) -> None:
    # counters.py is the guest's counter dump; on the host it must still produce valid JSON
    # (zram/zswap sections are just empty when the host has none).
    script = Path(vmrun.__file__).with_name("counters.py")
    env = {**os.environ, "ZTRACE_VM_OUT": str(tmp_path)}
    subprocess.run([sys.executable, str(script), "host"], env=env, check=True, timeout=60)
    data = json.loads((tmp_path / "counters" / "host.json").read_text())
    assert data["uname_r"] == os.uname().release
    assert "vmstat" in data and "zram" in data and "zswap_params" in data
