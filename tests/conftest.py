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

    Then the longest go first, so the last unit a pytest-xdist worker takes is a short one
    (xdist hands units out in collection order under --no-loadscope-reorder): guests, the
    host's zram/BPF tests, other slow ones, the rest. The sort is stable: a module's
    parametrized fixtures keep pytest's order."""
    if os.environ.get("ZTRACE_VM_LONG") != "1":
        _leave_vm_long(config, items)
    items.sort(key=_cost_rank)


def _cost_rank(item: pytest.Item) -> int:
    for rank, mark in enumerate(("vm_long", "vm", "kernel", "slow")):
        if item.get_closest_marker(mark):
            return rank
    return 4


#: test files with tests marked ``kernel``: they share one xdist unit (see xdist_unit)
KERNEL_FILES = frozenset(
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / "tests").glob("test_*.py")
    if "mark.kernel" in p.read_text()
)
#: guest tests that share no module fixture but the cached image: a unit each, so the two
#: workers can take them side by side (each boots its own guest, ~8 min)
OWN_UNITS = frozenset(
    {
        "tests/test_vm.py::test_zram_oracle_in_the_61_guest",
        "tests/test_vm.py::test_zram_oracle_in_the_612_guest",
    }
)


def xdist_unit(nodeid: str) -> str:
    """The unit one pytest-xdist worker runs whole (``make test`` runs ``-n 2``). Every test
    of a file marking tests ``kernel`` shares one unit: they drive the host's /dev/zram0 and
    its tracepoints, and two at once would see each other's events or lose their own. Any
    other test stays with its file, so a module-scoped fixture (a guest boot, a replay) runs
    once, not once per worker; ``OWN_UNITS`` are the exceptions.

    (Not pytest-xdist's ``xdist_group`` marker: under pytest 9.2 its nodeid suffix no longer
    takes, and tests of one group ran on both workers, booting a module's guest twice.)

    >>> xdist_unit("tests/test_capture_kernel.py::test_pool_filter_by_name")
    'host-kernel'
    >>> xdist_unit("tests/test_holds.py::test_calibration_summary_by_hand")
    'tests/test_holds.py'
    """
    path = nodeid.split("::")[0]
    if path in KERNEL_FILES:
        return "host-kernel"
    if nodeid.split("[")[0] in OWN_UNITS:
        return nodeid
    return path


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """pytest-xdist's scheduler with units from :func:`xdist_unit`."""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return xdist_unit(nodeid)

    return UnitScheduling(config, log)


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
