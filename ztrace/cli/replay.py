"""``ztrace replay``: replay a trace under lock designs (and LRU designs) in one pass."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click

from ztrace.errors import ConfigError
from ztrace.progress import quiet_option


def fmt_ns(ns: float) -> str:
    """perf's lock_stat_key_print_time(): scale ns to ns/us/ms/s for humans."""
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= div:
            return f"{ns / div:.2f} {unit}"
    return f"{ns:.0f} ns"


def _print_human(result: Any, lru_rows: list[dict[str, Any]] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    # off a terminal rich would wrap at 80 columns; these tables need ~110
    con = Console(file=sys.stderr, width=None if sys.stderr.isatty() else 120)
    t = Table(title="lock contention by design (replayed)", title_justify="left")
    for col in (
        "design",
        "acquired",
        "contended",
        "rate",
        "total wait",
        "max wait",
        "avg wait",
        "p99 wait",
        "peak pages",
    ):
        t.add_column(col, justify="left" if col == "design" else "right")
    for r in result.summary:
        t.add_row(
            r["lock_design"],
            str(r["acquisitions"]),
            str(r["contended"]),
            f"{100 * r['contention_rate']:.2f}%",
            fmt_ns(r["wait_ns_total"]),
            fmt_ns(r["wait_ns_max"]),
            fmt_ns(r["wait_ns_avg"]),
            fmt_ns(r["wait_ns_p99"]),
            str(r["pages_used_peak"]),
        )
    con.print(t)
    bl = result.tables["locks_by_lock"].to_pylist()
    for r in result.summary:
        rows = sorted(
            (x for x in bl if x["lock_design"] == r["lock_design"] and x["contended"]),
            key=lambda x: (-x["wait_ns_total"], x["lock"], x["lock_type"]),
        )[:5]
        if not rows:
            continue
        lt = Table(title=f"{r['lock_design']}: top locks", title_justify="left")
        for col in ("contended", "total wait", "max wait", "avg wait", "type", "lock"):
            lt.add_column(col, justify="left" if col in ("type", "lock") else "right")
        for x in rows:
            lt.add_row(
                str(x["contended"]),
                fmt_ns(x["wait_ns_total"]),
                fmt_ns(x["wait_ns_max"]),
                fmt_ns(x["wait_ns_total"] / x["contended"]),
                x["lock_type"],
                x["lock"],
            )
        con.print(lt)
    if lru_rows:
        lt = Table(title="LRU designs", title_justify="left")
        keys = [
            "lru_design",
            "pool_limit_pages",
            "stores",
            "writebacks",
            "inversions",
            "zswap_hits",
            "disk_swapins",
        ]
        for k in keys:
            lt.add_column(k)
        for row in lru_rows:
            lt.add_row(*(str(row.get(k, "")) for k in keys))
        con.print(lt)
    c = result.counters
    bad = c["bad_alloc"] + c["dup_malloc"] + c["unmatched_free"] + c["unknown_class"]
    total = c["mallocs"] + c["frees"] + c["compacts"] + c["migrates"]
    con.print("\n=== output for debug ===\n")
    con.print(f"bad: {bad}, total: {total}")
    for k in ("bad_alloc", "dup_malloc", "unmatched_free", "unknown_class"):
        con.print(f" {k:>16}: {c[k]}")
    con.print(f"cost model: {result.cost_model.source}")


def _parse_bin_ms(bin_ms: float | None) -> int | None:
    if bin_ms is None:
        return None
    if not math.isfinite(bin_ms) or bin_ms <= 0:
        raise ConfigError(f"--bin-ms must be a positive number, got {bin_ms}")
    return max(1, round(bin_ms * 1e6))


@click.command(
    "replay",
    epilog="""\b
Examples:
  ztrace replay /tmp/t --locks class,pool -o /tmp/r
  ztrace replay /tmp/t --locks class,pools:32,striped:8,magazine:16 --json
  ztrace replay /tmp/t --locks class,pool --speedup 8 --cpus 16 --seed 3
  ztrace replay /tmp/swap --lru entry-lru,swap-lru --pool-limit 20% -o /tmp/r
\b
Designs: class (5.17-6.1, >=6.11), pool (6.2-6.10), pools:N (zswap 6.6-6.10: 32),
striped:N, magazine:C (per-CPU magazines; not in any kernel).
""",
)
@click.argument("trace", type=click.Path(path_type=str))
@click.option("--locks", "locks", default=None, help="Lock designs, comma-separated.")
@click.option(
    "-o",
    "--output",
    "out",
    default=None,
    type=click.Path(file_okay=False),
    help="Write the results directory here (docs/results-format.md).",
)
@click.option("--json", "as_json", is_flag=True, help="Print per-design results as JSON.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--speedup",
    type=float,
    default=1.0,
    show_default=True,
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
    quiet: bool,
) -> None:
    """Replay TRACE under lock designs (perf lock contention vocabulary) in one pass."""
    if not locks and not lru:
        raise ConfigError("nothing to replay: give --locks D1,D2 and/or --lru D1,D2")
    if lru and pool_limit is None:
        raise ConfigError("--lru needs --pool-limit (pages, e.g. 64M, or 20%)")
    if pool_limit is not None and not lru:
        raise ConfigError("--pool-limit only applies with --lru")
    bin_ns = _parse_bin_ms(bin_ms)
    run_lru = None
    if lru:
        try:
            from ztrace.replay.lru import run_lru  # lazy: the LRU package is optional
        except ImportError as exc:
            raise ConfigError(
                f"--lru: the LRU replay (ztrace.replay.lru) is not available ({exc})"
            ) from None
    from ztrace.replay.engine import replay, write_results

    result = None
    if locks:
        result = replay(
            trace,
            locks=locks,
            seed=seed,
            cpus=cpus,
            speedup=speedup,
            bin_ns=bin_ns,
            progress=not quiet,
            sizes_from=sizes_from,
        )
    lru_tables: dict[str, Any] = {}
    if run_lru is not None:
        lru_tables = run_lru(trace, lru, pool_limit=pool_limit, params=None, seed=seed)
    lru_rows = lru_tables["lru_summary"].to_pylist() if lru_tables else None
    if out:
        if result is not None:
            write_results(result, out, extra_tables=lru_tables)
        else:
            from ztrace.results import write_results_dir

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
            )
    if as_json:
        doc: dict[str, Any] = {}
        if result is not None:
            doc["locks"] = result.summary
            doc["counters"] = result.counters
            doc["cost_model"] = json.loads(result.cost_model.to_json())
        if lru_rows is not None:
            doc["lru"] = lru_rows
        click.echo(json.dumps(doc, sort_keys=True))
    elif not quiet or out is None:
        if result is not None:
            _print_human(result, lru_rows)
        elif lru_rows:
            click.echo(json.dumps(lru_rows, indent=1), err=True)
