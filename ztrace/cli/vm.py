"""``ztrace vm``: build the guest image and run capture scenarios in stock Debian kernels."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ztrace.cli._options import matrix_cells_option, matrix_reps_option, not_empty


def _params(values: tuple[str, ...]) -> dict[str, str]:
    """``-p KEY=VALUE ...`` -> a dict, each checked as the guest's kernel command line needs
    it (a value with a space was refused only at boot, after OUTDIR was created)."""
    from ztrace.vm.run import parse_param

    return dict(parse_param(v) for v in values)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Run ztrace inside stock Debian kernels (6.1, 6.12) under qemu.

    \b
    Examples:
      ztrace vm build
      ztrace vm run --kernel 6.12 --scenario zswap -o /tmp/zswap-612
      ztrace vm run --kernel 6.1 --scenario zram -p mb_per_job=16 -o /tmp/zram-61 --json
    """


@command.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if the cached image is current.")
def build_cmd(force: bool) -> None:
    """Build (or find in the cache) the guest image; print its directory."""
    from ztrace.vm import build_image

    img = build_image(force=force)
    click.echo(str(img.path))


@command.command("list")
def list_cmd() -> None:
    """List kernels, scenarios and the cached image."""
    from ztrace.vm import KERNELS, cache_dir, find_image, scenarios

    img = find_image()
    click.echo(f"kernels:   {', '.join(KERNELS)}")
    click.echo(f"scenarios: {', '.join(scenarios())}")
    if img is None:
        click.echo(f"image:     not built (cache {cache_dir()})")
    else:
        rel = ", ".join(f"{k}={v['release']}" for k, v in img.manifest["kernels"].items())
        click.echo(f"image:     {img.path} ({rel})")


@command.command("run")
@click.option("--kernel", "-k", type=click.Choice(["6.1", "6.12"]), required=True)
@click.option("--scenario", "-s", required=True, help="Scenario name (see `ztrace vm list`).")
@click.option(
    "-o",
    "--outdir",
    type=click.Path(file_okay=False),
    required=True,
    callback=not_empty,
    help="Empty or new directory for the guest's output.",
)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Scenario parameter, passed as ztrace.KEY=VALUE on the kernel command line.",
)
@click.option(
    "--timeout", type=float, default=1200.0, help="Seconds before the guest is killed (<= 86400)."
)
@click.option("--smp", type=int, default=2, help="Guest CPUs, 1..64.")
@click.option("--mem", "mem_mb", type=int, default=2048, help="Guest memory in MiB, 256..65536.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def run_cmd(
    kernel: str,
    scenario: str,
    outdir: str,
    params: tuple[str, ...],
    timeout: float,
    smp: int,
    mem_mb: int,
    as_json: bool,
) -> None:
    """Boot KERNEL, run SCENARIO inside, and leave its output in OUTDIR."""
    from ztrace.vm import GuestOptions, run_scenario

    guest = GuestOptions(params=_params(params), timeout=timeout, smp=smp, mem_mb=mem_mb)
    # run_scenario checks the guest's options (vm.run.check_guest) before anything else
    res = run_scenario(kernel, scenario, outdir, guest)
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=1))
    else:
        retried = (
            f" (boot {res.boots}: the kernel died in the earlier ones)" if res.boots > 1 else ""
        )
        click.echo(
            f"{res.scenario} on {res.release}: rc={res.rc}, boot {res.boot_s}s{retried}, "
            f"scenario {res.scenario_s}s, total {res.total_s}s -> {res.outdir}"
        )


@command.command("matrix")
@click.option("-o", "--outdir", type=click.Path(file_okay=False), required=True)
@matrix_reps_option("Runs per cell and kernel.")
@matrix_cells_option("Cell name or scenario prefix (default: all; see ztrace/vm/matrix.py CELLS).")
@click.option("--timeout", type=float, default=900.0)
@click.option(
    "--loads-per-boot",
    type=click.IntRange(1, 20),
    default=None,
    help="zsstress cells only: run each cell this many times per boot, under one capture "
    "(one BCC compile), and split the capture per load (ztrace/vm/split.py).",
)
@click.option(
    "--first-rep",
    type=click.IntRange(0, 99),
    default=0,
    show_default=False,
    help="Number runs from here (rNN).",
)
@click.option("--summary-only", is_flag=True, help="Only summarise the runs already in OUTDIR.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace OUTDIR/summary.json even if it is not a matrix summary ztrace wrote.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def matrix_cmd(
    outdir: str,
    reps: int,
    cells: tuple[str, ...],
    timeout: float,
    loads_per_boot: int | None,
    first_rep: int,
    summary_only: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Run the scenario set on 6.1 and 6.12, interleaved ABAB, and summarise the contention."""
    from ztrace.errors import ConfigError
    from ztrace.vm.matrix import (
        cells_named,
        check_summary_target,
        markdown_table,
        run_boots,
        run_matrix,
        summarize_matrix,
    )
    from ztrace.vm.run import check_timeout

    if not outdir:
        raise ConfigError("-o '': give a directory (not the current one by default)")
    check_timeout(timeout)
    if summary_only:
        check_summary_target(outdir, force=force)  # before anything is written
    chosen = cells_named(list(cells))
    if not summary_only and loads_per_boot:
        run_boots(
            outdir,
            chosen,
            reps,
            loads_per_boot,
            first_rep=first_rep,
            timeout=max(timeout, 1500.0),
            on_run=lambda c, k, r, s: click.echo(f"{k} r{r:02d}: {s}", err=True),
        )
    elif not summary_only:
        run_matrix(
            outdir,
            chosen,
            reps,
            timeout=timeout,
            on_run=lambda c, k, r, s: click.echo(f"{c.name} {k} r{r:02d}: {s}", err=True),
        )
    from ztrace.format.safeio import atomic_file

    summary = summarize_matrix(outdir)
    with atomic_file(Path(outdir, "summary.json")) as f:  # whole or not at all; no link followed
        f.write(json.dumps(summary, indent=1) + "\n")
    click.echo(json.dumps(summary, indent=1) if as_json else markdown_table(summary))
