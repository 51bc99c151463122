"""Units for the terminal: nanoseconds scaled like perf.

Its own module, free of polars, because the guest-side commands (``oracle zram`` inside a
qemu guest, whose image has no polars) print through :mod:`ztrace.look.tables`.
"""

from __future__ import annotations

import math

# perf's lock_stat_key_print_time() table: the largest unit not exceeding the value.
_TIME_UNITS: tuple[tuple[float, str], ...] = (
    (1e9 * 3600, "h"),
    (1e9 * 60, "m"),
    (1e9, "s"),
    (1e6, "ms"),
    (1e3, "us"),
)


def human_ns(ns: float | int | None) -> str:
    """Scale nanoseconds like perf: ``785.61 us``, ``1.20 s``; below 1 us, integer ``ns``."""
    if ns is None or not math.isfinite(ns):
        return "-"
    for base, unit in _TIME_UNITS:
        if ns >= base:
            return f"{ns / base:.2f} {unit}"
    return f"{int(ns)} ns"
