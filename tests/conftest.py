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


@pytest.fixture
def cli():
    return run_cli
