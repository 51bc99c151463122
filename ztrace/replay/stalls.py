"""vCPU stalls inside lock holds: how long the lock stays held when its holder stops.

A guest's vCPU stops now and then (the host deschedules its thread; an interrupt runs),
and a stop that lands inside a lock hold holds the lock for all of its length: every CPU
that asks meanwhile waits for it. A call on a CPU for over :data:`LONG_FACTOR` times its
kind's median was stalled (the calibration's definition,
:func:`ztrace.checks.holdtime.stall_in_hold`). The rate is measured where the trace was
captured, at its host load (:func:`in_trace`: its zs_free calls past that cap; 1,200-2,100
per second of call time at 26-36 µs in the guests' heavy runs, session 25), else by the
calibration on the trace's kernel (:func:`from_calibration`: the in-hold stalls of its one
uncontended thread, 811-1,038 per second of hold at 49-67 µs on the shipped files); a
TSC-gap probe on an idle guest vCPU saw 600-800 stops >= 10 µs per second whatever the
other vCPU did (session 24), so they are the environment's, not the lock's.

The replay removes every stall that a traced call contained from its duration (its own
waits, switched-out and stopped time: :mod:`ztrace.replay.stops`), because a stall's place
in the call says nothing about where it falls in another design's holds. It puts them back
as a rate: a hold of ``h`` ns is stalled with probability ``min(1, rate * h)`` by the mean
excess, one seeded draw per (op, lock step), the same in every run and design. That the
rate is per ns of hold is the environment model: a shorter hold (another design, no
probes) is hit less often. A stalled op is late, and a closed-loop replay makes the CPU's
later ops late with it (:func:`ztrace.replay.locks._sim.sim_batch`), as the thread would be.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ztrace.errors import ConfigError
from ztrace.replay.costs import STALL_RATE_BITS

if TYPE_CHECKING:
    from ztrace.replay.stops import Stops

#: calibration kinds whose calls carry the stall measurement (ztrace.checks.holdtime)
KINDS = ("malloc", "malloc_grow", "free", "map")
#: a call on a CPU for over this many times its kind's median was stalled: the
#: calibration's definition (ztrace.checks.holdtime.stall_in_hold), and the replay's cap
LONG_FACTOR = 5
#: no cap
NO_CAP = 2**62


@dataclass(frozen=True)
class Stalls:
    """Stalls per second of lock hold and their mean length; zero = none injected."""

    per_s: float = 0.0
    mean_ns: int = 0
    source: str = "none: holds are never stalled"
    #: longest duration of a call without a stall, per kind (zs_malloc, one that grew a
    #: zspage, zs_free): LONG_FACTOR times the calibration's median; the rest is a stall
    caps: tuple[int, int, int] = (NO_CAP, NO_CAP, NO_CAP)

    def as_array(self) -> np.ndarray:
        """The stall slots after the hold shares (costs.C_STALL_RATE .. C_CAP_FREE; the
        seed slot is the simulation's to fill)."""
        rate = round(self.per_s * 1e-9 * (1 << STALL_RATE_BITS))
        return np.array([rate, self.mean_ns, 0, *self.caps], dtype=np.int64)


def from_calibration(kinds: dict[str, Any], path: Path, release: str) -> Stalls:
    """The stall rate and length of a ``holdtime.json``'s kinds: in-hold stalls (share of
    the long calls' excess inside the hold, times their number) over the time held in the
    raw measured window (``samples * hold_ns[high]``: the window in which they were
    counted), and the in-hold excess over the in-hold stalls. No ``stall_in_hold`` in any
    kind: no stalls (a calibration from before session 23)."""
    from ztrace.replay.holds import shown_path

    n = excess = held = 0.0
    for k in KINDS:
        got = kinds.get(k)
        if not isinstance(got, dict) or not isinstance(got.get("stall_in_hold"), dict):
            continue
        try:
            st = got["stall_in_hold"]
            share = float(st["share"])
            n += share * float(st["long_calls"])
            excess += share * float(st["excess_ns"])
            held += float(got["samples"]) * float(got["hold_ns"][1])
        except (KeyError, TypeError, ValueError, IndexError):
            raise ConfigError(f"{path}: `{k}` has a malformed stall_in_hold") from None
    if n <= 0 or held <= 0:
        return Stalls()
    per_s, mean_ns = n / held * 1e9, round(excess / n)
    caps = (
        _cap(kinds, "malloc", path),
        _cap(kinds, "malloc_grow", path),
        _cap(kinds, "free", path),
    )
    return Stalls(
        per_s,
        mean_ns,
        f"measured on {release}: {shown_path(path)} ({per_s:.0f} stalls per second of "
        f"hold, {mean_ns / 1000:.1f} µs each; a hold of h ns is stalled with probability "
        f"rate * h, seeded; a traced call's time past {LONG_FACTOR}x its kind's median "
        f"(zs_malloc {caps[0]} ns, grown {caps[1]} ns, zs_free {caps[2]} ns) is a stall, "
        "taken out of it)",
        caps,
    )


def _cap(kinds: dict[str, Any], kind: str, path: Path) -> int:
    """LONG_FACTOR x the kind's median duration (a kind not calibrated: malloc's)."""
    got = kinds.get(kind) or kinds.get("malloc")
    try:
        return round(LONG_FACTOR * float(got["dur_ns"]))  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: `{kind}` has no median duration (dur_ns)") from None


def in_trace(trace: str | os.PathLike[str], stops: Stops | None, cal: Stalls) -> Stalls:
    """The stall rate and length measured in the trace itself, at its capture's host load:
    its zs_free calls (the kind whose length does not depend on the allocator's state the
    way a zs_malloc that grows does) on the replay clock (``stops``: the stopped guest taken
    out, :mod:`ztrace.replay.stops`), less the time they were switched out or waited for a
    lock, past ``cal``'s zs_free cap (:data:`LONG_FACTOR` x the calibration's median), per
    ns of zs_free time; the length is the excess over that median. ``cal`` keeps its caps.
    A trace without measured zs_free calls keeps ``cal``."""
    from ztrace.format import open_trace
    from ztrace.format.events import EV_FREE
    from ztrace.replay.ingest import event_codes
    from ztrace.replay.stops import unheld, unheld_columns

    tr = open_trace(trace)
    has_tid = "tid" in tr.schema.names
    cap = cal.caps[2]
    free_median_ns = cap // LONG_FACTOR  # the calibration's median, as the cap holds it
    calls = long = 0
    on_ns = excess = 0
    for b in tr.iter_batches(columns=unheld_columns(tr.schema.names)):
        _, dur = unheld(b, stops, has_tid)
        on = dur[(event_codes(b.column("event")) == EV_FREE) & (dur > 0)]
        calls += len(on)
        on_ns += int(on.sum())
        past = on[on > cap]
        long += len(past)
        excess += int((past - free_median_ns).sum())
    if calls == 0 or on_ns <= 0:
        return cal
    per_s = long / on_ns * 1e9
    mean_ns = round(excess / long) if long else 0
    return Stalls(
        per_s,
        mean_ns,
        f"measured in the trace: {long} of its {calls} zs_free calls ran past {cap} ns "
        f"({LONG_FACTOR}x the calibration's median), {per_s:.0f} per second of call time, "
        f"{mean_ns / 1000:.1f} µs past the median each; a hold of h ns is stalled with "
        f"probability rate * h, seeded; a traced call's time past {LONG_FACTOR}x its kind's "
        f"median (zs_malloc {cal.caps[0]} ns, grown {cal.caps[1]} ns, zs_free {cap} ns) is a "
        "stall, taken out of it",
        cal.caps,
    )


def find(trace: str | os.PathLike[str], release: str) -> Stalls:
    """The stalls of the calibration that :func:`ztrace.replay.holds.find` reads for
    ``trace``; none without one."""
    from ztrace.replay.holds import calibration_file, calibration_kinds

    f = calibration_file(trace, release)
    return Stalls() if f is None else from_calibration(calibration_kinds(f, release), f, release)
