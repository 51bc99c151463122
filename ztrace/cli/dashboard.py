"""``ztrace dashboard``: a self-contained offline HTML dashboard of results or a trace."""

from __future__ import annotations

import os

import click

from ztrace.cli._options import force_file_option, output_file_option
from ztrace.format import Results
from ztrace.progress import quiet_option


def replayed_results(
    trace: str | os.PathLike[str], locks: list[str] | None = None, *, quiet: bool = True
) -> Results:
    """Replay ``trace`` under ``locks`` (default: every registered design at its default
    parameter, since the comparison is the point) and wrap the tables for look."""
    from ztrace.format import open_trace, results_from_tables
    from ztrace.replay.compile_notice import announce_compiles
    from ztrace.replay.engine import replay
    from ztrace.replay.locks import available

    announce_compiles()  # a cold numba cache says so on stderr (issue 15)

    open_trace(trace)  # one line naming the path if it is neither results nor a trace
    res = replay(str(trace), locks=locks or list(available()), progress=not quiet)
    summary = {"locks": res.summary, "counters": dict(res.counters)}
    return results_from_tables(dict(res.tables), meta=dict(res.meta), summary=summary)


def measured_only_results(source: str | os.PathLike[str]) -> Results:
    """Results with no replayed tables, naming ``source`` as their trace: the dashboard then
    draws the capture's measured side (flame graph, measured waits) and lists the replay's
    charts as absent."""
    from pathlib import Path

    from ztrace.format import results_from_tables
    from ztrace.look.measured import load_measured

    m = load_measured(Path(source))  # one line naming the file if the summary cannot be read
    meta = {"ztrace.trace": str(Path(source).resolve()), "ztrace.capture_mode": "summary"}
    summary = {"measured_only": {"events": m.events, "lost_events": m.lost_events}}
    return results_from_tables({}, meta=meta, summary=summary)


def combined_results(dirs: tuple[str, ...]) -> Results:
    """Several results directories of one trace (say an LRU replay and a sweep) as one
    :class:`Results`, read, never merged on disk. Each table comes from exactly one of them."""
    from ztrace.errors import ConfigError
    from ztrace.format import read_results, results_from_tables
    from ztrace.look import provenance

    tables: dict = {}
    owner: dict[str, str] = {}
    meta: dict[str, str] = {}
    summary: dict = {}
    parts: list[Results] = []
    for d in dirs:
        r = read_results(d)
        parts.append(r)
        trace = r.meta.get("ztrace.trace")
        if meta and trace != meta.get("ztrace.trace"):
            raise ConfigError(
                f"{d}: results of {trace}, but {dirs[0]} holds results of "
                f"{meta.get('ztrace.trace')}; one dashboard shows one trace"
            )
        for stem, t in r.tables.items():
            if stem in tables:
                raise ConfigError(f"{d}: holds {stem}, as {owner[stem]} does; give each once")
            tables[stem], owner[stem] = t, d
        meta = meta or dict(r.meta)
        summary = {**r.summary, **summary}
    per_design = provenance.combine(parts)  # designs of replays whose costs came apart
    if per_design:
        summary[provenance.BY_DESIGN] = per_design
    return results_from_tables(tables, meta=meta, summary=summary)


@click.command(
    "dashboard",
    epilog="""\b
Examples:
  ztrace dashboard results/ -o report.html
  ztrace dashboard /tmp/t -o t.html --locks class,pool   # replays the trace first
  ztrace dashboard /tmp/s -o s.html     # a --summary capture: what it measured, no replay
  ztrace dashboard results/ -o r.html --max-bins 200     # smaller file
  ztrace dashboard results-lru/ results-sweep/ -o lru.html  # an LRU replay and its sweep
  ztrace dashboard results/ -o report.html --force       # replace an existing report.html
""",
)
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=str))
@output_file_option("HTML file to write (one file, no network needed to view it).")
@click.option(
    "--locks", default=None, help="Lock designs to replay when SOURCE is a trace (comma-separated)."
)
@click.option(
    "--max-bins",
    type=click.IntRange(min=10),
    default=400,
    help="Timeline bins per design (bounds the file size).",
)
@click.option("--title", default=None, help="Page title.")
@force_file_option
@quiet_option
def command(
    sources: tuple[str, ...],
    out: str,
    locks: str | None,
    max_bins: int,
    title: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Write one HTML file of linked charts for RESULTS_DIR(s) of one trace, or a TRACE.

    Charts whose data is absent are listed at the bottom of the page instead of drawn.
    An existing FILE is replaced only with --force; a device or FIFO (-o /dev/stdout) is
    written into.
    """
    from ztrace.format import is_results_dir
    from ztrace.format.safeio import check_file_target
    from ztrace.look.dashboard import build_dashboard
    from ztrace.look.measured import is_summary_capture

    # before replaying: not onto an input, not a directory, no file replaced without --force
    check_file_target(out, sources, force=force)
    lock_list = [s.strip() for s in locks.split(",") if s.strip()] if locks else None
    source = sources[0]
    # look reads results only: a trace is replayed here first, then handed over.
    data: str | Results
    if len(sources) > 1:
        data = combined_results(sources)
    elif is_results_dir(source):
        data = source
    elif is_summary_capture(source):  # nothing to replay: what it measured
        if lock_list:
            raise click.UsageError(
                f"{source}: a --summary capture keeps no event stream to replay; "
                "drop --locks (the page shows what it measured)",
            )
        data = measured_only_results(source)
    else:
        data = replayed_results(source, lock_list, quiet=quiet)
    res = build_dashboard(
        data, out, max_bins=max_bins, title=title, quiet=quiet, inputs=sources, force=force
    )
    click.echo(
        f"wrote {res.path} ({res.bytes / 1e6:.2f} MB, {res.seconds:.1f} s): "
        f"{', '.join(res.charts) or 'no charts'}",
        err=True,
    )
    if res.absent:
        click.echo("not shown: " + "; ".join(f"{k} ({v})" for k, v in res.absent.items()), err=True)
