"""Boot a guest scenario for a test, or reuse an earlier run's output directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def guest_run(
    factory: pytest.TempPathFactory,
    env: str,
    kernel: str,
    scenario: str,
    timeout: float,
    params: dict[str, str] | None = None,
) -> Path:
    """The output directory of ``scenario`` on ``kernel``: ``$env`` if set (an earlier run),
    else a fresh run; skips, saying why, where no guest can boot here."""
    reuse = os.environ.get(env)
    if reuse:
        return Path(reuse)
    from ztrace.vm import run as vmrun

    if vmrun.find_image() is None and os.geteuid() != 0:
        pytest.skip("no cached guest image and no root to build one")
    if not shutil.which(vmrun.QEMU) and not shutil.which("apt-get"):
        pytest.skip(f"{vmrun.QEMU} is missing and cannot be installed")
    out = factory.mktemp(f"vm-{scenario}-{kernel}")
    vmrun.run_scenario(
        kernel, scenario, out, vmrun.GuestOptions(params=params or {}, timeout=timeout)
    )
    return out
