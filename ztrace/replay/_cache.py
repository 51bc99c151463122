"""Numba's disk cache of the replay, invalidated by every source file the compiled code reads.

numba reuses a cached function while *its own* file is unchanged, but the machine code also
holds the functions it calls (the pool model, the lock core's helpers, the designs' allocator
fronts) and the constants it reads from other modules (op kinds, cost indices). So every
numba function of the replay gets the contents of all those files mixed into its cache stamp
(:func:`ztrace.model.zsmalloc.cache_depends_on`): an edit to any of them recompiles, never
replays with stale code. tests/test_locks.py proves it in a fresh process.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from numba.core.registry import CPUDispatcher

from ztrace.model import zsmalloc as zsm
from ztrace.replay.locks._front import FRONT_FILES

_ROOT = Path(__file__).resolve().parents[1]  # the ztrace package
#: modules whose numba functions read each other's code and constants
MODULES = (
    "ztrace.replay.hashing",
    "ztrace.replay.handles",
    "ztrace.replay.ingest",
    "ztrace.replay.prescan",
    "ztrace.replay.locks._sim",
)


def source_files() -> list[Path]:
    """Every file the replay's compiled code depends on, in a fixed order."""
    files = sorted((_ROOT / "model").glob("*.py"))
    files.append(_ROOT / "format" / "events.py")  # ingest compiles in the event codes
    files += [_ROOT / "replay" / f for f in ("costs.py", "hashing.py", "handles.py")]
    files += [_ROOT / "replay" / f for f in ("ingest.py", "prescan.py")]
    # the lock package's own modules (constants, core, fronts' interface) and the design
    # files that bring a front; a design without one is data (step tables read at run time),
    # so adding or editing it must not recompile the core (tests/test_locks.py)
    locks = _ROOT / "replay" / "locks"
    fronts = {Path(f).resolve() for f in FRONT_FILES}
    files += sorted(
        f for f in locks.glob("*.py") if f.name.startswith("_") or f.resolve() in fronts
    )
    return files


def dispatchers() -> list[CPUDispatcher]:
    """The numba functions of :data:`MODULES`."""
    out: dict[int, CPUDispatcher] = {}
    for name in MODULES:
        mod = importlib.import_module(name)
        out |= {id(v): v for v in vars(mod).values() if isinstance(v, CPUDispatcher)}
    return list(out.values())


def depend_on_replay_sources() -> None:
    """Mix :func:`source_files` into the cache stamp of every :func:`dispatchers` entry
    (call at import, before the first call)."""
    zsm.cache_depends_on(dispatchers(), *map(str, source_files()))
