"""``ztrace doctor``: which probes work on the running kernel, which fall back, and why."""

from __future__ import annotations

import json

import click


@click.command("doctor", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--check-fentry",
    is_flag=True,
    help="Load and attach a real fentry program and count its calls (root; ~2 s).",
)
def command(as_json: bool, check_fentry: bool) -> None:
    """Report each capture probe as available / fallback / missing on this kernel, and why.

    \b
    Examples:
      ztrace doctor
      ztrace doctor --json > doctor.json
    """
    from ztrace.capture.features import detect

    f = detect()
    fentry: tuple[bool, str] | None = None
    if check_fentry:
        from ztrace.capture.features import require_privileges
        from ztrace.capture.loader import check_fentry as run_check

        require_privileges()
        fentry = run_check()
    if as_json:
        out = f.to_json()
        if fentry is not None:
            out["fentry_check"] = {"works": fentry[0], "detail": fentry[1]}
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    click.echo(
        f"kernel {f.release}   bcc {f.bcc or 'not importable'}   "
        f"privileges: {f.privilege_detail}{'' if f.privileged else ' (capture refuses)'}"
    )
    click.echo(
        f"kprobes: {'yes' if f.kprobes else 'no'} ({f.kprobes_detail})   "
        f"tracefs: {f.tracefs or 'not mounted'}   BTF: {'yes' if f.btf else 'no'}   "
        f"ring buffer: {'yes' if f.ringbuf else 'no (< 5.8)'}"
    )
    ff = "unreadable" if f.ftrace_functions is None else f"{f.ftrace_functions} entries"
    kf = "unknown" if f.kfunc is None else ("yes" if f.kfunc else "no")
    click.echo(
        f"available_filter_functions: {ff}   kfunc/fentry: bcc check says {kf} "
        "(unverified; capture uses kprobes and tracepoints)"
    )
    if fentry is not None:
        click.echo(
            f"fentry, checked for real: {'works' if fentry[0] else 'does not work'}: {fentry[1]}"
        )
    click.echo("")
    click.echo(f"{'probe':<10}{'status':<11}{'mode':<17}why")
    for r in f.probes.values():
        click.echo(f"{r.name:<10}{r.status:<11}{r.mode:<17}{r.detail}")
        if r.events:
            click.echo(f"{'':<38}events: {', '.join(r.events)}")
        for m in r.missing:
            click.echo(f"{'':<38}missing: {m}")
    click.echo("")
    for k, v in f.signatures.items():
        click.echo(f"{k + ':':<21}{v}")
