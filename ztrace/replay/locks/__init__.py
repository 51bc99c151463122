"""Lock designs for the replay engine, one module per design, registered by name.

A design is *data*, not code: :class:`LockDesign` compiles the locking of every operation
kind into small integer tables (``steps``), so the single numba core
(:func:`ztrace.replay.locks._sim.sim_batch`) runs any design without a Python call per
event. This is the libCacheSim habit (one interface, one file per algorithm, one registry
with aliases) applied to locks.

Interface, in five lines::

    steps[op, k] = (space, mode, hold, until)   # k-th lock taken by an op of kind ``op``
    space: SP_NONE (CPU work, no lock) | SP_POOL (the pool-wide lock) | SP_SUB (class/stripe)
    mode:  M_SPIN | M_READ | M_WRITE             # spinlock, qrwlock read, qrwlock write
    hold:  H_OP | H_LOOKUP | H_ALLOCZS | H_WRITE | H_MAGHIT   # which cost-model term
    until: U_OWN (release after hold) | U_NEXT (hand over: release once the next lock is
           granted) | U_END (outer lock held to the end of the op) | U_ZWRITE (as U_OWN,
           the hold begun once the op's zspage has no reader) | U_ZREAD (CPU step run
           under the op's zspage read lock)

plus ``n_pools`` (independent pools, each with its own allocator model) with ``pool_of``
(which pool an object lives in), ``n_sub`` / ``sub_of_class`` (how class index maps to a
sub-lock) and ``front`` (an allocator front such as magazine's per-CPU caches, see
:mod:`ztrace.replay.locks._front`; default: none). Register a design with :func:`register`;
resolve a user's spec string (``"pools:32"``) with :func:`get_design`. An unknown name raises
ConfigError listing the names; a name, alias or rank registered twice raises at import time.

A new design is one file here and nothing else: its factory, decorated with
``@register(name, *aliases, rank=N)``, returns :func:`design` of its step table (plus its
front if it has one). Importing this package imports every public module in it
(:func:`ztrace.replay.plugins.import_public_modules`); each must register a design (helpers
are ``_private``). ``rank`` orders :func:`available` and so every "all designs" run: a new
design takes a rank after the last (the one-file proof: docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ztrace.errors import ConfigError
from ztrace.replay.plugins import check_rank, import_public_modules

# ---------------------------------------------------------------- op kinds (core constants)
OP_MALLOC = 0  #: zs_malloc served from an existing zspage
OP_MALLOC_GROW = 1  #: zs_malloc that had to allocate a new zspage (lock dropped meanwhile)
OP_FREE = 2  #: zs_free
OP_WRITE = 3  #: the object write that follows every zs_malloc in zram/zswap (map/obj_write)
OP_COMPACT = 4  #: zs_compact
OP_MIGRATE = 5  #: zs_page_migrate of one zspage page
OP_MAG_HIT = 6  #: magazine design: malloc served from the per-CPU magazine (no lock)
OP_MAG_REFILL = 7  #: magazine design: empty magazine refilled in a batch under the class lock
OP_MAG_FLUSH = 8  #: magazine design: full magazine flushes half its objects back
OP_MAG_FREE = 9  #: magazine design: free pushed into the per-CPU magazine (no lock)
OP_READ = 10  #: zs_map_object (<=6.14) / zs_obj_read_begin (>=6.15) of a live object
#: one source zspage of a zs_compact (__zs_compact's unit between lock drops; the op's
#: class is the class being compacted, see ztrace.replay.compaction)
OP_COMPACT_SRC = 11
N_OPS = 12
OP_NAMES = (
    "malloc",
    "malloc_grow",
    "free",
    "write",
    "compact",
    "migrate",
    "mag_hit",
    "mag_refill",
    "mag_flush",
    "mag_free",
    "read",
    "compact_src",
)
#: kinds after which the engine runs the OP_WRITE steps (zram/zswap write right after malloc)
MALLOC_KINDS = (OP_MALLOC, OP_MALLOC_GROW, OP_MAG_HIT, OP_MAG_REFILL)

#: lock spaces: CPU work without a lock, the pool-wide lock, a sub-lock (class or stripe)
SP_NONE, SP_POOL, SP_SUB = 0, 1, 2
#: lock modes: spinlock, qrwlock read, qrwlock write
M_SPIN, M_READ, M_WRITE = 0, 1, 2
N_MODES = 3
#: hold kinds: which cost term a step holds its lock for
H_OP, H_LOOKUP, H_ALLOCZS, H_WRITE, H_MAGHIT, H_MAPLOOKUP = 0, 1, 2, 3, 4, 5
N_HOLDS = 6
#: release points: after the hold, once the next lock is granted, at the end of the op
U_OWN, U_NEXT, U_END = 0, 1, 2
#: The zspage lock (``zspage->lock``, ≤6.14 an rwlock_t taken by migrate_read_lock() /
#: migrate_write_lock(), mm/zsmalloc.c 6.1 and 6.12). Its writers (__zs_compact() on a source
#: zspage, zs_page_migrate()) take it while holding the pool lock for writing, so a reader
#: (zs_map_object(), which takes it under the pool lock) never waits for it; a *writer*
#: waits, pool (and class) lock held, for the readers already copying from that zspage.
#: U_ZWRITE on a lock step: as U_OWN, but its hold starts once the op's zspage has no
#: reader (the wait is a contended acquisition of the lock ``zspage``). U_ZREAD on a CPU
#: step (SP_NONE): the step runs under the op's zspage read lock (the object copy after
#: zs_map_object()), so a writer of that zspage waits for its end.
U_ZREAD, U_ZWRITE = 3, 4
#: columns of one step
ST_SPACE, ST_MODE, ST_HOLD, ST_UNTIL = 0, 1, 2, 3
N_STEP_FIELDS = 4
MAX_STEPS = 4
#: perf lock contention / kernel lock type names, indexed by mode
MODE_TYPES = ("spinlock", "rwlock:R", "rwlock:W")

Step = tuple[int, int, int, int]


def grow_steps(space: int) -> list[Step]:
    """zs_malloc() that must allocate a zspage (op ``malloc_grow``), under the lock ``space``
    of a design: find_get_zspage() fails and the lock is dropped, alloc_zspage() runs
    unlocked (page allocation), then the lock is re-taken for obj_malloc() +
    insert_zspage(). The kernel's shape in every generation (mm/zsmalloc.c: zs_malloc, 6.1
    and 6.12); the designs differ only in which lock that is."""
    return [
        (space, M_SPIN, H_LOOKUP, U_OWN),
        (SP_NONE, 0, H_ALLOCZS, U_OWN),
        (space, M_SPIN, H_OP, U_OWN),
    ]


def lookup_then(mode: int, hold: int) -> list[Step]:
    """The pool lock (in ``mode``) for the handle -> zspage lookup, then the copy (cost term
    ``hold``) under the zspage read lock only: zs_map_object() up to 6.14,
    zs_obj_read_begin() / zs_obj_write() from 6.15 (``U_ZREAD``: a compactor or migration
    of that zspage waits for the copy's end where the design blocks on the zspage lock)."""
    return [(SP_POOL, mode, H_MAPLOOKUP, U_OWN), (SP_NONE, 0, hold, U_ZREAD)]


def zspage_trylock(table: dict[int, list[Step]]) -> dict[int, list[Step]]:
    """``table`` for a kernel whose zspage-lock writers only *try* the lock (≥6.15, "zsmalloc:
    make zspage lock preemptible"): nobody waits for a zspage's readers, so every
    ``U_ZWRITE`` becomes ``U_OWN`` and every ``U_ZREAD`` ``U_OWN``."""
    plain = {U_ZWRITE: U_OWN, U_ZREAD: U_OWN}
    return {op: [(sp, m, h, plain.get(u, u)) for sp, m, h, u in seq] for op, seq in table.items()}


@dataclass(frozen=True)
class LockDesign:
    """One lock design compiled to integer tables (see the module docstring)."""

    name: str  #: canonical spec, e.g. ``"pools:32"``; the ``lock_design`` column
    family: str  #: registry name, e.g. ``"pools"``
    description: str
    steps: np.ndarray  #: int64 (N_OPS, MAX_STEPS, N_STEP_FIELDS)
    nsteps: np.ndarray  #: int64 (N_OPS,)
    n_pools: int = 1
    n_sub: int = 0  #: sub-locks per pool (classes or stripes); 0 = pool lock only
    sub_of_class: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pool_lock_type: str = "spinlock"  #: "spinlock" or "rwlock"
    sub_label: str = "class"  #: lock name prefix of sub-locks: class[37], stripe[2]
    params: dict[str, int] = field(default_factory=dict)
    #: ``pool_of(handles, seed) -> pool index per handle`` (int64); needed when n_pools > 1
    pool_of: Callable[[np.ndarray, int], np.ndarray] | None = None
    #: ``front(n_cpus, n_classes) -> front state`` (see ``_front``); None: no front
    front: Callable[[int, int], tuple[Any, ...]] | None = None
    #: what makes this design's front state differ from another's (e.g. its capacity)
    front_key: tuple[Any, ...] = ()

    @property
    def n_locks(self) -> int:
        return self.n_pools * (1 + self.n_sub)

    @property
    def allocator_key(self) -> tuple[Any, ...]:
        """Designs with equal keys see the same allocator state, so the engine runs one
        model for all of them (memory only depends on pools and fronts, not on locks)."""
        return (self.n_pools, self.front_key)

    def lock_name(self, lock_id: int) -> str:
        """Human name of a lock id, as in ``locks_by_lock.lock``; ``n_locks`` is every
        zspage lock together (``zspage``: only its writers are counted, see U_ZWRITE)."""
        if lock_id == self.n_locks:
            return "zspage"
        per = 1 + self.n_sub
        p, k = divmod(lock_id, per)
        suffix = f"#{p}" if self.n_pools > 1 else ""
        if k == 0:
            return f"pool{suffix}"
        return f"{self.sub_label}[{k - 1}]{suffix}"


def compile_steps(table: dict[int, list[Step]]) -> tuple[np.ndarray, np.ndarray]:
    """Turn ``{op kind: [(space, mode, hold, until), ...]}`` into the core's arrays.

    Kinds missing from ``table`` take no lock and cost nothing.
    """
    steps = np.zeros((N_OPS, MAX_STEPS, N_STEP_FIELDS), dtype=np.int64)
    nsteps = np.zeros(N_OPS, dtype=np.int64)
    for op, seq in table.items():
        if len(seq) > MAX_STEPS:
            raise ValueError(f"op {OP_NAMES[op]}: at most {MAX_STEPS} steps")
        for k, st in enumerate(seq):
            steps[op, k] = st
        nsteps[op] = len(seq)
    return steps, nsteps


# ---------------------------------------------------------------------------- registry

Factory = Callable[[int | None, int], LockDesign]
#: family name -> factory; filled by :func:`register` when the design modules are imported
_REGISTRY: dict[str, Factory] = {}
_ALIASES: dict[str, str] = {}
#: family name -> rank: the listing order (:func:`available`, "all designs" runs)
_RANK: dict[str, int] = {}


def register(name: str, *aliases: str, rank: int) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(param, n_classes) -> LockDesign`` under a name.

    ``rank`` places the design in :func:`available` (ascending); a name, alias or rank
    registered twice raises ValueError (at import: the package imports every design)."""

    def deco(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"lock design `{name}` registered twice")
        for a in (name, *aliases):
            if a in _ALIASES:
                raise ValueError(f"lock design alias `{a}` already names `{_ALIASES[a]}`")
        check_rank("lock", name, rank, _RANK)
        _REGISTRY[name] = factory
        _RANK[name] = rank
        for a in (name, *aliases):
            _ALIASES[a] = name
        return factory

    return deco


def _discover() -> None:
    """Import every public module of this package: each is a design that registers itself.
    A public module that registers nothing is an error (helpers are ``_private`` here)."""
    for mod in import_public_modules(__name__, __path__):
        if not any(f.__module__ == mod.__name__ for f in _REGISTRY.values()):
            raise ValueError(
                f"{mod.__name__} registers no lock design (use @register, or name a helper "
                "module with a leading underscore)"
            )


def available() -> dict[str, list[str]]:
    """Registered design names with their aliases, in rank order."""
    out: dict[str, list[str]] = {n: [] for n in sorted(_REGISTRY, key=_RANK.__getitem__)}
    for a, n in _ALIASES.items():
        if a != n:
            out[n].append(a)
    return out


def listing(n_classes: int = 255) -> list[tuple[str, list[str], str]]:
    """``(spec with default parameter, aliases, description)`` of every design, in rank
    order: what ``ztrace replay --help`` prints."""
    out = []
    for family, aliases in available().items():
        d = _REGISTRY[family](None, n_classes)
        out.append((d.name, aliases, d.description))
    return out


def get_design(spec: str, n_classes: int = 255) -> LockDesign:
    """Resolve ``"name"`` or ``"name:N"`` (aliases allowed) to a compiled design.

    Raises ConfigError naming the valid designs for an unknown name, or a bad parameter;
    every message starts ``--locks SPEC:``, the option all callers take designs from.
    """
    spec = spec.strip()
    name, sep, arg = spec.partition(":")
    family = _ALIASES.get(name.lower())
    if family is None:
        valid = ", ".join(
            f"{n} ({', '.join(a)})" if a else n for n, a in sorted(available().items())
        )
        raise ConfigError(f"--locks {spec}: unknown lock design (valid: {valid})")
    param: int | None = None
    if sep:
        # plain ASCII digits only: int() would also take `٣`, `1_0` or `+8`; and `pool:`
        # (nothing after the colon) is a typo, not the default
        if not arg:
            raise ConfigError(f"--locks '{spec}': nothing after the colon (give `{name}`)")
        if not (arg.isascii() and arg.isdigit()):
            raise ConfigError(
                f"--locks {spec}: parameter must be a whole number (e.g. `{family}:8`)"
            )
        param = int(arg)
    return _REGISTRY[family](param, n_classes)


def parse_designs(
    specs: str | list[str] | tuple[str, ...], n_classes: int = 255
) -> list[LockDesign]:
    """Split ``"class,pool,pools:32"`` (or a list) into designs; duplicates are an error."""
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    items = [s.strip() for s in items if s.strip()]
    if not items:
        raise ConfigError("--locks: needs at least one design (e.g. `--locks class,pool`)")
    designs = [get_design(s, n_classes) for s in items]
    names = [d.name for d in designs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ConfigError(f"--locks {dups[0]}: given twice")
    return designs


def design(table: dict[int, list[Step]], name: str, description: str, **layout: Any) -> LockDesign:
    """The :class:`LockDesign` of a step table: ``table`` compiled, the family read off
    ``name`` (``"pools:32"`` -> ``"pools"``); ``layout``: the other :class:`LockDesign` fields."""
    steps, nsteps = compile_steps(table)
    family = name.partition(":")[0]
    return LockDesign(
        name=name, family=family, description=description, steps=steps, nsteps=nsteps, **layout
    )


def no_param(family: str, param: int | None, hint: str = "") -> None:
    """Refuse a parameter for a design that takes none (``class:4``)."""
    if param is not None:
        raise ConfigError(f"--locks {family}:{param}: `{family}` takes no parameter{hint}")


def positive_param(family: str, param: int | None, default: int, lo: int, hi: int) -> int:
    """Validate a design's integer parameter (``pools:N`` etc.)."""
    value = default if param is None else param
    if not lo <= value <= hi:
        raise ConfigError(f"--locks {family}:{value}: parameter must be {lo}..{hi}")
    return value


_discover()  # register every design now: a duplicate name, alias or rank fails at import time
