"""``ztrace fleet sweep``: many traces × a product of designs → one Parquet dataset, on Ray.

A new group rather than more options on ``ztrace sweep``: ``sweep`` stays the one-trace LRU
sweep (its output format is unchanged); ``fleet`` is the many-hosts workflow (docs/fleet.md).
"""

from __future__ import annotations

import json
import os
import sys

import click

from ztrace.cli._options import force_file_option, not_empty, unique_designs
from ztrace.errors import ConfigError
from ztrace.progress import quiet_option


@click.group("fleet", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Replay many hosts' traces and compare designs across the fleet.

    \b
    Examples:
      ztrace fleet sweep traces/ --locks class,pool --cpus 4,16 -j 2 -o /tmp/fleet
      ztrace fleet sweep host=*/ --lru entry-lru,swap-lru --pool-limits 5%,10% -o /tmp/f
      ztrace fleet sweep traces/ --locks class,pool --ray-address ray://head:10001 -o D
    """


def _csv(s: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (s or "").split(",") if x.strip())


def _numbers(s: str, conv: type, what: str) -> tuple:  # type: ignore[type-arg]
    try:
        vals = tuple(conv(x) for x in _csv(s))
    except ValueError:
        raise ConfigError(f"{what}: cannot parse {s!r} (want N,N,...)") from None
    if not vals:
        raise ConfigError(f"{what}: no values given")
    unique_designs(what, [repr(v) for v in vals])  # 4,4 would run every task twice
    return vals


@command.command("sweep")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--locks", default=None, help="Lock designs, comma-separated.")
@click.option("--cpus", default=None, help="CPU counts for lock tasks, N,N,... (trace's own).")
@click.option("--speedup", default="1", help="Speedups K,K,... (locks).")
@click.option("--lru", default=None, help="LRU designs, comma-separated (swap traces).")
@click.option("--pool-limits", default=None, help="A,B,C or A:B:step (pages, 64M, 20%).")
@click.option("--seed", type=int, default=0)
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(path_type=str), callback=not_empty
)
@click.option(
    "-j",
    "--jobs",
    type=int,
    default=None,
    help="Processes running tasks: this one and N-1 workers of a local Ray started on demand "
    "[default: CPUs]; 1 runs serially.",
)
@click.option("--ray-address", default=None, help="Run on this existing Ray cluster instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep's report as JSON.")
@quiet_option
def sweep_command(
    paths: tuple[str, ...],
    locks: str | None,
    cpus: str | None,
    speedup: str,
    lru: str | None,
    pool_limits: str | None,
    seed: int,
    out: str,
    jobs: int | None,
    ray_address: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Replay every trace under PATHS (files, directories of traces, hive trees such as
    host=web-17/) under each parameter set; write OUT/fleet.parquet and OUT/fleet.json.

    One task = one trace × one parameter set (lock design × cpus × speedup, or LRU design ×
    pool limit). Finished tasks are kept in OUT/tasks/ and skipped by a rerun (resume);
    a failed task is reported on stderr with its trace and error and the others go on
    (exit 1 at the end). Serial (-j 1) and Ray runs write byte-identical files.
    """
    from ztrace.cli.sweep import expand_limits
    from ztrace.fleet import Axes, discover, sweep
    from ztrace.format.safeio import check_path_usable
    from ztrace.replay.compile_notice import announce_compiles
    from ztrace.replay.locks import parse_designs
    from ztrace.replay.lru import design_list

    announce_compiles()  # a cold numba cache says so on stderr (issue 15)

    for p in paths:  # a name over 255 bytes is one line, not a traceback
        check_path_usable(p)
    check_path_usable(out, option="-o")
    lock_names = _csv(locks)
    if lock_names:
        parse_designs(list(lock_names))  # unknown design → one-line error before any work
    lru_names = tuple(unique_designs("--lru", design_list(lru))) if lru else ()
    limits = unique_designs("--pool-limits", expand_limits(pool_limits)) if pool_limits else []
    _check_pool_limits(limits)
    axes = Axes(
        locks=lock_names,
        cpus=_numbers(cpus, int, "--cpus") if cpus else (None,),
        speedup=_numbers(speedup, float, "--speedup"),
        lru=lru_names,
        pool_limits=tuple(limits),
        seed=seed,
    )
    from ztrace.replay.engine import _check_options

    for c in axes.cpus:  # a bad option is one line before any work, not a failed task each
        for k in axes.speedup:
            _check_options(k, c, None)
    n_jobs = jobs if jobs is not None else (os.cpu_count() or 1)

    def failed(task, err):  # type: ignore[no-untyped-def]
        click.echo(f"ztrace: task failed: {task.trace.path}: {task.label()}: {err}", err=True)

    traces = discover(list(paths))
    rep = sweep(
        traces, axes, out, jobs=n_jobs, ray_address=ray_address, quiet=quiet, on_failure=failed
    )
    doc = {
        "tasks": rep.tasks,
        "already_done": rep.already_done,
        "ran": rep.ran,
        "failed": [{"trace": t.trace.path, "task": t.label(), "error": e} for t, e in rep.failed],
        "not_applicable": [{"trace": p, "reason": r} for p, r in rep.not_applicable],
        "dataset": str(rep.dataset) if rep.dataset else None,
        "backend": rep.backend,
        "timing_s": {
            "startup": round(rep.startup_s, 3),
            "driver_idle": round(rep.driver_idle_s, 3),
            "tasks": round(rep.tasks_s, 3),
        },
        "tasks_in_driver": rep.in_driver,
        "ray_workers": rep.ray_workers,
    }
    if as_json:
        click.echo(json.dumps(doc))
    for p, r in rep.not_applicable:
        click.echo(f"ztrace: {p}: {r}", err=True)
    click.echo(
        f"fleet: {rep.tasks} tasks over {len(traces)} traces: {rep.already_done} already done, "
        f"{rep.ran} run ({rep.backend}), {len(rep.failed)} failed; wrote {rep.dataset}",
        err=True,
    )
    if rep.failed:
        sys.exit(1)


def _check_pool_limits(limits: list[str]) -> None:
    """Every --pool-limits value parsed as the tasks will parse it, before -o is created:
    a bad one is one line, exit 2, nothing written. Each trace's RAM size is not known yet,
    so a percent is checked against the largest RAM (only its (0, 100] range is enforced
    here), and bytes against the default page size; the tasks still check both per trace."""
    from ztrace.replay.lru import parse_pool_limit
    from ztrace.replay.lru._base import MAX_PAGES

    for x in limits:
        parse_pool_limit(x, ram_pages=MAX_PAGES, option="--pool-limits")


@command.command("dashboard")
@click.argument("dataset", type=click.Path(path_type=str))
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(path_type=str), callback=not_empty
)
@click.option(
    "--top",
    type=click.IntRange(min=1, max=1_000_000),
    default=20,
    help="Worst hosts per design (1..1000000).",
)
@force_file_option
def dashboard_command(dataset: str, out: str, top: int, force: bool) -> None:
    """One offline HTML page over a fleet sweep: per design, the distribution across hosts
    of the predicted change (design ÷ baseline: the first design of its kind), how many
    hosts gain or lose, and the hosts it hurts most (tooltips name their traces). An
    existing -o file is replaced only with --force; a device or FIFO is written into."""
    from pathlib import Path

    from ztrace.fleet import read_fleet
    from ztrace.format.safeio import check_file_target, check_path_usable, output_file
    from ztrace.look.fleet import build_page

    check_path_usable(dataset)  # a name over 255 bytes is one line, not a traceback
    # never onto (or into) the dataset; not a directory; no file replaced without --force
    check_file_target(out, (dataset,), force=force)
    page = build_page(read_fleet(dataset), source=str(Path(dataset).resolve()), top=top)
    with output_file(out, force=force, inputs=(dataset,)) as f:
        f.write(page)
    click.echo(f"wrote {out}", err=True)
