"""``ztrace compare A B``: before/after deltas per design, with bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ztrace.errors import ConfigError
from ztrace.progress import quiet_option

#: --resamples range: fewer gives unstable 95% intervals; the ceiling bounds the bootstrap's
#: memory (fuzz report s21, item 7: 10,000,000 resamples of ~100 bins asked for 30 GiB)
MIN_RESAMPLES, MAX_RESAMPLES = 100, 100_000


#: what compare reads, for the one line that refuses anything else
ACCEPTS = (
    "compare takes two fleet datasets (ztrace fleet sweep -o), or two of results "
    "(ztrace replay -o) and traces"
)
_KIND = {
    "fleet": "a fleet dataset (one value per host)",
    "results": "results of one trace",
    "trace": "a trace",
}


def _kind(path: str) -> str:
    """What one side is: ``fleet`` (a fleet dataset), ``results`` or ``trace``."""
    from ztrace.format import is_results_dir
    from ztrace.format.safeio import check_path_usable

    check_path_usable(path)  # a name over 255 bytes is one line, not a traceback
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if (p / "fleet.parquet").exists() or p.name == "fleet.parquet":
        return "fleet"
    if p.is_dir() and is_results_dir(p):
        return "results"
    return "trace"


def _check_kinds(a: str, ka: str, b: str, kb: str) -> None:
    """A fleet dataset holds one value per host (a total over hosts): it is compared with
    another fleet dataset only, never with one trace's results (fuzz report s22, item 1)."""
    if (ka == "fleet") != (kb == "fleet"):
        raise ConfigError(f"{b}: is {_KIND[kb]}, but A ({a}) is {_KIND[ka]}; {ACCEPTS}")


def _samples(
    path: str, kind: str, locks: str, lru: str | None, pool_limit: str | None, seed: int
) -> Any:
    """Samples of one side: a fleet dataset, a results directory, or a trace (replayed)."""
    from ztrace.format import read_results, results_from_tables
    from ztrace.look.compare import samples_from_fleet, samples_from_results

    p = Path(path)
    if kind == "fleet":
        from ztrace.fleet import read_fleet

        return samples_from_fleet(read_fleet(p))
    if kind == "results":
        res = read_results(p)
        samples = samples_from_results(res)
        if samples.is_empty():
            held = ", ".join(sorted(res.tables)) or "none"
            what = (
                "a sweep (ztrace sweep -o)"
                if res.has("sweep")
                else f"results without lock or LRU tables ({held})"
            )
            raise ConfigError(f"{path}: is {what}, which compare does not read; {ACCEPTS}")
        return samples
    from ztrace.fleet.discover import identify
    from ztrace.replay.compile_notice import announce_compiles
    from ztrace.replay.engine import replay

    announce_compiles()  # a cold numba cache says so on stderr (issue 15)

    ref = identify(p)
    tables: dict[str, Any] = {}
    if ref.has_alloc:
        tables.update(replay(path, locks=locks, seed=seed).tables)
    if lru and ref.has_swap:
        from ztrace.replay.lru import run_lru

        tables.update(run_lru(path, lru, pool_limit=pool_limit or "20%", seed=seed))
    if not tables:
        raise ConfigError(f"{path}: nothing to compare (no allocator events, and no --lru)")
    return samples_from_results(results_from_tables(tables, meta={}, summary={}))


@click.command(
    "compare",
    epilog="\b\nExamples:\n"
    "  ztrace compare before/ after/                 # two captures (replayed), or results\n"
    "  ztrace compare fleet-6.1/ fleet-6.12/ --csv    # two fleet sweeps, paired by host\n"
    "  ztrace compare A B --lru entry-lru --pool-limit 20% --json",
)
@click.argument("a", type=click.Path(path_type=str))
@click.argument("b", type=click.Path(path_type=str))
@click.option("--locks", default="class,pool", help="For traces: designs.")
@click.option("--lru", default=None, help="For traces: LRU designs too.")
@click.option(
    "--pool-limit",
    default=None,
    help="For traces with --lru: pages, bytes (64M) or percent of the trace's RAM "
    "(default 20%; a trace that does not record its RAM needs pages or bytes).",
)
@click.option("--seed", type=int, default=0, help="Replay and bootstrap seed.")
@click.option(
    "--resamples",
    # the bootstrap draws every resample at once (look.compare._one): ~32 bytes per resample
    # and sample of a side, so 100,000 resamples of 1,000 samples peak near 3 GB
    type=click.IntRange(MIN_RESAMPLES, MAX_RESAMPLES),
    default=2000,
    help=f"Bootstrap resamples ({MIN_RESAMPLES}..{MAX_RESAMPLES:,}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the deltas as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the deltas as CSV.")
@quiet_option
def command(
    a: str,
    b: str,
    locks: str,
    lru: str | None,
    pool_limit: str | None,
    seed: int,
    resamples: int,
    as_json: bool,
    as_csv: bool,
    quiet: bool,
) -> None:
    """Per-design deltas B − A of total wait, p99 wait, disk faults, fault latency and pages,
    with 95% bootstrap intervals; "no measurable difference" where the interval holds zero.

    A and B are each a fleet sweep (hosts are the samples, paired when both hold the same
    hosts), a results directory, or a trace (replayed here; time bins are the samples).
    """
    if as_json and as_csv:
        raise ConfigError("--json/--csv: give one of them, not both")
    from ztrace.look.compare import compare, render_csv, render_json, render_text

    ka, kb = _kind(a), _kind(b)
    _check_kinds(a, ka, b, kb)  # before any replay: a fleet is compared with a fleet only
    sa = _samples(a, ka, locks, lru, pool_limit, seed)
    sb = _samples(b, kb, locks, lru, pool_limit, seed)
    deltas = compare(sa, sb, resamples=resamples, seed=seed)
    if not deltas:
        raise ConfigError(f"{b}: no design in common with {a}")
    if as_json:
        click.echo(render_json(deltas, a, b))
    elif as_csv:
        click.echo(render_csv(deltas), nl=False)
    else:
        click.echo(render_text(deltas, a, b), nl=False)
