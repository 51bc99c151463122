"""``ztrace report``: lock and LRU results as perf-lock-style tables, JSON or CSV."""

from __future__ import annotations

import click

from ztrace.look.report import DEFAULT_SORT_KEY, SORT_KEYS


@click.command(
    "report",
    epilog="""\b
Examples:
  ztrace report results/                 # tables, sorted by total wait
  ztrace report results/ -k contended -E 5
  ztrace report results/ --csv > locks.csv   # perf lock contention -x , shape, raw ns
  ztrace report results/ --json | jq .locks_summary
  ztrace report TRACE                    # a capture: measured contention by lock and caller
  ztrace report TRACE --folded > w.folded && flamegraph.pl w.folded > w.svg
""",
)
@click.argument("results_dir", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (raw ns) instead of tables.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Print CSV like `perf lock contention -x ,` (raw ns, `# output:` header).",
)
@click.option("-x", "--field-separator", "sep", default=",", help="Separator for --csv.")
@click.option(
    "-k",
    "--key",
    "sort_key",
    type=click.Choice(SORT_KEYS),
    default=DEFAULT_SORT_KEY,
    help="Sort locks by this key.",
)
@click.option(
    "-E",
    "--entries",
    type=click.IntRange(min=1, max=1_000_000),
    default=None,
    help="Show only the top N locks per design (1..1000000).",
)
@click.option(
    "--folded",
    "as_folded",
    is_flag=True,
    help="Capture only: folded stacks weighted by wait ns (flamegraph.pl, speedscope).",
)
@click.option(
    "-l", "--lock-addr", "by_lock", is_flag=True, help="Capture only: CSV by lock, not caller."
)
def command(
    results_dir: str,
    as_json: bool,
    as_csv: bool,
    sep: str,
    sort_key: str,
    entries: int | None,
    as_folded: bool,
    by_lock: bool,
) -> None:
    """Print lock contention per design and lock, and LRU results, from RESULTS_DIR; or,
    for a capture (a trace), the contention it measured by lock and by caller."""
    from ztrace.errors import ConfigError
    from ztrace.look.measured import is_trace, report_trace

    if is_trace(results_dir):
        text = report_trace(
            results_dir,
            as_json=as_json,
            as_csv=as_csv,
            sep=sep,
            sort_key=sort_key,
            entries=entries,
            as_folded=as_folded,
            csv_by_lock=by_lock,
        )
        click.echo(text, nl=False)
        return
    if as_folded or by_lock:
        raise ConfigError("--folded and -l/--lock-addr need a capture (trace), not results")
    from ztrace.format import read_results
    from ztrace.look.report import build_report, render_csv, render_json, render_terminal

    if as_json and as_csv:
        raise ConfigError("--json/--csv: give one of them, not both")
    results = read_results(results_dir)
    report = build_report(results, sort_key=sort_key, limit=entries)
    if as_json:
        click.echo(render_json(report))
    elif as_csv:
        click.echo(render_csv(report, sep), nl=False)
    else:
        import sys

        from rich.console import Console

        if sys.stdout is None:  # stdout closed (`>&-`): nowhere to print, as click.echo does
            return
        # Piped output has no width; perf does not wrap either, so give the tables room.
        width = None if sys.stdout.isatty() else 130
        render_terminal(report, Console(highlight=False, width=width))
