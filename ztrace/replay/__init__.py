"""Replay engine: stream a trace through the allocator model and lock designs.

Public API: :func:`ztrace.replay.engine.replay`, :class:`ztrace.replay.engine.ReplayResult`,
:func:`ztrace.replay.engine.write_results`; designs live in :mod:`ztrace.replay.locks`.
Imports are lazy so ``import ztrace.replay`` does not load numba.
"""

from __future__ import annotations
