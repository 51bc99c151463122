"""Workloads: seeded synthetic traces, behind one command (``ztrace synth --profile P``).

``synth`` makes allocator traces (zs_malloc/zs_free, what zram asks of zsmalloc);
``synth_swap`` makes swap traces (schema v2, what a memory cgroup asks of zswap). Profile
names are unique across both; :data:`PROFILE_KINDS` says which generator owns each name.

>>> PROFILE_KINDS["zram-parallel"], PROFILE_KINDS["phase-change"]
('alloc', 'swap')
"""

from __future__ import annotations

from typing import Literal

from ztrace.workloads import synth, synth_swap

WorkloadKind = Literal["alloc", "swap"]

#: every profile name -> the generator that owns it
PROFILE_KINDS: dict[str, WorkloadKind] = {
    **{name: "alloc" for name in synth.PROFILES},
    **{name: "swap" for name in synth_swap.PROFILES},
}
if len(PROFILE_KINDS) != len(synth.PROFILES) + len(synth_swap.PROFILES):
    raise ImportError("a workload profile name is defined twice (ztrace/workloads/)")

__all__ = ["PROFILE_KINDS", "WorkloadKind", "synth", "synth_swap"]
