"""``ztrace oracle``: check the zsmalloc model against the running kernel."""

from __future__ import annotations

import json

import click

from ztrace.errors import ConfigError


@click.group(name="oracle")
def command() -> None:
    """Check the zsmalloc model page-exactly against the running kernel."""


@command.command(name="zram")
@click.option(
    "--ops",
    type=int,
    default=50_000,
    show_default=True,
    help="Operations before the first compaction.",
)
@click.option(
    "--ops-after",
    type=int,
    default=None,
    help="Operations after it (default ops/5), then a final compaction.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--slots",
    type=int,
    default=8192,
    show_default=True,
    help="Device size in 4 KiB pages (the working set).",
)
@click.option("--device", default="/dev/zram0", show_default=True)
@click.option(
    "--comp", "comp", default="lzo-rle", show_default=True, help="zram compression algorithm."
)
@click.option(
    "-o",
    "--out",
    "out",
    default=None,
    metavar="TRACE_DIR",
    help="Write the oracle trace (format v1, source=oracle) here.",
)
@click.option(
    "--order",
    type=click.Choice(["kernel", "alloc-first", "free-first"]),
    default="kernel",
    show_default=True,
    help="Overwrite order to emit (experiments only; 'kernel' is the truth).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def zram(
    ops: int,
    ops_after: int | None,
    seed: int,
    slots: int,
    device: str,
    comp: str,
    out: str | None,
    order: str,
    as_json: bool,
) -> None:
    """Drive /dev/zram0 with O_DIRECT writes, overwrites and discards; compare pages.

    Needs root. Holds /tmp/ztrace-zram0.lock while it uses the device, resets the device
    before and after, and restores its settings also on error or Ctrl-C. Exit status 1 when
    any checkpoint mismatches.
    """
    from rich.console import Console
    from rich.table import Table

    from ztrace.oracle.zram import OracleConfig, run_oracle

    if ops < 1:
        raise ConfigError("--ops must be >= 1")
    err = Console(stderr=True)
    abf = {"kernel": None, "alloc-first": True, "free-first": False}[order]

    def progress(done: int, total: int) -> None:
        if done % 10_000 == 0:
            err.print(f"[dim]oracle: {done}/{total} ops[/dim]")

    cfg = OracleConfig(
        ops=ops,
        ops_after=ops_after,
        seed=seed,
        device=device,
        slots=slots,
        comp_algorithm=comp,
        out_dir=out,
        alloc_before_free=abf,
        progress=progress,
    )
    res = run_oracle(cfg)
    d = res.as_dict()
    t = Table(
        title=f"zram oracle — {d['kernel_release']} ({d['comp_algorithm']}, "
        f"chain {d['chain_size']}, seed {d['seed']})"
    )
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        (
            "ops (before / after compaction)",
            f"{d['ops']} ({d['ops_before_compaction']} / {d['ops_after_compaction']})",
        ),
        ("writes / overwrites / discards", f"{d['writes']} / {d['overwrites']} / {d['discards']}"),
        ("same-filled / huge writes", f"{d['same_filled_writes']} / {d['huge_writes']}"),
        ("zs_malloc / zs_free events", f"{d['zs_malloc_events']} / {d['zs_free_events']}"),
        (
            "checkpoints (before / after)",
            f"{d['checkpoints']} ({d['checkpoints_before_compaction']} / "
            f"{d['checkpoints_after_compaction']})",
        ),
        ("mismatches before compaction", str(d["mismatches_before_compaction"])),
        ("mismatches after compaction", str(d["mismatches_after_compaction"])),
        ("per-op mismatches", f"{d['per_op_mismatches']} of {d['per_op_checks']}"),
        ("classification errors", str(d["classification_errors"])),
        ("unrequested compactions", str(d["unrequested_compactions"])),
        ("peak pages (kernel)", str(d["pages"]["peak_kernel"])),
    ]
    for c in res.compactions:
        rows.append(
            (
                f"compaction at op {c['op']}: kernel pages",
                f"{c['kernel_before']} → {c['kernel_after']}",
            )
        )
        rows.append(
            (
                f"compaction at op {c['op']}: model pages",
                f"{c['model_before']} → {c['model_after']}",
            )
        )
    rows.append(("trace", str(d["trace_path"])))
    rows.append(("elapsed", f"{d['elapsed_s']} s"))
    for k, v in rows:
        t.add_row(k, v)
    err.print(t)
    if as_json:
        click.echo(json.dumps(d))
    if res.mismatches_before or res.mismatches_after:
        click.get_current_context().exit(1)
