"""``ztrace synth``: write a seeded synthetic trace."""

from __future__ import annotations

import json

import click

from ztrace.format import write_trace
from ztrace.synth import PROFILES, synth, synth_meta


@click.command(
    epilog="\b\nExamples:\n  ztrace synth -o /tmp/t\n"
    "  ztrace synth --profile hot-class --cpus 8 --events 1000000 -o /tmp/hot"
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="zram-parallel",
    show_default=True,
    help="Workload profile (see docs/trace-format.md#synthetic-profiles).",
)
@click.option("--events", type=int, default=100_000, show_default=True, help="About this many.")
@click.option("--cpus", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def command(profile: str, events: int, cpus: int, seed: int, out: str, as_json: bool) -> None:
    """Write a seeded synthetic trace (zs_malloc/zs_free events) from a workload profile."""
    table = synth(profile, events=events, seed=seed, cpus=cpus)
    path = write_trace(out, table, synth_meta(profile, cpus=cpus, seed=seed, events=events))
    summary = {
        "trace": str(out),
        "file": str(path),
        "profile": profile,
        "events": table.num_rows,
        "cpus": cpus,
        "seed": seed,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"wrote {table.num_rows} events ({profile}, {cpus} CPUs, seed {seed}) to {path}",
            err=True,
        )
