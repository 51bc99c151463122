"""Shared test helpers.

Tests marked ``kernel`` need root and this machine's zram/BPF; ``vm`` boots a qemu guest;
``browser`` drives Debian's Chromium. They run on the project's machines and skip only
where the feature is truly absent, printing why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, input: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m ztrace ARGS`` as a user would, capturing stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "ztrace", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        cwd=ROOT,
    )


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (kernel features: zram, BPF)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``vm_long`` tests (a guest run of ten minutes or more) leave ``make test`` so it stays
    well under its 45-minute budget; ``make vm-test-long`` runs them, and so does .ci/run
    right after ``make test``. ZTRACE_VM_LONG=1 keeps them in any pytest run."""
    if os.environ.get("ZTRACE_VM_LONG") == "1":
        return
    long = [i for i in items if i.get_closest_marker("vm_long")]
    if long:
        items[:] = [i for i in items if not i.get_closest_marker("vm_long")]
        config.hook.pytest_deselected(items=long)
        n = len(long)
        print(f"\nztrace: {n} vm_long test(s) left to `make vm-test-long` (.ci/run runs it)")


@pytest.fixture
def cli():
    return run_cli
