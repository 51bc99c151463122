"""``ztrace validate-trace``: check a trace against the format and summarise it."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
import pyarrow.compute as pc

from ztrace.format import read_trace


@click.command()
@click.argument("trace", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def command(trace: str, as_json: bool) -> None:
    """Validate TRACE (a dataset directory or one .parquet file) and print a summary.

    Exit code 2 and one line naming the file when the trace is not valid.
    """
    # a capture that saw no event (--pid of an idle process) writes a valid trace of 0 rows:
    # the full schema and metadata, no rows; it is reported as such, not refused
    t = read_trace(trace, allow_empty=True)
    counts = pc.value_counts(t.table.column("event").cast("string")).to_pylist()
    ts = t.table.column("ts_ns")
    by_event: dict[str, int] = {c["values"]: c["counts"] for c in counts}
    summary = {
        "trace": trace,
        "files": len(t.files),
        "events": t.num_events,
        "by_event": by_event,
        "span_ns": int(pc.max(ts).as_py() - pc.min(ts).as_py()) if len(ts) else 0,
        "meta": {k: v for k, v in asdict(t.meta).items() if k != "extra"} | dict(t.meta.extra),
    }
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    click.echo(
        f"{trace}: valid ztrace trace v{t.meta.schema_version}, {t.num_events} events "
        f"in {len(t.files)} file(s), source={t.meta.source}, "
        f"kernel={t.meta.kernel_release}, lost_events={t.meta.lost_events}"
    )
    if not t.num_events:
        click.echo("  no events recorded (the capture saw none)")
    for name, n in sorted(by_event.items()):
        click.echo(f"  {name:<18} {n}")
