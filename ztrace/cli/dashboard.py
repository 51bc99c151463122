"""``ztrace dashboard``: a self-contained offline HTML dashboard of results or a trace."""

from __future__ import annotations

import os

import click

from ztrace.cli._options import output_file_option
from ztrace.format import Results
from ztrace.progress import quiet_option


def replayed_results(
    trace: str | os.PathLike[str], locks: list[str] | None = None, *, quiet: bool = True
) -> Results:
    """Replay ``trace`` under ``locks`` (default: every registered design at its default
    parameter, since the comparison is the point) and wrap the tables for look."""
    from ztrace.format import open_trace, results_from_tables
    from ztrace.replay.engine import replay
    from ztrace.replay.locks import available

    open_trace(trace)  # one line naming the path if it is neither results nor a trace
    res = replay(str(trace), locks=locks or list(available()), progress=not quiet)
    summary = {"locks": res.summary, "counters": dict(res.counters)}
    return results_from_tables(dict(res.tables), meta=dict(res.meta), summary=summary)


@click.command(
    "dashboard",
    epilog="""\b
Examples:
  ztrace dashboard results/ -o report.html
  ztrace dashboard /tmp/t -o t.html --locks class,pool   # replays the trace first
  ztrace dashboard results/ -o r.html --max-bins 200     # smaller file
""",
)
@click.argument("source", type=click.Path(path_type=str))
@output_file_option("HTML file to write (one file, no network needed to view it).")
@click.option(
    "--locks", default=None, help="Lock designs to replay when SOURCE is a trace (comma-separated)."
)
@click.option(
    "--max-bins",
    type=click.IntRange(min=10),
    default=400,
    show_default=True,
    help="Timeline bins per design (bounds the file size).",
)
@click.option("--title", default=None, help="Page title.")
@quiet_option
def command(
    source: str, out: str, locks: str | None, max_bins: int, title: str | None, quiet: bool
) -> None:
    """Write one HTML file of linked charts for a RESULTS_DIR or a TRACE.

    Charts whose data is absent are listed at the bottom of the page instead of drawn.
    """
    from ztrace.format import is_results_dir
    from ztrace.look.dashboard import build_dashboard

    lock_list = [s.strip() for s in locks.split(",") if s.strip()] if locks else None
    # look reads results only: a trace is replayed here first, then handed over.
    data: str | Results = (
        source if is_results_dir(source) else replayed_results(source, lock_list, quiet=quiet)
    )
    res = build_dashboard(data, out, max_bins=max_bins, title=title, quiet=quiet)
    click.echo(
        f"wrote {res.path} ({res.bytes / 1e6:.2f} MB, {res.seconds:.1f} s): "
        f"{', '.join(res.charts) or 'no charts'}",
        err=True,
    )
    if res.absent:
        click.echo("not shown: " + "; ".join(f"{k} ({v})" for k, v in res.absent.items()), err=True)
