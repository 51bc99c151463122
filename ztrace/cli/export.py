"""``ztrace export``: a trace in formats other tools open (Perfetto / Chrome trace JSON)."""

from __future__ import annotations

import click

from ztrace.cli._options import force_file_option, output_file_option
from ztrace.progress import quiet_option


@click.group(
    "export",
    epilog="""\b
Examples:
  ztrace export perfetto /tmp/t -o t.json   # then open t.json in ui.perfetto.dev
""",
)
def command() -> None:
    """Export a trace for other viewers."""


@command.command(
    "perfetto",
    epilog="""\b
Examples:
  ztrace export perfetto /tmp/t -o t.json          # open t.json in ui.perfetto.dev
  ztrace export perfetto /tmp/t -o t.json --max-events 1000000
  ztrace export perfetto /tmp/t -o t.json --start-ns 2000000000 --end-ns 3000000000
  ztrace export perfetto /tmp/t -o t.json --force  # replace an existing t.json
""",
)
@click.argument("trace", type=click.Path(path_type=str))
@output_file_option("JSON file to write (Chrome trace-event format, JSON object form).")
@click.option(
    "--start-ns", type=click.IntRange(min=0), default=None, help="Only events with ts_ns >= this."
)
@click.option(
    "--end-ns", type=click.IntRange(min=0), default=None, help="Only events with ts_ns < this."
)
@click.option(
    "--max-events",
    type=click.IntRange(min=1, max=1 << 62),
    default=None,
    help="Stop after this many trace events (Perfetto's UI slows beyond ~10 M; max 2^62).",
)
@force_file_option
@quiet_option
def perfetto(
    trace: str,
    out: str,
    start_ns: int | None,
    end_ns: int | None,
    max_events: int | None,
    force: bool,
    quiet: bool,
) -> None:
    """Write TRACE as Chrome trace-event JSON: lock waits, holds and calls per CPU.

    An existing FILE is replaced only with --force; a device or FIFO is written into."""
    from ztrace.errors import ConfigError
    from ztrace.format.safeio import check_file_target
    from ztrace.look.perfetto import export_perfetto

    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise ConfigError(f"--end-ns ({end_ns}) must be greater than --start-ns ({start_ns})")
    check_file_target(out, (trace,), force=force)  # not onto the trace, nothing replaced
    st = export_perfetto(
        trace,
        out,
        start_ns=start_ns,
        end_ns=end_ns,
        max_events=max_events,
        quiet=quiet,
        force=force,
    )
    click.echo(
        f"wrote {st.path}: {st.trace_events:,} trace events as {st.json_events:,} "
        f"JSON events ({st.bytes / 1e6:.1f} MB"
        + (f", {st.clamped:,} cut to avoid overlap" if st.clamped else "")
        + ")",
        err=True,
    )


@command.command(
    "libcachesim",
    epilog="""\b
Examples:
  ztrace export libcachesim /tmp/swap -o swap.oracleGeneral          # zswap stores+loads
  ztrace export libcachesim /tmp/t --stream alloc -o alloc.oracleGeneral
  # then, e.g.: cachesim swap.oracleGeneral oracleGeneral lru,arc,s3fifo 0.01,0.1
""",
)
@click.argument("trace", type=click.Path(path_type=str))
@output_file_option("oracleGeneral file to write (libCacheSim's binary trace format).")
@click.option(
    "--stream",
    type=click.Choice(["swap", "alloc"]),
    default="swap",
    help="swap: zswap stores and loads by swap entry; alloc: zs_malloc/zs_free by handle.",
)
@force_file_option
def libcachesim(trace: str, out: str, stream: str, force: bool) -> None:
    """Write TRACE's swap (or allocator) stream as libCacheSim oracleGeneral records.

    An existing FILE is replaced only with --force; a device or FIFO is written into."""
    from ztrace.format.safeio import check_file_target
    from ztrace.look.libcachesim import export_libcachesim

    check_file_target(out, (trace,), force=force)  # refuse before reading the trace
    n = export_libcachesim(trace, out, stream, force=force)  # type: ignore[arg-type]
    click.echo(f"wrote {n} requests ({stream} stream) to {out}", err=True)
