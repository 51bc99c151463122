"""fentry is checked for real, not by BCC's feature probe (``kernel`` marker)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, require_root

pytestmark = pytest.mark.kernel


def test_doctor_check_fentry_agrees_with_an_actual_attach() -> None:
    require_root()
    pytest.importorskip("bcc")
    from bcc import BPF

    from ztrace.capture.loader import check_fentry

    works, detail = check_fentry()
    # an independent attempt: load a fentry program directly
    try:
        b = BPF(text=b"KFUNC_PROBE(vfs_read) { return 0; }")
        b.cleanup()
        loads = True
    except Exception:
        loads = False
    if not loads:
        assert not works and "failed" in detail  # e.g. this 6.18 host: EPERM at load
    p = subprocess.run(
        [sys.executable, "-m", "ztrace", "doctor", "--json", "--check-fentry"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["fentry_check"]["works"] is works
    print(f"fentry on this kernel: {detail}; bcc's support_kfunc() says {BPF.support_kfunc()}")
