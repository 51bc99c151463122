"""``ztrace replay``: replay a trace under lock designs (and LRU designs) in one pass."""

from __future__ import annotations

import json
import math
from typing import Any

import click

from ztrace.cli._designs import DesignsHelp
from ztrace.cli._options import force_option, output_dir_option, unique_designs
from ztrace.errors import ConfigError
from ztrace.format.safeio import check_dir_target
from ztrace.format.trace import MAX_TS_NS
from ztrace.progress import quiet_option

#: Default ``--replicas``: see docs/replay-model.md "Intervals" for the measured cost.
DEFAULT_REPLICAS = 0


def _parse_bin_ms(bin_ms: float | None) -> int | None:
    if bin_ms is None:
        return None
    if not math.isfinite(bin_ms) or bin_ms <= 0:
        raise ConfigError(f"--bin-ms {bin_ms}: must be a positive number")
    if bin_ms * 1e6 > MAX_TS_NS:
        # the replay clock is int64 ns; no trace spans more than 2^62 ns (format limits)
        raise ConfigError(f"--bin-ms {bin_ms}: must be at most {MAX_TS_NS / 1e6:.3g} (2^62 ns)")
    return max(1, round(bin_ms * 1e6))


@click.command(
    "replay",
    epilog="""\b
Examples:
  ztrace replay /tmp/t --locks class,pool -o /tmp/r
  ztrace replay /tmp/t --locks class,pools:32,striped:8,magazine:16 --json
  ztrace replay /tmp/t --locks class,pool --speedup 8 --cpus 16 --seed 3
  ztrace replay /tmp/swap --lru entry-lru,swap-lru --pool-limit 20% -o /tmp/r
""",
    cls=DesignsHelp,
)
@click.argument("trace", type=click.Path(path_type=str))
@click.option("--locks", "locks", default=None, help="Lock designs, comma-separated.")
@output_dir_option("Write the results directory here (docs/results-format.md).", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print per-design results as JSON.")
@click.option("--seed", type=int, default=0)
@click.option(
    "--speedup",
    type=float,
    default=1.0,
    help="Divide inter-arrival times by K (what-if: more load).",
)
@click.option(
    "--cpus",
    type=int,
    default=None,
    help="Spread events over N CPUs (hash of seed and event index).",
)
@click.option("--bin-ms", type=float, default=None, help="Timeline bin width in ms.")
@click.option("--lru", "lru", default=None, help="LRU designs (needs zswap events).")
@click.option("--pool-limit", default=None, help="LRU pool limit: pages, 64M or 20%.")
@click.option(
    "--sizes-from",
    default=None,
    type=click.Path(path_type=str),
    help="For a trace without zs_malloc sizes: draw them from this capture's (labelled).",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=0, max=64),
    default=DEFAULT_REPLICAS,
    help="Perturbed replays besides the plain one (arrival jitter + hold-time redraws): each "
    "design's total wait, wait per op, p99 wait and contended get a [min, max] interval over "
    "all of them (locks_interval.parquet). 0: no intervals. Costs N more replays.",
)
@click.option(
    "--stalls/--no-stalls",
    default=True,
    help="Stall lock holds at the rate the trace shows (vCPU stops inside holds, "
    "docs/replay-model.md; needs the kernel's calibration); --no-stalls: never.",
)
@click.option(
    "--closed-loop/--open-loop",
    default=True,
    help="A CPU whose op ends later than traced runs its next ops that much later "
    "(measured traces on their own CPUs); --open-loop: every op when traced.",
)
@force_option
@quiet_option
def command(
    trace: str,
    locks: str | None,
    out: str | None,
    as_json: bool,
    seed: int,
    speedup: float,
    cpus: int | None,
    bin_ms: float | None,
    lru: str | None,
    pool_limit: str | None,
    sizes_from: str | None,
    replicas: int,
    stalls: bool,
    closed_loop: bool,
    force: bool,
    quiet: bool,
) -> None:
    """Replay TRACE under lock designs (perf lock contention vocabulary) in one pass."""
    if not locks and not lru:
        raise ConfigError("--locks/--lru: nothing to replay; give --locks D1,D2 and/or --lru D1,D2")
    if lru and pool_limit is None:
        raise ConfigError("--pool-limit: needed with --lru (pages, bytes e.g. 64M, or 20%)")
    if pool_limit is not None and not lru:
        raise ConfigError("--pool-limit: only applies with --lru")
    bin_ns = _parse_bin_ms(bin_ms)
    if out:
        # refuse before replaying: onto/inside the trace, or an existing directory without --force
        check_dir_target(out, force=force, inputs=(trace,))
    if lru:
        from ztrace.replay.lru import design_list

        unique_designs("--lru", design_list(lru))
    from ztrace.format import results_from_tables
    from ztrace.look.tables import render_json, render_replay
    from ztrace.replay.compile_notice import announce_compiles
    from ztrace.replay.engine import replay, write_results

    announce_compiles()  # a cold numba cache says so on stderr (issue 15)

    result = None
    intervals = None
    interval_tables: dict[str, Any] = {}
    kw: dict[str, Any] = dict(
        locks=locks,
        seed=seed,
        cpus=cpus,
        speedup=speedup,
        bin_ns=bin_ns,
        progress=not quiet,
        sizes_from=sizes_from,
        stalls=stalls,
        closed_loop=closed_loop,
    )
    if locks and replicas:
        from ztrace.replay.interval import interval_table, replay_interval

        # replica 0 is exactly the plain replay (same seed, no jitter, measured holds), so
        # its tables are the ones written; the others only widen the intervals
        ivl = replay_interval(trace, runs=1 + replicas, **kw)
        result = ivl.first
        intervals = ivl.to_json()
        interval_tables = {"locks_interval": interval_table(ivl)}
    elif locks:
        result = replay(trace, **kw)
    if result is not None:
        from ztrace.replay.sizes import bad_alloc_note

        note = bad_alloc_note(trace, result.counters)  # rows left out say so, even with --json
        if note:
            click.echo(note, err=True)
    lru_tables: dict[str, Any] = {}
    if lru:
        from ztrace.replay.lru import run_lru

        assert pool_limit is not None  # checked above: --lru needs --pool-limit
        lru_tables = run_lru(trace, lru, pool_limit=pool_limit, params=None, seed=seed)
    lru_rows = lru_tables["lru_summary"].to_pylist() if lru_tables else None
    if out:
        if result is not None:
            write_results(
                result,
                out,
                extra_tables={**interval_tables, **lru_tables},
                force=force,
                inputs=(trace,),
                extra_summary={"intervals": intervals} if intervals else None,
            )
        else:
            from ztrace.format import write_results_dir

            write_results_dir(
                out,
                lru_tables,
                {
                    "ztrace.results_version": "1",
                    "ztrace.trace": trace,
                    "ztrace.seed": str(seed),
                    "ztrace.lru": lru or "",
                    "ztrace.pool_limit": str(pool_limit),
                },
                {"lru": lru_rows},
                force=force,
                inputs=(trace,),
            )
    doc: dict[str, Any] = {}
    if result is not None:
        doc["locks"] = result.summary
        doc["counters"] = result.counters
        doc["cost_model"] = json.loads(result.cost_model.to_json())
        if intervals:
            doc["intervals"] = intervals
    if lru_rows is not None:
        doc["lru"] = lru_rows
    if as_json:
        click.echo(render_json(doc))
    elif not quiet or out is None:
        if result is not None:
            tables = {**result.tables, **interval_tables, **lru_tables}
            render_replay(results_from_tables(tables, meta=dict(result.meta), summary=doc))
        elif lru_rows:
            click.echo(json.dumps(lru_rows, indent=1), err=True)
