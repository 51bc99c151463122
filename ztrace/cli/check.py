"""``ztrace check``: hold the model against the real kernel (oracle, locks, lru-kernel).

``ztrace oracle zram`` and ``ztrace validate locks`` are aliases of ``check oracle`` and
``check locks`` (``cli/oracle.py``, ``cli/validate.py``); the commands are defined once, here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import click

from ztrace.checks.oracle_config import OracleConfig
from ztrace.cli._options import (
    force_option,
    matrix_cells_option,
    matrix_reps_option,
    output_dir_option,
)
from ztrace.errors import ConfigError
from ztrace.replay.hold_ends import DEFAULT_END
from ztrace.replay.hold_ends import ENDS as HOLD_ENDS

#: ``check oracle --slots`` at most (= ztrace.host.zram.MAX_SLOTS: 2**24 pages, a 64 GiB
#: device); kept here so the CLI does not import the host module to show its help
MAX_SLOTS = 1 << 24
#: ``check oracle --ops`` / ``--ops-after`` at most (the oracle keeps every op in memory)
MAX_OPS = 10_000_000


def _finite(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Refuse nan and inf (click's FloatRange lets nan through: every comparison is false)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


@click.group("check", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Check the model and the replay against the running kernel or a captured guest run.

    \b
    Examples:
      sudo ztrace check oracle --ops 50000 --seed 1
      sudo ztrace check locks --writers 4 --seconds 3
      ztrace check lru-kernel VMDIR --design none --design entry-lru
    """
    from ztrace.replay.compile_notice import announce_compiles

    announce_compiles()  # every check replays: a cold numba cache says so on stderr (issue 15)


@click.command(name="oracle")
@click.option(
    "--ops",
    type=click.IntRange(1, MAX_OPS),
    default=OracleConfig.ops,
    help="Operations before the first compaction.",
)
@click.option(
    "--ops-after",
    type=click.IntRange(0, MAX_OPS),
    default=None,
    help="Operations after it (default ops/5), then a final compaction.",
)
@click.option("--seed", type=click.IntRange(0), default=OracleConfig.seed)
@click.option(
    "--slots",
    type=click.IntRange(16, MAX_SLOTS),
    default=OracleConfig.slots,
    help="Device size in 4 KiB pages (the working set).",
)
@click.option("--device", default=OracleConfig.device, help="The zram device, /dev/zramN.")
@click.option(
    "--comp", "comp", default=OracleConfig.comp_algorithm, help="zram compression algorithm."
)
@output_dir_option("Write the oracle trace (format v1, source=oracle) here.", required=False)
@force_option
@click.option(
    "--order",
    type=click.Choice(["kernel", "alloc-first", "free-first"]),
    default="kernel",
    help="Overwrite order to emit (experiments only; 'kernel' is the truth).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def oracle(
    ops: int,
    ops_after: int | None,
    seed: int,
    slots: int,
    device: str,
    comp: str,
    out: str | None,
    force: bool,
    order: str,
    as_json: bool,
) -> None:
    """Drive /dev/zram0 with O_DIRECT writes, overwrites and discards; compare pages.

    Needs root. Holds /tmp/ztrace-zram0.lock while it uses the device, resets the device
    before and after, and restores its settings also on error or Ctrl-C. Exit status 1 when
    any checkpoint mismatches.
    """
    from rich.console import Console

    from ztrace.checks.oracle import run_oracle
    from ztrace.host.zram import check_compressor, check_device_path
    from ztrace.look.tables import render_json, render_oracle

    if ops < 1:
        raise ConfigError("--ops must be >= 1")
    # every option refused before the device is locked, reset or written (issue s21 fuzz 3)
    check_compressor(check_device_path(device), comp)
    if out:
        from ztrace.format.safeio import check_dir_target

        check_dir_target(out, force=force)  # refuse before driving the device, not after
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
        force=force,
        alloc_before_free=abf,
        progress=progress,
    )
    res = run_oracle(cfg)
    d = res.as_dict()
    err.print(render_oracle(d, res.compactions))
    if as_json:
        click.echo(render_json(d, sort_keys=False))
    if res.mismatches_before or res.mismatches_after:
        click.get_current_context().exit(1)


@click.command(
    "locks",
    epilog="""
\b
Examples:
  ztrace check locks
  ztrace check locks --writers 4 --seconds 3 --json > validate-locks.json
""",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option(
    "--writers",
    default=4,
    type=click.IntRange(2, 64),
    help="Writer threads in the calibration run (pinned round-robin to CPUs).",
)
@click.option(
    "--seconds",
    default=2.0,
    type=click.FloatRange(0.2, 120),
    callback=_finite,
    help="Length of each workload run.",
)
@click.option(
    "--discard-every",
    default=4,
    type=click.IntRange(1, 1000),
    help="Validation runs discard each writer's region every K passes.",
)
@click.option("--no-calibrate", is_flag=True, help="Only the cost model's default hold times.")
@click.option(
    "--rounds",
    default=3,
    show_default=True,
    type=click.IntRange(1, 50),
    help="Interleaved rounds of the three runs; ratios are medians over rounds with their "
    "min-max spread.",
)
@click.option(
    "--no-hold-cap",
    is_flag=True,
    help="Let every op hold the scaled constant, even past the gap to its CPU's next traced "
    "op (the method before session 19).",
)
def locks(
    as_json: bool,
    writers: int,
    seconds: float,
    discard_every: int,
    no_calibrate: bool,
    rounds: int,
    no_hold_cap: bool,
) -> None:
    """Measure real zsmalloc class-lock contention on /dev/zram0, replay the captured op
    stream under `class`, and compare contended acquisitions and total wait."""
    from ztrace.capture.features import require_privileges

    require_privileges()
    from ztrace.checks.locks import validate
    from ztrace.look.tables import render_json, render_lock_check

    res = validate(
        writers=writers,
        seconds=seconds,
        discard_every=discard_every,
        calibrate=not no_calibrate,
        rounds=rounds,
        cap_holds=not no_hold_cap,
    )
    if as_json:
        click.echo(render_json(res, indent=2, sort_keys=False))
        return
    click.echo(render_lock_check(res))


@click.command(
    "lru-kernel",
    epilog="""\b
Examples:
  ztrace vm run --kernel 6.1 --scenario zswap -o /tmp/vm61
  ztrace check lru-kernel /tmp/vm61 --design none --design entry-lru
  ztrace check lru-kernel /tmp/vm61 --design none:worker_steps=1 --json
""",
)
@click.argument("vmdir", type=click.Path(path_type=str))
@click.option(
    "--design",
    "designs",
    multiple=True,
    required=True,
    help="LRU design NAME or NAME:k=v,... (repeatable).",
)
@click.option(
    "--pool-check",
    is_flag=True,
    help="Also count pool_limit_hit from the kernel's own zs_malloc/zs_free rows.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full comparison as JSON.")
def lru_kernel(vmdir: str, designs: tuple[str, ...], pool_check: bool, as_json: bool) -> None:
    """Replay a guest's zswap capture (``ztrace vm run --scenario zswap``) under LRU designs
    and compare with the guest kernel's zswap counters (docs/lru-kernel-check.md)."""
    from ztrace.look.tables import render_json
    from ztrace.replay.lru.kernel_check import check, markdown

    _check_designs(designs)
    _check_counters(vmdir)
    res = check(vmdir, list(designs), pool_check=pool_check)
    if as_json:
        click.echo(render_json(res, indent=1, sort_keys=False))
        return
    click.echo(
        f"{res['release']}: limit {res['pool_limit_pages']} pages "
        f"({res['zswap_params'].get('max_pool_percent')}% of {res['ram_pages']}), "
        f"ops {res['trace_ops']}"
    )
    click.echo(markdown(res))


def _check_designs(designs: tuple[str, ...]) -> None:
    """Refuse a ``--design NAME:k=v,...`` whose name or parameters the replay would refuse,
    before the capture is loaded, naming --design (the replay's own errors say --lru and
    --param, the options of ``replay``)."""
    from ztrace.replay.lru import (
        canonical_name,
        design_class,
        parse_params,
        split_design_spec,
        split_kv,
    )

    for spec in designs:
        name, extra = split_design_spec(spec)
        if not name:
            raise ConfigError(f"--design {spec!r}: no design name (e.g. none, entry-lru)")
        cls = design_class(canonical_name(name, "--design"))
        where = f"--design {spec}:"  # errors read "--design none:x: x: not key=value ..."
        parse_params(cls.NAME, extra, cls.param_table(), option=where)
        if any(k == "accept_threshold" for k, _ in split_kv(extra, option=where)):
            raise ConfigError(
                f"--design {spec}: accept_threshold is the guest's own "
                "(counters/after.json); drop it"
            )


def _check_counters(vmdir: str) -> None:
    """Refuse counters/{before,after}.json that are not the objects ztrace/vm/counters.py
    writes (a list, null, a string, or a non-object ``vmstat``), naming the file, instead of
    a KeyError or TypeError deep in the comparison. A missing file is left to the check."""
    import os

    from ztrace.errors import TraceFormatError

    for name in ("before.json", "after.json"):
        p = os.path.join(vmdir, "counters", name)
        if not os.path.isfile(p):
            continue
        try:
            with open(p, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TraceFormatError(p, f"cannot read counters ({exc})") from None
        if not isinstance(d, dict):
            kind = {list: "an array", str: "a string", type(None): "null"}.get(type(d), "a number")
            raise TraceFormatError(p, f"counters must be a JSON object, not {kind}")
        for key in ("vmstat", "zswap_debugfs") + (("meminfo",) if name == "after.json" else ()):
            if not isinstance(d.get(key), dict):
                raise TraceFormatError(p, f"no `{key}` object in the counters")
        if name == "after.json":
            if not isinstance(d.get("zswap_params", {}), dict):
                raise TraceFormatError(p, "`zswap_params` is not an object")
            try:
                int(d["meminfo"]["MemTotal_kB"])
                for k in ("max_pool_percent", "accept_threshold_percent"):
                    int(d.get("zswap_params", {}).get(k, 0))
            except (KeyError, TypeError, ValueError, OverflowError):
                raise TraceFormatError(
                    p, "meminfo.MemTotal_kB or a zswap_params percentage is not a number"
                ) from None


@click.command(
    "cross-kernel",
    epilog="""
\b
Examples:
  ztrace check cross-kernel --from replays/samples/guest-6.12-zswap \\
      --to replays/samples/guest-6.1-zram --json
  ztrace check cross-kernel --matrix /work/s3/matrix/runs --json     # every run, medians
  ztrace check cross-kernel --matrix DIR --run --reps 5 --cell zsstress-heavy
""",
)
@click.option("--from", "from_trace", type=click.Path(path_type=str), help="Capture A.")
@click.option("--to", "to_trace", type=click.Path(path_type=str), help="Capture B.")
@click.option(
    "--matrix",
    type=click.Path(path_type=str, file_okay=False),
    help="A `ztrace vm matrix` directory: every run replayed, median ratios over the runs.",
)
@matrix_cells_option("With --matrix: only these cells (default: all).")
@click.option(
    "--run",
    "drive",
    is_flag=True,
    help="With --matrix: first run (or resume) the VM matrix into it (ztrace vm matrix).",
)
@matrix_reps_option("With --run: runs per cell and kernel, interleaved ABAB.")
@click.option(
    "--runs",
    default=None,
    type=click.IntRange(1, 100),
    help="Replicas per prediction (interleaving x hold times) for the interval "
    "[default: 5 for --from/--to, 1 per run for --matrix].",
)
@click.option("--markdown", is_flag=True, help="With --matrix: print docs/validation.md's table.")
@click.option("--json", "as_json", is_flag=True, help='Print {"pairs": [...]} as JSON.')
@click.option(
    "--probe-cost/--no-probe-cost",
    default=True,
    help="Also predict with one whole probe pair's cost (measured on each trace's kernel: "
    "<trace>.kernel/probecost.json, `ztrace vm run -s probecost`) taken from every duration "
    "(--from/--to only).",
)
@click.option(
    "--hold-share",
    type=click.FloatRange(0, 1, min_open=True),
    callback=_finite,
    default=None,
    help="EXPERIMENT: hold this share of every measured zs_malloc/zs_free duration instead of "
    "the share measured on the trace's kernel (ztrace vm run -s holdtime); labelled in the "
    "output, never a default.",
)
@click.option(
    "--hold-end",
    type=click.Choice(list(HOLD_ENDS)),
    default=DEFAULT_END,
    help="Where in the measured hold-share bracket: low (default) = the measured hold less "
    "the lock probes' in-window cost as extra handlers measure it, high = the raw measured "
    "hold, mid = halfway.",
)
@click.option(
    "--stalls/--no-stalls",
    default=True,
    help="Stall lock holds at the rate measured in the trace (its zs_free calls past 5x the "
    "calibration's median) and cut traced calls at that cap (default); --no-stalls: "
    "neither.",
)
@click.option(
    "--closed-loop/--open-loop",
    default=True,
    help="A CPU whose op ends later than traced starts its next ops that much later "
    "(default); --open-loop: every op when traced.",
)
def cross_kernel(
    from_trace: str | None,
    to_trace: str | None,
    matrix: str | None,
    cells: tuple[str, ...],
    drive: bool,
    reps: int,
    runs: int | None,
    markdown: bool,
    as_json: bool,
    probe_cost: bool,
    hold_share: float | None,
    hold_end: str,
    stalls: bool,
    closed_loop: bool,
) -> None:
    """Replay two captures (two kernels) under both kernels' lock designs and compare each
    prediction, with its interval, against the contention each kernel measured (no VM);
    with --matrix, over every run of a VM scenario matrix (median ratio and its spread)."""
    if matrix is not None:
        if from_trace or to_trace:
            raise click.UsageError("--matrix and --from/--to: choose one")
        _cross_matrix(
            matrix,
            cells,
            drive,
            reps,
            runs or 1,
            markdown,
            as_json,
            hold_share,
            hold_end,
            model={"stalls": stalls, "closed_loop": closed_loop},
        )
        return
    if drive or cells or markdown:
        raise click.UsageError("--run, --cell and --markdown need --matrix DIR")
    if not from_trace or not to_trace:
        raise click.UsageError("give --from A --to B, or --matrix DIR")
    from ztrace.checks.crosskernel import cross_kernel as run

    out = run(
        from_trace,
        to_trace,
        runs=runs or 5,
        probe_cost_bound=probe_cost,
        hold_share=hold_share,
        hold_end=hold_end,
        stalls=stalls,
        closed_loop=closed_loop,
    )
    if as_json:
        click.echo(json.dumps(out))
        return
    for p in out["pairs"]:
        ratio = "-" if p["ratio"] is None else f"{p['ratio']:.2f}"
        lo, hi = p["interval"]
        click.echo(
            f"{p['kind']:12} {p['trace_kernel']:>22} -> {p['target_kernel']:<22} "
            f"{p['design']:6} {p['metric']:14} predicted {p['predicted']:>14.0f} "
            f"[{lo:.0f}, {hi:.0f}]  measured {p['measured']}  ratio {ratio}"
        )
    for n in out["notes"]:
        click.echo(f"note: {n}")


def _cross_matrix(
    root: str,
    cells: tuple[str, ...],
    drive: bool,
    reps: int,
    replicas: int,
    markdown: bool,
    as_json: bool,
    hold_share: float | None = None,
    hold_end: str = DEFAULT_END,
    model: dict[str, bool] | None = None,
) -> None:
    from ztrace.checks.crossmatrix import markdown as md
    from ztrace.checks.crossmatrix import matrix_pairs

    if drive:
        from ztrace.vm.matrix import cells_named, run_matrix

        run_matrix(
            root,
            cells_named(list(cells)),
            reps,
            on_run=lambda c, k, r, s: click.echo(f"{c.name} {k} r{r:02d}: {s}", err=True),
        )
    out = matrix_pairs(
        root,
        cells=list(cells) or None,
        replicas=replicas,
        log=lambda s: click.echo(s, err=True),
        hold_share=hold_share,
        hold_end=hold_end,
        **(model or {}),
    )
    if as_json:
        click.echo(json.dumps(out))
        return
    if markdown:
        click.echo(md(out))
        return
    for p in out["pairs"]:
        ri = p["ratio_interval"]
        ratio = "-" if p["ratio"] is None else f"{p['ratio']:.2f} [{ri[0]:.2f}, {ri[1]:.2f}]"
        click.echo(
            f"{p['scenario']:16} {p['kind']:12} {p['trace_kernel']:>22} -> "
            f"{p['target_kernel']:<22} {p['design']:6} {p['metric']:14} "
            f"predicted {p['predicted']:>14.0f} measured {p['measured']:>12.0f} "
            f"ratio {ratio} runs {p['runs']} {p['verdict']}"
        )
    for n in out["notes"]:
        click.echo(f"note: {n}")


@click.command(
    "holds",
    epilog="""\b
Examples:
  ztrace vm run -k 6.1 -s holdtime -p threads=4 -p size_fixed=1024 -p trace=1 -o /tmp/h61
  ztrace check holds /tmp/h61/trace
  ztrace check holds replays/samples/guest-6.1-zsstress-holds --json
""",
)
@click.argument("trace", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the check as JSON.")
def holds(trace: str, as_json: bool) -> None:
    """Replay a holdtime run's capture under its kernel's lock design at each end of the
    hold-share bracket measured in the same boot (TRACE.kernel/holdtime.json), against the
    contention the capture measured (docs/validation.md, session 23)."""
    from ztrace.checks.holdshare import check_holds, lines

    _emit(check_holds(trace), lines, as_json)


@click.command(
    "probewait",
    epilog="""\b
Examples:
  ztrace vm run -k 6.1 -s probewait -p reps=2 -o /tmp/pw61
  ztrace check probewait /tmp/pw61
  ztrace check probewait /tmp/pw61 --json
""",
)
@click.argument("run", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the check as JSON.")
def probewait(run: str, as_json: bool) -> None:
    """What the capture records as a spinlock wait when nothing holds the lock: the slowpath
    probe pair's own cost, per context (kthread, system call, after a zram write), alone and
    beside a zram writer, from a `-s probewait` run (docs/validation.md, session 28)."""
    from ztrace.checks.probewait import check_probewait, lines

    _emit(check_probewait(run), lines, as_json)


def _emit(res: dict[str, Any], lines: Callable[[dict[str, Any]], list[str]], as_json: bool) -> None:
    """A check's result as JSON, or as its text lines."""
    from ztrace.look.tables import render_json

    if as_json:
        click.echo(render_json(res, indent=1, sort_keys=False))
        return
    for line in lines(res):
        click.echo(line)


command.add_command(oracle)
command.add_command(locks)
command.add_command(lru_kernel)
command.add_command(cross_kernel)
command.add_command(holds)
command.add_command(probewait)
