"""``ztrace doctor``: reports every probe with a status and a reason, for any user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from ztrace.capture.features import Kallsyms, detect


def test_doctor_json_lists_every_probe() -> None:
    p = run_cli("doctor", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert set(d["probes"]) == {"zsmalloc", "locks", "zswap"}
    for r in d["probes"].values():
        assert r["status"] in ("available", "fallback", "missing")
        assert r["detail"]
    assert d["release"] == os.uname().release


def test_doctor_text_has_a_row_per_probe() -> None:
    p = run_cli("doctor")
    assert p.returncode == 0, p.stderr
    for name in ("zsmalloc", "locks", "zswap"):
        assert any(line.startswith(name) for line in p.stdout.splitlines()), p.stdout


def test_doctor_matches_what_this_kernel_has() -> None:
    """Statuses follow the detected facts, not the version number."""
    f = detect()
    ks = Kallsyms()
    z = f.probes["zsmalloc"]
    if "zs_malloc" not in ks:
        assert z.status == "missing"
    elif f.kprobes:
        assert (z.status, z.mode) == ("available", "kprobe")
    else:
        # tracepoint-only kernel (this project's host): kmem fallback without sizes/durations
        assert (z.status, z.mode) == ("fallback", "kmem-tracepoint")
        assert any("size_bytes" in m for m in z.missing)
        assert any("duration_ns" in m for m in z.missing)
        assert f.probes["zswap"].status == "missing"
        assert "kprobes" in f.probes["zswap"].detail
    if Path(f"{f.tracefs}/events/lock/contention_begin").exists():
        assert f.probes["locks"].status == "available"
        assert any("hold_ns" in m for m in f.probes["locks"].missing)


def test_doctor_runs_unprivileged_and_says_so(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root to switch to nobody (and setpriv)")
    p = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "ztrace",
            "doctor",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["privileged"] is False
    assert any("not privileged" in r["detail"] for r in d["probes"].values())
