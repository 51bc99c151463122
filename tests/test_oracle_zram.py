"""The zsmalloc model against the real zram device of the running kernel (root only).

Runs 50,000 single-threaded O_DIRECT 4 KiB operations, compaction, 10,000 more operations
and a final compaction on /dev/zram0, and requires the model's page count to equal the
kernel's (mm_stat mem_used_total / 4096) at every checkpoint and after every operation.
Then, as a control that the check has power, replays the same trace through deliberately
wrong models (other chain sizes, ≤6.3 fullness groups), which must *not* match.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ztrace.format import read_trace
from ztrace.model.classes import build_classes
from ztrace.model.zsmalloc import new_pool

pytestmark = pytest.mark.kernel

DEVICE = "/dev/zram0"


def _require_zram() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drive /dev/zram0")
    if not os.path.exists(DEVICE) or not Path("/sys/block/zram0").is_dir():
        pytest.skip(f"{DEVICE} is absent (CONFIG_ZRAM / modprobe zram)")


def test_oracle_zero_mismatches(tmp_path: Path) -> None:
    _require_zram()
    from ztrace.checks.oracle import OracleConfig, replay_checkpoints, run_oracle

    out = tmp_path / "trace"
    res = run_oracle(OracleConfig(ops=50_000, ops_after=10_000, seed=11, out_dir=str(out)))
    d = res.as_dict()
    assert d["ops"] == 60_000
    assert d["checkpoints"] >= 60
    assert d["mismatches_before_compaction"] == 0, d["mismatched_checkpoints"]
    assert d["mismatches_after_compaction"] == 0, d["mismatched_checkpoints"]
    assert d["per_op_mismatches"] == 0, d["first_per_op_mismatch"]
    assert d["classification_errors"] == 0
    # the workload really exercised what it claims to
    assert d["huge_writes"] > 1000 and d["same_filled_writes"] > 1000
    assert d["overwrites"] > 10_000 and d["discards"] > 10_000
    first = res.compactions[0]
    assert first["kernel_pages_compacted"] > 100  # compaction had real work
    assert first["model_pages_freed"] == first["kernel_pages_compacted"]
    assert first["kernel_after"] < first["kernel_before"]

    # The trace on disk is a valid format-v1 oracle trace whose checkpoints hold the
    # kernel's numbers.
    tr = read_trace(out)
    assert tr.meta.source == "oracle"
    assert tr.meta.kernel_release == os.uname().release
    events = tr.table.column("event").to_pylist()
    pages = tr.table.column("pool_pages").to_pylist()
    kernel = [pages[i] for i, e in enumerate(events) if e == "checkpoint"]
    assert kernel == [c.kernel_pages for c in res.checkpoints]

    # Controls: wrong models must be caught by the same trace.
    wrong = {
        "chain 4": (build_classes(4), True),
        "chain 16": (build_classes(16), True),
        "legacy classes": (build_classes(None, legacy=True), True),
        "≤6.3 fullness groups": (build_classes(8), False),
    }
    for name, (table, ratio) in wrong.items():
        got = replay_checkpoints(new_pool(table, ratio_groups=ratio), tr.table)
        assert got != kernel, f"the oracle trace cannot tell the model from {name}"


def test_oracle_cli_json(tmp_path: Path) -> None:
    """The CLI end to end (smaller run): JSON on stdout, table on stderr, exit 0."""
    _require_zram()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "ztrace",
            "oracle",
            "zram",
            "--ops",
            "3000",
            "--seed",
            "5",
            "--json",
            "-o",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["mismatches_before_compaction"] == 0 and d["mismatches_after_compaction"] == 0
    assert d["kernel_release"] == os.uname().release
    assert "mismatches before compaction" in p.stderr
    # the host kernel (>= 6.4) is modelled with the chain-size table and in-use-ratio groups,
    # and the result says so, with the config file the chain size was read from
    assert not d["legacy_classes"] and d["ratio_groups"]
    assert d["chain_size_source"] != "default" or not Path("/proc/config.gz").exists()
    assert "modelled generation" in p.stderr


def test_device_settings_restored() -> None:
    """ZramDevice resets the device and restores disksize and algorithm as it found them.

    Checked under the shared lock so another user of /dev/zram0 cannot change the device
    between the two reads.
    """
    _require_zram()
    from ztrace.host.zram import ZramDevice, zram_lock

    sysdir = Path("/sys/block/zram0")
    with zram_lock():
        before = ((sysdir / "disksize").read_text(), (sysdir / "comp_algorithm").read_text())
        with ZramDevice(DEVICE, 64 * 4096, "lz4") as dev:
            assert "[lz4]" in (sysdir / "comp_algorithm").read_text()
            buf = mmap.mmap(-1, 4096)
            buf.write(os.urandom(4096))
            dev.write_page(3, buf)
            assert dev.mm_stat()["mem_used_total"] > 0  #: the page went into zsmalloc
        after = ((sysdir / "disksize").read_text(), (sysdir / "comp_algorithm").read_text())
    assert after == before
