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
    right after ``make test``. ZTRACE_VM_LONG=1 keeps them in any pytest run.

    Then every test gets its pytest-xdist group (``make test`` runs ``-n 2 --dist
    loadgroup``): see ``_xdist_group``."""
    if os.environ.get("ZTRACE_VM_LONG") != "1":
        _leave_vm_long(config, items)
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))
    # longest first, so the last unit handed out is a short one (xdist takes units in this
    # order with --no-loadscope-reorder): guests, then the host's zram/BPF tests, then the rest
    items.sort(key=_cost_rank)


def _xdist_group(item: pytest.Item) -> str:
    """The unit a worker runs whole, in order. Every test touching the host's zram or BPF
    shares one unit: they drive the same /dev/zram0 and the same tracepoints, and two at once
    would see each other's events. Any other test stays with its module, so a module-scoped
    fixture (a guest boot, a replay) runs once, not once per worker."""
    if item.get_closest_marker("kernel"):
        return "host-kernel"
    return item.nodeid.split("::")[0]


def _cost_rank(item: pytest.Item) -> int:
    for rank, mark in enumerate(("vm_long", "vm", "kernel", "slow")):
        if item.get_closest_marker(mark):
            return rank
    return 4


def _leave_vm_long(config: pytest.Config, items: list[pytest.Item]) -> None:
    long = [i for i in items if i.get_closest_marker("vm_long")]
    if long:
        items[:] = [i for i in items if not i.get_closest_marker("vm_long")]
        config.hook.pytest_deselected(items=long)
        n = len(long)
        print(f"\nztrace: {n} vm_long test(s) left to `make vm-test-long` (.ci/run runs it)")


@pytest.fixture
def cli():
    return run_cli
