"""Extra Python wheels for one guest scenario, fetched by the host's pip (no image rebuild).

The guest image carries what capture needs (pyarrow, numpy, click, rich). The zram oracle also
needs numba (the zsmalloc model is njit code), which would add ~80 MB to every image and force a
rebuild for everyone; instead a scenario that says ``# ztrace-vm: needs-wheels`` gets numba's
wheels, for the guest's CPython 3.11 and pinned to the image's numpy, copied into its output
share (``$O/wheels``), and installs them offline into the throwaway snapshot rootfs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from ztrace.vm.run import VmError, VmImage, cache_dir

PACKAGES = ("numba",)


def _image_numpy(image: VmImage) -> str:
    freeze = image.path / "pip-freeze.txt"
    m = re.search(r"^numpy==(\S+)$", freeze.read_text(), re.M) if freeze.is_file() else None
    if m is None:
        raise VmError(f"{freeze}: no numpy pin (image built without pip-freeze.txt?)")
    return m[1]


def wheel_dir(image: VmImage) -> Path:
    """A directory of wheels for PACKAGES matching the image's numpy; downloaded once."""
    numpy = _image_numpy(image)
    d = Path(str(cache_dir()) + "-wheels") / f"numpy-{numpy}"
    if (d / ".done").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    plats = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", str(d)]
    cmd += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    for plat in plats:
        cmd += ["--platform", plat]
    p = subprocess.run([*cmd, *PACKAGES, f"numpy=={numpy}"], capture_output=True, text=True)
    if p.returncode != 0:
        raise VmError(f"pip download {' '.join(PACKAGES)} failed: {p.stderr.strip()[-200:]}")
    (d / ".done").write_text("")
    return d


def stage(image: VmImage, out: Path) -> None:
    """Copy the wheels into the run's output share (removed again after the run)."""
    shutil.copytree(wheel_dir(image), out / "wheels", ignore=shutil.ignore_patterns(".done"))
