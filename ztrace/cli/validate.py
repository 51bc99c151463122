"""``ztrace validate``: experiments that check replay predictions against this host."""

from __future__ import annotations

import json

import click


@click.group("validate", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Check replay predictions against the running kernel (needs root)."""


def _fmt_ns(ns: float) -> str:
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= div:
            return f"{ns / div:.2f} {unit}"
    return f"{ns:.0f} ns"


@command.command(
    "locks",
    epilog="""
\b
Examples:
  ztrace validate locks
  ztrace validate locks --writers 4 --seconds 3 --json > validate-locks.json
""",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option(
    "--writers",
    default=4,
    show_default=True,
    type=click.IntRange(2, 64),
    help="Writer threads in the calibration run (pinned round-robin to CPUs).",
)
@click.option(
    "--seconds",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.2, 120),
    help="Length of each workload run.",
)
@click.option(
    "--discard-every",
    default=4,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Validation runs discard each writer's region every K passes.",
)
@click.option("--no-calibrate", is_flag=True, help="Only the cost model's default hold times.")
def locks(
    as_json: bool, writers: int, seconds: float, discard_every: int, no_calibrate: bool
) -> None:
    """Measure real zsmalloc class-lock contention on /dev/zram0, replay the captured op
    stream under `class`, and compare contended acquisitions and total wait."""
    from ztrace.capture.features import require_privileges

    require_privileges()
    from ztrace.validate.locks import validate

    res = validate(
        writers=writers, seconds=seconds, discard_every=discard_every, calibrate=not no_calibrate
    )
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
        return
    click.echo(
        f"kernel {res['host']['kernel']}, {res['host']['cpus']} CPUs, design `class`, "
        f"hold-time scale {res['hold_scale']:.2f} x cost-model defaults"
    )
    click.echo(
        f"{'run':<12}{'writers':>8}{'discard':>8}{'ops':>9}{'lost':>6}"
        f"{'contended':>11}{'total wait':>13}  {'predicted':<10}{'contended':>10}"
        f"{'ratio':>7}{'total wait':>13}{'ratio':>7}"
    )
    for r in res["runs"]:
        preds = [("default", r["default"])]
        if "fitted" in r:
            preds.append(("fitted", r["fitted"]))
        if "calibrated" in r:
            preds.append(("calibrated", r["calibrated"]))
        for i, (name, p) in enumerate(preds):
            lead = (
                (
                    f"{r['role']:<12}{r['writers']:>8}{r['discard_every'] or '-':>8}"
                    f"{r['ops_malloc'] + r['ops_free']:>9}{r['lost_events']:>6}"
                    f"{r['contended']:>11}{_fmt_ns(r['wait_ns']):>13}"
                )
                if i == 0
                else " " * 67
            )
            click.echo(
                f"{lead}  {name:<10}{p['contended']:>10}{p['ratio_contended']:>7.2f}"
                f"{_fmt_ns(p['wait_ns']):>13}{p['ratio_wait']:>7.2f}"
            )
    click.echo("")
    for n in res["notes"]:
        click.echo(f"note: {n}")


@command.command(
    "cross-kernel",
    epilog="""
\b
Examples:
  ztrace validate cross-kernel --from replays/samples/guest-6.12-zswap \\
      --to replays/samples/guest-6.1-zram --json
""",
)
@click.option(
    "--from", "from_trace", required=True, type=click.Path(path_type=str), help="Capture A."
)
@click.option("--to", "to_trace", required=True, type=click.Path(path_type=str), help="Capture B.")
@click.option(
    "--runs",
    default=5,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Replicas per prediction (interleaving x hold times) for the interval.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"pairs": [...]} as JSON.')
def cross_kernel(from_trace: str, to_trace: str, runs: int, as_json: bool) -> None:
    """Replay two captures (two kernels) under both kernels' lock designs and compare each
    prediction, with its interval, against the contention each kernel measured (no VM)."""
    from ztrace.validate.crosskernel import cross_kernel as run

    out = run(from_trace, to_trace, runs=runs)
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
