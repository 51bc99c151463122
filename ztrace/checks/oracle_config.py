"""The oracle's parameters (``ztrace check oracle`` takes its defaults from here).

Its own module, importing nothing heavy, so the CLI can show these defaults without loading
the model and numba (``ztrace.checks.oracle`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class OracleConfig:
    """Parameters of one oracle run."""

    ops: int = 50_000
    ops_after: int | None = None  # after the first compaction; default ops // 5
    seed: int = 1
    device: str = "/dev/zram0"
    slots: int = 8192
    comp_algorithm: str = "lzo-rle"
    out_dir: str | None = None
    #: replace an existing non-empty out_dir whole (it is never merged into)
    force: bool = False
    lock_timeout_s: float = 600.0
    #: force an overwrite order (None = the running kernel's, from kernel_profile())
    alloc_before_free: bool | None = None
    progress: Callable[[int, int], None] | None = None

    @property
    def n_after(self) -> int:
        return self.ops // 5 if self.ops_after is None else self.ops_after
