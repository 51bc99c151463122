"""Build the zsstress load-generator module (``kmod/zsstress.c``) for a guest kernel, on the host.

Why on the host: the guest image carries each kernel's headers (BCC needs them) but no compiler,
and compiling under TCG would cost every run tens of seconds. The guests' kernels are Debian
bookworm builds made with bookworm's gcc-12 (``CONFIG_CC_VERSION_TEXT`` in their ``.config``),
the same compiler a bookworm host has, so the host builds the module against the guest's own
headers, extracted once from ``rootfs.img`` with ``debugfs`` (no loop mount, no root needed for
reading). The ``.ko`` is cached per kernel release and module source hash under the image
directory, and handed to the guest through the run's output share (``kmod/zsstress.ko``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ztrace.vm.run import VmError, VmImage

KMOD_DIR = Path(__file__).resolve().parent / "kmod"
SOURCES = ("zsstress.c", "Kbuild")
MODULE = "zsstress.ko"


def source_hash() -> str:
    """Hash of the module sources: a changed zsstress.c builds a new .ko, never reuses one."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((KMOD_DIR / name).read_bytes())
    return h.hexdigest()[:12]


def _debugfs_ls(img: Path, path: str) -> list[str]:
    out = subprocess.run(
        ["debugfs", "-R", f"ls -p {path}", str(img)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    # ls -p rows: /inode/mode/uid/gid/name/size/
    return [f.split("/")[5] for f in out.splitlines() if f.count("/") >= 6]


def _common_dir(makefile: Path) -> str | None:
    """The ``-common`` directory Debian's per-flavour Makefile includes (absolute path)."""
    m = re.search(r"^include\s+(/usr/src/\S+)/Makefile", makefile.read_text(), re.M)
    return m[1] if m else None


def headers_dir(image: VmImage, release: str) -> Path:
    """Headers of ``release`` extracted from the image (once), ready for ``make -C``."""
    root = image.path / "headers" / release
    flavour = root / "usr/src" / f"linux-headers-{release}"
    if (root / ".done").is_file():
        return flavour
    if shutil.which("debugfs") is None:
        raise VmError("debugfs not found; install e2fsprogs to extract the guest kernel headers")
    img = image.path / image.manifest["image"]
    if root.exists():
        shutil.rmtree(root)
    (root / "usr/src").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)

    def rdump(src: str, dst: Path) -> None:
        p = subprocess.run(
            ["debugfs", "-R", f"rdump {src} {dst}", str(img)],
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode != 0:
            raise VmError(f"{img}: debugfs rdump {src} failed: {p.stderr.strip()[:200]}")

    rdump(f"/usr/src/linux-headers-{release}", root / "usr/src")
    mk = flavour / "Makefile"
    if not mk.is_file():
        raise VmError(f"{img}: no /usr/src/linux-headers-{release} in the guest image")
    common = _common_dir(mk)
    if common is None:
        raise VmError(f"{mk}: no `include /usr/src/.../Makefile` line (not a Debian header tree)")
    rdump(common, root / "usr/src")
    # scripts/ and tools/ are symlinks into /usr/lib/linux-kbuild-X.Y (host-runnable binaries
    # built for bookworm, like this host).
    for name in _debugfs_ls(img, "/usr/lib"):
        if name.startswith("linux-kbuild-"):
            rdump(f"/usr/lib/{name}", root / "usr/lib")
    # Re-point Debian's absolute include at the extracted -common tree.
    mk.write_text(mk.read_text().replace(common, str(root) + common))
    (root / ".done").write_text("")
    return flavour


def _kernel_cc(flavour: Path) -> str:
    """The compiler Debian's ``.kernelvariables`` names (gcc-12 for bookworm and its backports)."""
    kv = flavour / ".kernelvariables"
    m = re.search(r"^CC\s*=.*?(gcc-\d+)\s*$", kv.read_text(), re.M) if kv.is_file() else None
    return m[1] if m else "gcc"


def build_module(image: VmImage, kernel: str, *, quiet: bool = True) -> Path:
    """Path of zsstress.ko built for ``kernel`` ("6.1"/"6.12"), building it if needed."""
    _, _, release = image.kernel_files(kernel)
    out = image.path / "kmod" / release / source_hash() / MODULE
    if out.is_file():
        return out
    flavour = headers_dir(image, release)
    cc = _kernel_cc(flavour)
    for tool in (cc, "make"):
        if shutil.which(tool) is None:
            raise VmError(
                f"{tool} not found on the host; the {release} guest kernel was built with {cc} "
                f"(apt-get install {cc} make)"
            )
    with tempfile.TemporaryDirectory(prefix="zsstress-") as tmp:
        for name in SOURCES:
            shutil.copy(KMOD_DIR / name, tmp)
        p = subprocess.run(
            # No module BTF: 6.12's kbuild would run pahole (absent on a plain host) for
            # nothing the guest needs (zsstress is never a BPF attach target).
            ["make", "-C", str(flavour), f"M={tmp}", "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"],
            capture_output=True,
            text=True,
            check=False,
        )
        ko = Path(tmp) / MODULE
        if p.returncode != 0 or not ko.is_file():
            tail = " | ".join((p.stdout + p.stderr).strip().splitlines()[-4:])
            raise VmError(f"building {MODULE} for {release} failed: {tail}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ko, out.with_suffix(".tmp"))
        out.with_suffix(".tmp").rename(out)
    return out
