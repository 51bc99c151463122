"""``ztrace synth``: write a seeded synthetic trace (allocator or swap profile)."""

from __future__ import annotations

import json

import click
from click.core import ParameterSource

from ztrace.cli._options import force_option, output_dir_option
from ztrace.errors import ConfigError
from ztrace.format import write_trace
from ztrace.format.safeio import check_dir_target
from ztrace.format.trace import MAX_CPUS
from ztrace.workloads import PROFILE_KINDS, synth, synth_swap

#: --events ceiling: the largest trace the project's benchmarks generate (100 M events, about
#: 4 GB while generating); beyond it a clear error, not an allocation attempt.
MAX_SYNTH_EVENTS = 100_000_000
#: --scale ceiling for swap profiles, on the same grounds.
MAX_SYNTH_SCALE = 1000.0


@click.command(
    epilog="\b\nExamples:\n  ztrace synth -o /tmp/t\n"
    "  ztrace synth --profile hot-class --cpus 8 --events 1000000 -o /tmp/hot\n"
    "  ztrace synth --profile phase-change --scale 0.5 -o /tmp/pc   # swap trace (v2)\n"
    "\b\nAllocator profiles: " + ", ".join(sorted(synth.PROFILES)) + "\n"
    "Swap profiles (schema v2, for --lru and sweep): " + ", ".join(sorted(synth_swap.PROFILES))
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILE_KINDS)),
    default="zram-parallel",
    help="Workload profile (see docs/trace-format.md#synthetic-profiles).",
)
@click.option(
    "--events",
    # ceiling: the largest trace the project's benchmarks generate (a clear error, not an
    # allocation attempt)
    type=click.IntRange(1, MAX_SYNTH_EVENTS),
    default=100_000,
    help="About this many (allocator).",
)
@click.option("--cpus", type=click.IntRange(1, MAX_CPUS), default=4, help="CPUs (allocator).")
@click.option(
    "--scale",
    type=click.FloatRange(0, MAX_SYNTH_SCALE, min_open=True),
    default=1.0,
    help="Length multiplier (swap).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0)
@output_dir_option()
@force_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.pass_context
def command(
    ctx: click.Context,
    profile: str,
    events: int,
    cpus: int,
    scale: float,
    seed: int,
    out: str,
    as_json: bool,
    force: bool,
) -> None:
    """Write a seeded synthetic trace from a workload profile.

    Allocator profiles write zs_malloc/zs_free events (--events, --cpus); swap profiles
    write zswap store/load/invalidate events (--scale).
    """
    kind = PROFILE_KINDS[profile]
    wrong = ("scale",) if kind == "alloc" else ("events", "cpus")
    for name in wrong:
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise ConfigError(f"--{name}: does not apply to {kind} profile `{profile}`")
    check_dir_target(out, force=force)  # before generating: refuse early
    summary: dict[str, object] = {"trace": str(out), "profile": profile, "seed": seed}
    if kind == "alloc":
        table = synth.synth(profile, events=events, seed=seed, cpus=cpus)
        meta = synth.synth_meta(profile, cpus=cpus, seed=seed, events=events)
        what = f"{profile}, {cpus} CPUs, seed {seed}"
        summary["cpus"] = cpus
    else:
        if not scale > 0:
            raise ConfigError(f"--scale {scale}: must be > 0")
        table, meta = synth_swap.synth_swap(profile, seed=seed, scale=scale)
        if table.num_rows == 0:
            # a swap profile stores only once its RAM fills: too small a scale never does,
            # and a 0-event trace is one validate-trace and every replay refuse
            raise ConfigError(
                f"--scale {scale}: profile `{profile}` yields no events at this scale "
                "(try a larger --scale)"
            )
        what = f"{profile}, scale {scale}, seed {seed}"
        summary["scale"] = scale
    path = write_trace(out, table, meta, force=force)
    summary.update(file=str(path), events=table.num_rows)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"wrote {table.num_rows} events ({what}) to {path}", err=True)
