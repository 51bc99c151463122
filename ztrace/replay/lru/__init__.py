"""LRU and writeback designs for zswap, replayed on a swap trace (docs/lru-inversion.md).

Every design is one module in this package behind one interface, the hooks of
:class:`~ztrace.replay.lru._base.ZswapDesign` (the only interface the replay loop calls).
Its last line registers it, ``register(Cls, *aliases, rank=N)``: its row in :data:`REGISTRY`
(libCacheSim's ``cache_init.h`` habit, the row kept in the design's own file; the summary is
the class docstring's first paragraph). Importing this package imports every public module
in it, so a new design is one file dropped here (docs/architecture.md, "Adding a design");
the modules that register nothing are helpers (workload, metrics, memcg, worker_timing,
kernel_check). ``rank`` fixes the order of :func:`design_names` and of every "all designs"
listing. A name, alias or rank used twice is an error when this package is imported.
``ztrace replay --help`` lists the designs with their summaries; each design parses its own
``k=v`` parameters (``describe(name)`` lists them).

>>> canonical_name("6.12")
'entry-lru-2nd-chance'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ztrace.errors import ConfigError
from ztrace.format import Trace
from ztrace.replay.lru._base import (
    PAGE_SIZE,
    ZswapDesign,
    parse_params,
    parse_pool_limit,
    parse_size_pages,
    split_kv,
)
from ztrace.replay.lru.metrics import (
    MEMCG_SCHEMA,
    Latency,
    Recorder,
    summary_table,
    timeline_table,
)
from ztrace.replay.lru.workload import Workload, load_workload
from ztrace.replay.plugins import check_rank, import_public_modules


@dataclass(frozen=True)
class Registered:
    """One design's registry row, declared in the design's own file with :func:`register`."""

    name: str
    aliases: tuple[str, ...]
    summary: str  #: the design class's docstring, first paragraph
    rank: int  #: listing order (ascending): :func:`design_names`, "all designs" runs
    cls: type[ZswapDesign]


#: rows as the design modules register them (import order); :data:`REGISTRY` is by rank
_ROWS: list[Registered] = []


def register(cls: type[ZswapDesign], *aliases: str, rank: int) -> type[ZswapDesign]:
    """Register the design class ``cls`` under ``cls.NAME`` and ``aliases`` (a design module's
    last line); its summary is the class docstring's first paragraph. A name, alias or rank
    used twice raises ValueError at import."""
    summary = " ".join((cls.__doc__ or cls.NAME).strip().split("\n\n")[0].split())
    row = Registered(cls.NAME, aliases, summary, rank, cls)
    _index((*_ROWS, row))
    check_rank("LRU", row.name, rank, {r.name: r.rank for r in _ROWS})
    _ROWS.append(row)
    return cls


def _index(registry: Sequence[Registered]) -> dict[str, Registered]:
    """Name/alias (lower case) → row; a name or alias used twice raises ValueError."""
    out: dict[str, Registered] = {}
    for r in registry:
        for n in (r.name, *r.aliases):
            key = n.strip().lower()
            if key in out:
                raise ValueError(
                    f"LRU design registry: `{n}` of `{r.name}` is already taken by "
                    f"`{out[key].name}`"
                )
            out[key] = r
    return out


def _discover() -> tuple[Registered, ...]:
    """Import every public module of this package; the designs among them register
    themselves, the others are helpers (workload, metrics, ...). A module that defines a
    design class but registers none is an error. Returns the rows in rank order."""
    for mod in import_public_modules(__name__, __path__):
        own = [
            v
            for v in vars(mod).values()
            if isinstance(v, type) and issubclass(v, ZswapDesign) and v.__module__ == mod.__name__
        ]
        if own and not any(r.cls in own for r in _ROWS):
            raise ValueError(f"{mod.__name__} defines an LRU design but does not register it")
    return tuple(sorted(_ROWS, key=lambda r: r.rank))


def design_names() -> list[str]:
    """Canonical design names, in registry order."""
    return [r.name for r in REGISTRY]


def canonical_name(name: str, option: str = "--lru") -> str:
    """The canonical name of a design or alias; ConfigError listing valid names otherwise,
    starting with ``option``, where the name came from."""
    r = _BY_NAME.get(name.strip().lower())
    if r is None:
        valid = ", ".join(
            f"{x.name} ({', '.join(x.aliases)})" if x.aliases else x.name for x in REGISTRY
        )
        raise ConfigError(f"{option} {name.strip()}: unknown LRU design (valid: {valid})")
    return r.name


def design_class(name: str) -> type[ZswapDesign]:
    """The class implementing design ``name``."""
    return _BY_NAME[canonical_name(name).lower()].cls


def describe(name: str) -> dict[str, Any]:
    """Parameters of a design with defaults and help (for ``--help`` and docs)."""
    cls = design_class(name)
    table = cls.param_table()
    return {
        "name": cls.NAME,
        "era": cls.ERA,
        "params": {
            k: {"default": cls.DEFAULTS.get(k, p.default), "help": p.help} for k, p in table.items()
        },
    }


def split_design_spec(spec: str) -> tuple[str, str]:
    """``"entry-lru:shrink=sync,accept_threshold=100"`` → (name, params)."""
    name, _, params = spec.partition(":")
    return name.strip(), params.strip()


def design_list(designs: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or a sequence of names/aliases → canonical names (ConfigError if unknown)."""
    if isinstance(designs, str):
        designs = [d for d in designs.split(",") if d.strip()]
    out = [canonical_name(d) for d in designs]
    if not out:
        raise ConfigError("--lru: no design given (valid: " + ", ".join(design_names()) + ")")
    return out


def params_for(name: str, params: str | Mapping[str, Any] | None) -> dict[str, str] | None:
    """Pick a design's parameters from ``params``.

    ``params`` is one ``k=v,...`` string for every design, or a mapping from design name (or
    alias, or ``"all"``) to a ``k=v,...`` string or a dict. Parameters for every design apply
    only where the design has that key (``max_failures`` reaches only the second-chance
    design); a key no design knows is an error. A design's own entry overrides ``all`` and
    must use only its own keys.
    """
    if params is None:
        return None
    if isinstance(params, str):
        params = {"all": params}
    own = design_class(name).param_table()
    every = _any_table()
    merged: dict[str, str] = {}
    own_keys: set[str] = set()  # keys the design's own entries set (under any alias)
    for key in sorted(params, key=lambda k: k != "all"):
        val = params[key]
        if key == "ram":
            continue
        if key != "all" and canonical_name(key, "--param") != name:
            continue
        items = (
            _raw_items(val) if isinstance(val, str) else [(str(k), str(v)) for k, v in val.items()]
        )
        for k, v in items:
            if key == "all":
                if k == "ram":
                    continue
                if k not in every:
                    raise ConfigError(
                        f"--param {k}: no LRU design has this parameter "
                        f"(valid: {', '.join(sorted(every))})"
                    )
                if k not in own:
                    continue
            elif k in own_keys:  # `entry-lru:shrink=sync` and `lru:shrink=async`
                raise ConfigError(f"--param {name}:{k}: given twice")
            else:
                own_keys.add(k)
            merged[k] = v
    return merged


def _raw_items(spec: str) -> list[tuple[str, str]]:
    return split_kv(spec)


def _any_table() -> dict[str, Any]:
    """Union of every design's parameter table (to validate keys before routing)."""
    table: dict[str, Any] = {}
    for r in REGISTRY:
        table.update(design_class(r.name).param_table())
    return table


def make_design(
    name: str,
    pool_limit_pages: int,
    recorder: Recorder,
    params: str | Mapping[str, str] | None = None,
    *,
    chain_size: int = 8,
    page_size: int = PAGE_SIZE,
) -> ZswapDesign:
    """Instantiate design ``name`` with its parsed parameters."""
    cls = design_class(name)
    parsed = parse_params(cls.NAME, params, cls.param_table())
    return cls(pool_limit_pages, parsed, recorder, chain_size=chain_size, page_size=page_size)


@dataclass
class LruRun:
    """Result of one design on one workload (tables plus kernel-named counters)."""

    design: str
    pool_limit_pages: int
    summary: dict[str, object]
    timeline: dict[str, list[object]]
    counters: dict[str, int]
    #: per memory cgroup (str(memcg id) → counters, :func:`memcg_rows`), only for a
    #: workload with several memcgs
    memcg: dict[str, dict[str, Any]] = field(default_factory=dict)


def _workload(trace: str | os.PathLike[str] | Trace | Workload) -> Workload:
    return trace if isinstance(trace, Workload) else load_workload(trace)


def resolve_ram(w: Workload, ram: str | int | None) -> int | None:
    """RAM pages: an explicit ``ram`` (``2G``, ``524288p``, or int pages) or the trace's."""
    if ram is None:
        return w.ram_pages
    if isinstance(ram, int):
        if ram <= 0:
            raise ConfigError(f"--param ram={ram}p: must be positive")
        return ram
    return parse_size_pages(ram, w.page_size)


def optimal_disk_faults(w: Workload, pool_limit_pages: int) -> int:
    """Disk faults of the ``optimal`` design (defaults: ideal packing) at this limit: the
    floor of ``optimal_gap``, memoised on the workload so every design of a run or sweep
    compares with the same run."""
    key = int(pool_limit_pages)
    memo = w.memo.setdefault("optimal_disk_faults", {})
    if key not in memo:
        cls = design_class("optimal")
        parsed = parse_params(cls.NAME, None, cls.param_table())
        rec = Recorder(0, 0, None, Latency())
        chain = w.meta.zsmalloc_chain_size if w.meta is not None else 8
        d = cls(pool_limit_pages, parsed, rec, chain_size=chain, page_size=w.page_size)
        d.run(w)
        memo[key] = rec.disk_swapins
    return int(memo[key])


def run_design(
    w: Workload,
    name: str,
    pool_limit_pages: int,
    params: str | Mapping[str, str] | None = None,
    *,
    bin_ns: int | None = None,
) -> LruRun:
    """Replay ``w`` under one design; see :func:`run_lru` for the tables.

    ``optimal_gap`` compares with the ``optimal`` design at the same limit
    (``optimal_disk_faults``)."""
    t0 = int(w.ts[0]) if len(w) else 0
    t1 = int(w.ts[-1]) if len(w) else 0
    cls = design_class(name)
    parsed = parse_params(cls.NAME, params, cls.param_table())
    lat = Latency(zswap_ns=float(parsed["zswap_ns"]), disk_ns=float(parsed["disk_ns"]))
    rec = Recorder(t0, t1, bin_ns, lat)
    chain = w.meta.zsmalloc_chain_size if w.meta is not None else 8
    d = cls(pool_limit_pages, parsed, rec, chain_size=chain, page_size=w.page_size)
    d.run(w)
    opt = optimal_disk_faults(w, pool_limit_pages)
    per_memcg: dict[str, dict[str, Any]] = {}
    if len(d.memcg_counters) > 1:
        for mid, mc in d.memcg_counters.items():
            faults = mc["zswap_hits"] + mc["disk_faults"]
            per_memcg[str(mid)] = mc | {
                "expected_fault_latency_ns": (
                    (mc["zswap_hits"] * lat.zswap_ns + mc["disk_faults"] * lat.disk_ns) / faults
                    if faults
                    else 0.0
                )
            }
    return LruRun(
        design=cls.NAME,
        pool_limit_pages=pool_limit_pages,
        summary=rec.summary_row(cls.NAME, pool_limit_pages, opt),
        timeline=rec.timeline_rows(cls.NAME),
        counters=d.counters()
        | {"disk_writes": rec.disk_writes}
        | {
            f"inversions_{c}": rec.inversions_by_cause.get(c, 0)
            for c in ("reject_pool_limit", "reject_compress", "writeback")
        },
        memcg=per_memcg,
    )


def memcg_table(runs: Sequence[LruRun]) -> pa.Table | None:
    """``lru_memcg``: one row per design × memory cgroup (docs/results-format.md); None when
    the workload has one memcg (then no such table is written)."""
    rows = [
        {"lru_design": r.design, "pool_limit_pages": r.pool_limit_pages, "memcg_id": int(k), **v}
        for r in runs
        for k, v in r.memcg.items()
    ]
    if not rows:
        return None
    return pa.Table.from_pylist(rows, schema=MEMCG_SCHEMA)


def run_lru_detailed(
    trace: str | os.PathLike[str] | Trace | Workload,
    designs: str | Sequence[str],
    *,
    pool_limit: int | str,
    params: str | Mapping[str, Any] | None = None,
    ram: str | int | None = None,
    bin_ns: int | None = None,
) -> list[LruRun]:
    """Like :func:`run_lru`, returning one :class:`LruRun` per design (with counters)."""
    names = design_list(designs)
    if ram is None and isinstance(params, Mapping) and "ram" in params:
        ram = params["ram"]
    if ram is None and params is not None:  # ram=SIZE inside a k=v string for all designs
        spec = params if isinstance(params, str) else params.get("all")
        if isinstance(spec, str):
            for k, v in _raw_items(spec):
                if k == "ram":
                    ram = v
    w = _workload(trace)
    if bin_ns is not None and bin_ns <= 0:
        raise ConfigError(f"timeline bin {bin_ns} ns must be positive")
    limit = parse_pool_limit(pool_limit, ram_pages=resolve_ram(w, ram), page_size=w.page_size)
    return [run_design(w, n, limit, params_for(n, params), bin_ns=bin_ns) for n in names]


def run_lru(
    trace: str | os.PathLike[str] | Trace | Workload,
    designs: str | Sequence[str],
    *,
    pool_limit: int | str,
    params: str | Mapping[str, Any] | None = None,
    seed: int = 0,
    bin_ns: int | None = None,
    ram: str | int | None = None,
) -> dict[str, pa.Table]:
    """Replay a swap trace under each LRU design.

    Parameters
    ----------
    trace
        Trace path (v2, with swap events), a :class:`~ztrace.format.Trace`, or a
        :class:`~ztrace.replay.lru.workload.Workload`.
    designs
        ``"entry-lru,swap-lru"`` or a sequence of names/aliases.
    pool_limit
        Pages (``4096``), bytes (``"64M"``) or percent of RAM (``"20%"``, needs ``ram`` or
        RAM in the trace metadata).
    params
        ``k=v,...`` for every design, or ``{design: "k=v,...", "all": "...", "ram": "2G"}``.
    seed
        Recorded for the results metadata; every design is deterministic.
    bin_ns
        Timeline bin width (default: 100 bins over the trace).
    ram
        RAM size for percent limits: ``"2G"``, ``"524288p"`` or pages.

    Returns
    -------
    dict
        ``lru_summary`` (one row per design) and ``lru_timeline`` (design × bin), columns as
        in docs/results-format.md.

    Raises
    ------
    TraceFormatError
        The trace has no swap events.
    ConfigError
        Unknown design or parameter, impossible pool limit.
    """
    _ = seed
    runs = run_lru_detailed(
        trace, designs, pool_limit=pool_limit, params=params, ram=ram, bin_ns=bin_ns
    )
    out = {
        "lru_summary": summary_table([r.summary for r in runs]),
        "lru_timeline": timeline_table([r.timeline for r in runs]),
    }
    mt = memcg_table(runs)
    if mt is not None:  # several memcgs only: a one-memcg replay writes what it always did
        out["lru_memcg"] = mt
    return out


#: every design, in rank order: the single place designs are listed, filled from their files
REGISTRY: tuple[Registered, ...] = _discover()
_BY_NAME: dict[str, Registered] = _index(REGISTRY)

__all__ = [
    "REGISTRY",
    "LruRun",
    "Workload",
    "canonical_name",
    "describe",
    "design_class",
    "design_list",
    "design_names",
    "load_workload",
    "make_design",
    "memcg_table",
    "params_for",
    "parse_pool_limit",
    "register",
    "resolve_ram",
    "run_design",
    "run_lru",
    "run_lru_detailed",
    "split_design_spec",
]
