"""``ztrace sweep``: LRU designs × pool limits on one swap trace → ``sweep.parquet``."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from ztrace.cli._options import force_option, output_dir_option, unique_designs
from ztrace.errors import ConfigError
from ztrace.format.safeio import check_dir_target
from ztrace.progress import quiet_option, track

_RANGE = re.compile(r"^([^:]+):([^:]+):([^:]+)$")


def expand_limits(spec: str) -> list[str]:
    """``"A,B,C"`` or ``"A:B:step"`` (inclusive; same unit on all three) → limit strings.

    >>> expand_limits("1024:4096:1024")
    ['1024', '2048', '3072', '4096']
    >>> expand_limits("5%:15%:5%")
    ['5%', '10%', '15%']
    """
    spec = spec.strip()
    if m := _RANGE.match(spec):
        parts = [p.strip() for p in m.groups()]
        unit_re = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-zA-Z%]*)$", re.ASCII)
        ms = [unit_re.match(p) for p in parts]
        if not all(ms):
            raise ConfigError(f"--pool-limits {spec}: cannot parse the range (want A:B:step)")
        units = {x.group(2) for x in ms if x}
        if len(units) != 1:
            raise ConfigError(f"--pool-limits {spec}: the range mixes units ({', '.join(units)})")
        unit = units.pop()
        lo, hi, step = (float(x.group(1)) for x in ms if x)
        if step <= 0 or hi < lo:
            raise ConfigError(f"--pool-limits {spec}: the range needs step > 0 and A <= B")
        n = int((hi - lo) / step + 1e-9) + 1
        if n > 10_000:
            raise ConfigError(f"--pool-limits {spec}: the range has {n} points (max 10000)")
        vals = [lo + i * step for i in range(n)]
        return [f"{int(v) if v == int(v) else v}{unit}" for v in vals]
    out = [p.strip() for p in spec.split(",") if p.strip()]
    if not out:
        raise ConfigError("--pool-limits: no limits given (want A,B,C or A:B:step)")
    return out


def _design_params(values: tuple[str, ...]) -> dict[str, str]:
    """``--param k=v,k=v`` (every design) / ``--param DESIGN:k=v,...`` → params mapping."""
    out: dict[str, str] = {}
    for v in values:
        head, sep, rest = v.partition(":")
        key, spec = (head.strip(), rest) if sep and "=" not in head else ("all", v)
        out[key] = f"{out[key]},{spec}" if key in out else spec
    return out


@click.command(
    epilog="\b\nExamples:\n"
    "  ztrace synth --profile phase-change -o /tmp/pc\n"
    "  ztrace sweep /tmp/pc --lru none,entry-lru,swap-lru --pool-limits 512:4096:512 -o /tmp/sw\n"
    "  ztrace sweep T --lru 6.12 --pool-limits 5%,10%,20% --param ram=2G -o /tmp/sw --json\n"
    "  ztrace sweep T --lru entry-lru --pool-limits 2048 --param entry-lru:shrink=sync -o D"
)
@click.argument("trace", type=click.Path())
@click.option("--lru", "designs", required=True, help="Designs, comma-separated (names, aliases).")
@click.option(
    "--pool-limits",
    required=True,
    help="A,B,C or A:B:step; pages (4096), bytes (64M) or percent of RAM (20%).",
)
@output_dir_option()
@force_option
@click.option(
    "--param",
    "params",
    multiple=True,
    help="k=v,... for every design that has the key, or DESIGN:k=v,... (repeatable); "
    "ram=SIZE sets RAM for percent limits.",
)
@click.option("--seed", type=int, default=0, help="Recorded in metadata.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep rows as JSON on stdout.")
@quiet_option
def command(
    trace: str,
    designs: str,
    pool_limits: str,
    out: str,
    params: tuple[str, ...],
    seed: int,
    as_json: bool,
    force: bool,
    quiet: bool,
) -> None:
    """Replay TRACE under each LRU design at each pool limit; write sweep.parquet.

    One row per design × pool limit with the lru_summary columns (docs/results-format.md):
    disk faults, avoidable disk faults, the gap to the offline optimum, expected fault
    latency, then inversions (a page sent to disk while zswap holds an older one), stores,
    rejects, writebacks, hits.
    """
    from ztrace.format import write_results_dir
    from ztrace.replay.compile_notice import announce_compiles
    from ztrace.replay.lru import (
        design_class,
        design_list,
        load_workload,
        params_for,
        parse_pool_limit,
        resolve_ram,
        run_design,
    )
    from ztrace.replay.lru._base import parse_params, split_kv
    from ztrace.replay.lru.metrics import summary_table

    announce_compiles()  # a cold numba cache says so on stderr (issue 15)

    check_dir_target(out, force=force, inputs=(trace,))  # before sweeping: refuse early
    names = unique_designs("--lru", design_list(designs))
    limits = unique_designs("--pool-limits", expand_limits(pool_limits))
    pmap = _design_params(params)
    ram_spec: Any = None
    if "all" in pmap:
        kept = []
        for k, v in split_kv(pmap["all"]):  # a key given twice (ram too) is an error
            if k == "ram":
                ram_spec = v
            else:
                kept.append(f"{k}={v}")
        pmap["all"] = ",".join(kept)
    per_design = {n: params_for(n, pmap) for n in names}
    for n in names:  # every value checked before the trace is read and any replay runs
        parse_params(n, per_design[n], design_class(n).param_table())
    w = load_workload(trace)
    ram = resolve_ram(w, ram_spec)
    pages = [
        parse_pool_limit(
            x,
            ram_pages=ram,
            page_size=w.page_size,
            option="--pool-limits",
            ram_hint="--param ram=SIZE (e.g. ram=2G)",
        )
        for x in limits
    ]
    if len(set(pages)) != len(pages):  # 64M and 16384 can be the same limit
        dup = next(p for p in pages if pages.count(p) > 1)
        raise ConfigError(f"--pool-limits: {dup} pages is given twice")
    rows = []
    counters = []
    runs = [(n, lim) for n in names for lim in pages]
    for n, lim in track(runs, desc="sweep", quiet=quiet):
        r = run_design(w, n, lim, per_design[n])
        rows.append(r.summary)
        counters.append({"lru_design": n, "pool_limit_pages": lim, **r.counters})
    table = summary_table(rows)
    summary = {"trace": str(trace), "seed": seed, "sweep": rows, "counters": counters}
    write_results_dir(
        out,
        {"sweep": table},
        {
            "ztrace.results_version": "1",
            "ztrace.trace": str(trace),
            "ztrace.seed": str(seed),
            "ztrace.lru": ",".join(names),
            "ztrace.pool_limits": ",".join(str(p) for p in pages),
            "ztrace.params": json.dumps(per_design, sort_keys=True),
        },
        summary,
        force=force,
        inputs=(trace,),
    )
    if as_json:
        click.echo(json.dumps(summary))
        return
    from ztrace.look.tables import render_sweep

    render_sweep(rows, trace)
    click.echo(f"wrote {out}/sweep.parquet", err=True)
