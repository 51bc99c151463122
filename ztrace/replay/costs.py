"""Per-operation cost model: how long each replayed operation holds its locks.

A trace event's own ``duration_ns`` is used whenever the probe recorded it (nonzero). For
events without one (synthetic traces, probes without return hooks) the replay uses this
model. :meth:`CostModel.fit` replaces the per-kind defaults by the **median** measured
duration of that event kind in the trace, when it has any measured ones.

Defaults (x86-64, ~3 GHz, warm caches; see docs/replay-model.md for the reasoning):

* ``malloc_ns = 120``: zs_malloc's locked part is find_get_zspage (one list head per fullness
  group), obj_malloc (pop the zspage free list: one kmap of the object page, a few stores),
  fix_fullness_group and the stats update -- a few hundred instructions with two or three
  likely cache misses on the class and zspage.
* ``free_ns = 100``: obj_free (kmap, push on the free list) plus fullness fix-up.
* ``free_zspage_ns = 400`` per page: freeing an emptied zspage (``__free_zspage``: page
  flags reset, ``__free_page``) under the class lock.
* ``lookup_ns = 20``: handle -> zspage under the pool read lock (two dependent loads).
* ``alloc_zspage_ns = 600`` per page: alloc_page + create_page_chain + init_zspage, done
  *outside* the class lock but on the CPU (delays that CPU's later ops).
* ``write_ns_per_kib = 60``: the object copy of zs_obj_write/zs_map_object (~17 GB/s memcpy)
  plus ``write_base_ns = 30`` for kmap and bookkeeping. Runs under the zspage read lock only.
* ``compact_ns = 50_000``: one zs_compact pass when the trace gives no duration.
* ``migrate_ns = 2_000``: one page migration (copy 4 KiB, fix up the objects' handles).
* ``mag_hit_ns = 15``: pop/push on a per-CPU magazine; ``batch_obj_ns = 40``: each extra
  object moved in a magazine refill/flush beyond the first.
* ``write_after_malloc = True``: zram and zswap write the object right after zs_malloc, so
  the replay runs the ``write`` op (pool read lock / pool spinlock) after every malloc.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ztrace.errors import ConfigError


@dataclass(frozen=True)
class CostModel:
    """Hold and CPU times (ns) of replayed operations; stored with the results."""

    malloc_ns: int = 120
    free_ns: int = 100
    free_zspage_ns: int = 400
    lookup_ns: int = 20
    alloc_zspage_ns: int = 600
    write_base_ns: int = 30
    write_ns_per_kib: int = 60
    compact_ns: int = 50_000
    migrate_ns: int = 2_000
    mag_hit_ns: int = 15
    batch_obj_ns: int = 40
    write_after_malloc: bool = True
    #: the probes' own cost inside every measured ``duration_ns`` (kprobe entry to
    #: kretprobe), subtracted from it; 0 = not measured (say so: see :meth:`provenance`)
    probe_overhead_ns: int = 0
    #: where the per-kind numbers came from: "defaults" or "fitted:<kinds>"
    source: str = "defaults"

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if isinstance(v, bool) or not isinstance(v, int):
                continue
            if v < 0:
                raise ConfigError(f"cost model `{k}` must be >= 0, got {v}")

    def as_array(self) -> np.ndarray:
        """The numeric fields in a fixed order, for the numba core (see ``C_*`` indices)."""
        return np.array([getattr(self, f) for f in _ARRAY_FIELDS], dtype=np.int64)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostModel:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown cost model key `{unknown[0]}`")
        return cls(**known)

    def fit(self, medians: dict[str, int]) -> CostModel:
        """Replace defaults by measured per-event-kind medians (``{"zs_malloc": 240, ...}``)."""
        changes: dict[str, Any] = {}
        for event, fieldname in _FIT_FIELDS.items():
            v = medians.get(event)
            if v is not None and v > 0:
                changes[fieldname] = int(v)
        if not changes:
            return self
        kinds = ",".join(sorted(k for k in _FIT_FIELDS if k in medians and medians[k] > 0))
        return replace(self, source=f"fitted:{kinds}", **changes)

    def provenance(self, measured: dict[str, int], counts: dict[str, int]) -> dict[str, str]:
        """Where each hold time of a replay comes from: ``measured`` (the trace's own
        ``duration_ns``, per row), ``fitted`` (the median of the measured rows of that
        kind, for its rows without one) or ``default`` (this model's constant).

        ``measured``/``counts``: rows with a duration / all rows, per event kind.
        """
        fitted = set(self.source.removeprefix("fitted:").split(",")) if self.fitted else set()
        out: dict[str, str] = {}
        for event, fieldname in _FIT_FIELDS.items():
            m, n = counts.get(event, 0), measured.get(event, 0)
            if m == 0:
                continue
            rest = f"fitted ({fieldname}={getattr(self, fieldname)}, median of the measured)"
            if event not in fitted:
                rest = f"default ({fieldname}={getattr(self, fieldname)})"
            if n >= m:
                out[event] = f"measured (duration_ns of all {m} rows)"
            elif n:
                out[event] = f"measured for {n} of {m} rows; the rest {rest}"
            else:
                out[event] = rest
        for fieldname in ("lookup_ns", "alloc_zspage_ns", "free_zspage_ns", "write_base_ns"):
            out[fieldname] = f"default ({getattr(self, fieldname)})"
        out["write_ns_per_kib"] = f"default ({self.write_ns_per_kib}; also the read copy)"
        if measured:
            out["note"] = (
                "a measured duration is never added to: malloc_grow splits it into lookup, "
                "alloc_zspage and the relocked part; a measured zs_free includes free_zspage"
            )
        out["probe_overhead_ns"] = (
            f"given ({self.probe_overhead_ns}), subtracted from every measured duration"
            if self.probe_overhead_ns
            else "not measured (0): measured durations include the probes' own cost"
        )
        return out

    @property
    def fitted(self) -> bool:
        return self.source.startswith("fitted:")


#: order of CostModel.as_array()
_ARRAY_FIELDS = (
    "malloc_ns",
    "free_ns",
    "free_zspage_ns",
    "lookup_ns",
    "alloc_zspage_ns",
    "write_base_ns",
    "write_ns_per_kib",
    "compact_ns",
    "migrate_ns",
    "mag_hit_ns",
    "batch_obj_ns",
    "write_after_malloc",
)
(
    C_MALLOC,
    C_FREE,
    C_FREE_ZSPAGE,
    C_LOOKUP,
    C_ALLOC_ZSPAGE,
    C_WRITE_BASE,
    C_WRITE_KIB,
    C_COMPACT,
    C_MIGRATE,
    C_MAG_HIT,
    C_BATCH_OBJ,
    C_WRITE_AFTER_MALLOC,
) = range(len(_ARRAY_FIELDS))
#: hold-share slots after the cost model's fields (permille of a measured duration held:
#: zs_malloc, zs_malloc that grew a zspage, zs_free; ztrace.replay.holds.HoldShares.as_array)
C_HOLD_MALLOC, C_HOLD_GROW, C_HOLD_FREE, C_HOLD_MAP = range(
    len(_ARRAY_FIELDS), len(_ARRAY_FIELDS) + 4
)
#: stall slots after those (ztrace.replay.stalls.Stalls.as_array): the rate, the mean length,
#: the simulation's seed, and per kind (zs_malloc, one that grew, zs_free) the longest
#: measured duration taken as a call without a stall
C_STALL_RATE, C_STALL_NS, C_STALL_SEED, C_CAP_MALLOC, C_CAP_GROW, C_CAP_FREE = range(
    C_HOLD_MAP + 1, C_HOLD_MAP + 7
)
#: C_STALL_RATE's fixed point: stalls per ns of lock hold times 2^STALL_RATE_BITS (a hold of
#: ``h`` ns is stalled when a 53-bit hash < ``h * rate``; ztrace.replay.stalls)
STALL_RATE_BITS = 53

#: trace event kind -> cost field that its measured median replaces
_FIT_FIELDS = {
    "zs_malloc": "malloc_ns",
    "zs_free": "free_ns",
    "zs_compact": "compact_ns",
    "zs_migrate": "migrate_ns",
}


def probe_cost(trace: str | os.PathLike[str]) -> tuple[int, str] | None:
    """The capture probes' own cost measured on the trace's kernel, and where it came from:
    ``<trace>.kernel/probecost.json`` (``ztrace vm run -s probecost``,
    :mod:`ztrace.checks.probecost`), the mean of zs_malloc's and zs_free's pair cost (median
    over ABAB rounds). That is one pair's *whole* cost, an upper bound on the part inside a
    measured duration. None when it was not measured; a cost not measured on the trace's own
    kernel is refused (probe cost differs per kernel: 6.1 and 6.12 run different kprobe
    paths)."""
    from ztrace.format import read_meta

    f = Path(str(trace) + ".kernel") / "probecost.json"
    if not f.is_file():
        return None
    d = json.loads(f.read_text())
    if d.get("kernel") != read_meta(trace).kernel_release:
        raise ConfigError(
            f"{f}: measured on {d.get('kernel')}, not on the trace's kernel "
            f"{read_meta(trace).kernel_release}"
        )
    costs = [c["pair_cost_ns"] for c in d["cost"].values() if c.get("pair_cost_ns") is not None]
    if not costs:
        return None
    ns = max(0, round(sum(costs) / len(costs)))
    rounds = len(d.get("rounds", [])) // 2
    return ns, f"measured on {d['kernel']}: {f} ({rounds} ABAB round pairs)"
