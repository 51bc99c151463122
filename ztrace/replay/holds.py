"""Lock hold share: the part of a measured zs_malloc/zs_free call that holds the lock.

A kprobe capture's ``duration_ns`` is the whole call. The kernel holds zsmalloc's lock for
part of it only (6.1 and 6.12 mm/zsmalloc.c: zs_malloc runs cache_alloc_handle() before
``spin_lock()``, and alloc_zspage() between the two holds of a call that grows; zs_free runs
cache_free_handle() after ``spin_unlock()``), and the probes' own work sits in the duration
too. The replay therefore holds the lock for ``share * duration``, with the share measured
per op kind on the trace's kernel by the calibration scenario (``ztrace vm run -s
holdtime``, :mod:`ztrace.checks.holdtime`), never fitted to a validation run.

Where the share comes from, first match:

1. ``<trace>.kernel/holdtime.json``, measured on the trace's own kernel release;
2. ``replays/calibration/holdtime-<release>.json`` shipped with ztrace, same release;
3. none: the whole duration is held (share 1), and the provenance says "not measured".

An explicit ``hold_share`` (``--hold-share F``) is an **experiment**, labelled as such in
the results: every kind's share set to ``F``, whatever was measured.

The calibration gives each share as a bracket ``[low, high]``: ``high`` = the raw measured
hold (the lock probes' own dispatch inside the window is in it), ``low`` = that less what
extra handlers inside the window add (at least as much as the recording probes put there,
whose own work is kept outside: an over-subtraction). The default is the low end
(:data:`DEFAULT_END`): the hold less the probes' own cost, as issue 10 asks of every measured
cost. Since session 24 (the map path's hold in, calibrations re-measured on the guests' TSC)
its contended count is 0.68-1.9 of the kernel's in every cell of two guest matrices, same
and cross kernel; the middle, the default until then, gave 1.3-4x (docs/validation.md,
session 24).
:mod:`ztrace.checks.crosskernel` widens each prediction's interval to both ends.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ztrace.errors import ConfigError
from ztrace.replay.hold_ends import DEFAULT_END, ENDS

#: permille = whole duration held (no share applied: results as before this module)
WHOLE = 1000
#: calibration kinds -> the replay's share slots (ztrace.replay.costs C_HOLD_*)
KINDS = ("malloc", "malloc_grow", "free")


def calibration_dir() -> Path:
    """``replays/calibration`` of the source tree (shipped measurements)."""
    return Path(__file__).resolve().parent.parent.parent / "replays" / "calibration"


@dataclass(frozen=True)
class HoldShares:
    """Share of a measured duration that holds the lock, per op kind, in permille."""

    malloc_pm: int = WHOLE
    grow_pm: int = WHOLE
    free_pm: int = WHOLE
    source: str = "not measured: the whole measured duration is held"
    #: the map path's pool-lock hold in ns (zs_map_object's lookup under pool->lock on
    #: 6.1-6.10, under pool->migrate_lock for read on 6.11+), measured by the same
    #: calibration; -1 = not measured: the cost model's ``lookup_ns``
    map_ns: int = -1

    def __post_init__(self) -> None:
        for v in (self.malloc_pm, self.grow_pm, self.free_pm):
            if not 0 <= v <= WHOLE:
                raise ConfigError(f"hold share must be within 0..1, got {v / WHOLE}")

    def as_array(self) -> np.ndarray:
        """The share slots appended to the cost array (order of costs.C_HOLD_*)."""
        return np.array([self.malloc_pm, self.grow_pm, self.free_pm, self.map_ns], dtype=np.int64)

    @property
    def whole(self) -> bool:
        return self.malloc_pm == self.grow_pm == self.free_pm == WHOLE


def experiment(share: float) -> HoldShares:
    """Every kind's share set to ``share`` (``--hold-share``): an experiment, not a model."""
    if not (isinstance(share, int | float) and 0 < share <= 1):
        raise ConfigError(f"--hold-share must be within (0, 1], got {share!r}")
    pm = round(share * WHOLE)
    return HoldShares(
        pm,
        pm,
        pm,
        f"experiment: fixed share {share:g} of every duration "
        "(--hold-share; not measured, not a model default)",
    )


def from_file(path: Path, release: str, end: str = DEFAULT_END) -> HoldShares:
    """The shares of a ``holdtime.json`` (:mod:`ztrace.checks.holdtime`) measured on ``release``.

    A kind the calibration did not see (e.g. no zspage grew) takes ``malloc``'s share.
    """
    if end not in ENDS:
        raise ConfigError(f"hold share end `{end}`: expected one of {', '.join(ENDS)}")
    kinds = calibration_kinds(path, release)
    pm: dict[str, int] = {}
    for k in KINDS:
        got = kinds.get(k) or kinds.get("malloc")
        if got is None:
            raise ConfigError(f"{path}: no `{k}` or `malloc` share")
        try:
            lo, hi = (float(x) for x in got["share"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: `{k}` has no share bracket [low, high]") from None
        pm[k] = min(WHOLE, max(1, round(_at_end(lo, hi, end) * WHOLE)))
    desc = ", ".join(f"{k} {pm[k] / WHOLE:.3f}" for k in KINDS)
    map_ns = _map_hold_ns(kinds.get("map"), end, path)
    if map_ns >= 0:
        desc += f"; map path's pool-lock hold {map_ns} ns"
    return HoldShares(
        pm["malloc"],
        pm["malloc_grow"],
        pm["free"],
        f"measured on {release}: {shown_path(path)} ({end} of the bracket: {desc})",
        map_ns,
    )


def calibration_kinds(path: Path, release: str) -> dict[str, Any]:
    """The ``kinds`` of a ``holdtime.json`` measured on ``release`` (one line otherwise)."""
    try:
        d = json.loads(path.read_text())
        kinds = d["kinds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a holdtime.json ({exc})") from None
    if not isinstance(kinds, dict):
        raise ConfigError(f"{path}: not a holdtime.json (`kinds` is not an object)")
    if d.get("kernel") != release:
        raise ConfigError(f"{path}: measured on {d.get('kernel')}, not on {release}")
    return kinds


def shown_path(path: Path) -> Path:
    """``path`` as results name it: a shipped file from the source tree, so results do not
    depend on where the checkout lives."""
    if path.is_relative_to(calibration_dir()):
        return Path("replays/calibration") / path.relative_to(calibration_dir())
    return path


def _map_hold_ns(got: object, end: str, path: Path) -> int:
    """The map path's measured hold at ``end`` of its bracket, in ns; -1 if not measured.

    zs_map_object() holds the pool lock for the handle lookup only (6.1.192 backport and
    6.2-6.10 mm/zsmalloc.c: spin_lock(&pool->lock) .. migrate_read_lock(zspage) ..
    spin_unlock; 6.11-6.14: read_lock(&pool->migrate_lock) around the same lookup). The
    calibration times that window directly (``hold_ns``: [less the probes' in-window cost,
    raw]); the trace's zs_read/zs_write rows span map..unmap, so no share of them is used.
    """
    if got is None:
        return -1
    try:
        lo, hi = (float(x) for x in got["hold_ns"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: `map` has no hold bracket [low, high] in ns") from None
    return max(1, round(_at_end(lo, hi, end)))


def _at_end(lo: float, hi: float, end: str) -> float:
    """The point of the measured bracket ``[lo, hi]`` that ``end`` names (hold_ends.ENDS)."""
    return {"low": lo, "high": hi, "mid": (lo + hi) / 2}[end]


def find(
    trace: str | os.PathLike[str],
    release: str,
    *,
    share: float | None = None,
    end: str = DEFAULT_END,
    search: Path | None = None,
) -> HoldShares:
    """The hold shares for ``trace`` (see the module docstring for the order)."""
    if share is not None:
        return experiment(share)
    f = calibration_file(trace, release, search)
    if f is None:
        return HoldShares()
    fentry = _fentry_of(trace)
    if fentry and fentry != _fentry_of_calibration(f):
        # The shares are fractions of kprobe-pair durations, which carry the pair's own cost
        # (a breakpoint trap each side, ~1.5 us under TCG: docs/validation.md, session 28);
        # a fentry duration does not, so the fraction would cut the wrong hold.
        return HoldShares(
            source=f"not measured for fentry: {shown_path(f)} was measured with kprobes on "
            f"zs_malloc/zs_free, this trace probed {fentry} with fentry/fexit; "
            "the whole measured duration is held"
        )
    return from_file(f, release, end)


def _fentry_of(trace: str | os.PathLike[str]) -> str:
    """The functions a capture probed with fentry/fexit (``extra.fentry``), "" otherwise."""
    from ztrace.errors import TraceFormatError
    from ztrace.format import read_meta

    try:
        return read_meta(trace).extra.get("fentry", "")
    except (TraceFormatError, OSError):
        return ""


def _fentry_of_calibration(path: Path) -> str:
    """The functions a calibration's own capture probed with fentry ("" for kprobes, and
    for every calibration made before fentry was used: all of them so far)."""
    try:
        return str(json.loads(path.read_text()).get("fentry", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def calibration_file(
    trace: str | os.PathLike[str], release: str, search: Path | None = None
) -> Path | None:
    """The ``holdtime.json`` measured on ``release`` for ``trace``: its own
    ``<trace>.kernel/holdtime.json``, else the shipped one; None if neither exists."""
    side = Path(str(trace) + ".kernel") / "holdtime.json"
    if side.is_file():
        return side
    shipped = (search or calibration_dir()) / f"holdtime-{release}.json"
    return shipped if shipped.is_file() else None
