"""VM harness: run ztrace inside stock Debian kernels (6.1, 6.12) under qemu.

See docs/vm.md. The public API is re-exported here; the module never imports qemu-side state
at import time, so ``import ztrace.vm`` is cheap.
"""

from ztrace.vm.run import (
    KERNELS,
    GuestOptions,
    VmError,
    VmImage,
    VmResult,
    VmTimeout,
    build_image,
    cache_dir,
    find_image,
    run_scenario,
    scenarios,
)

__all__ = [
    "KERNELS",
    "GuestOptions",
    "VmError",
    "VmImage",
    "VmResult",
    "VmTimeout",
    "build_image",
    "cache_dir",
    "find_image",
    "run_scenario",
    "scenarios",
]
