"""The ``ztrace`` command.

Each subcommand lives in its own module ``ztrace/cli/<name>.py`` and exports a click
command named ``command``. Adding a subcommand is one file plus one row in ``COMMANDS``.
Modules are imported only when their command runs, so ``ztrace --help`` stays fast and a
heavy dependency (numba, bcc) is loaded only by the commands that need it.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from ztrace import __version__
from ztrace.errors import ConfigError, ZtraceError

# (command name, module under ztrace.cli, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("synth", "synth", "Write a seeded synthetic trace from a workload profile."),
    ("validate-trace", "validate_trace", "Check a trace against the format and summarise it."),
    ("capture", "capture", "Record zsmalloc/lock/zswap events with BPF to a Parquet trace (root)."),
    ("doctor", "doctor", "Show which capture probes work on this kernel, and why."),
    ("check", "check", "Hold the model against a real kernel: oracle, locks, lru-kernel."),
    ("validate", "validate", "Alias: `validate locks` = `check locks`."),
    ("dashboard", "dashboard", "Write one offline HTML file of linked charts (results or trace)."),
    ("export", "export", "Export a trace as Perfetto/Chrome trace-event JSON."),
    ("replay", "replay", "Replay a trace under lock designs (and LRU designs) in one pass."),
    ("sweep", "sweep", "Replay a swap trace under LRU designs x pool limits (sweep.parquet)."),
    ("fleet", "fleet", "Many hosts' traces x designs -> one Parquet dataset (on Ray); resumable."),
    (
        "compare",
        "compare",
        "Before/after deltas per design with bootstrap intervals (--json, --csv).",
    ),
    ("report", "report", "Print lock/LRU results like perf lock contention (--json, --csv)."),
    ("vm", "vm", "Run capture scenarios in stock Debian kernels (6.1, 6.12) under qemu."),
    ("classes", "classes", "Print zsmalloc's size classes (chain size 4..16 or ≤6.2 legacy)."),
    ("oracle", "oracle", "Alias: `oracle zram` = `check oracle`."),
    ("host", "host", "Workloads on this machine's zram device (writers for captures)."),
]


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, _, _ in COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for name, module, _ in COMMANDS:
            if name == cmd_name:
                mod = importlib.import_module(f"ztrace.cli.{module}")
                cmd: click.Command = mod.command
                return cmd
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table, so listing commands imports nothing heavy.
        rows = [(name, short) for name, _, short in COMMANDS]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# show_default: every subcommand's --help shows each option's default (its context inherits
# this one's); an option whose default stands for "none" (capture --pid 0) opts out.
@click.group(
    cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True}
)
@click.version_option(__version__, prog_name="ztrace")
def cli() -> None:
    """Capture, replay and look at zsmalloc allocator traces.

    \b
    Examples:
      ztrace classes --chain-size 8 --json
      ztrace synth --profile zram-parallel -o /tmp/t
      ztrace replay /tmp/t --locks class,pool --json
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every ZtraceError into one line and exit code 2."""
    from ztrace.format.safeio import WriteError, checked_stdout, quiet_stdout

    try:
        _check_args(sys.argv[1:] if argv is None else argv)
        checked_stdout()
        cli.main(args=argv, prog_name="ztrace", standalone_mode=False)
        if sys.stdout is not None:  # None when started with stdout closed (`>&-`)
            sys.stdout.flush()  # a full stdout fails here, inside the handlers below
    except ZtraceError as exc:
        if isinstance(exc, WriteError):
            quiet_stdout()  # what stdout still buffers must not fail again at exit
            if exc.errno == errno.EPIPE:
                sys.exit(0)  # `ztrace report R | head`: the reader had enough (BrokenPipeError)
        click.echo(f"ztrace: error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("ztrace: aborted", err=True)
        sys.exit(130)
    except click.BadParameter as exc:
        # "--events: 'x' is not a valid integer." -- the option first, as for our own errors
        hint = exc.param.opts[0] if exc.param is not None and exc.param.opts else exc.param_hint
        where = f"{hint}: " if hint and exc.message else ""
        msg = exc.message or exc.format_message()
        click.echo(f"ztrace: error: {where}{_one_line(msg)}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        # usage errors (no such option, missing argument) are bad input too: one line, exit 2
        click.echo(f"ztrace: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)


def _check_args(args: list[str]) -> None:
    """Refuse an argument holding bytes this locale could not decode (Python keeps them as
    lone surrogates): pyarrow, JSON and HTML take UTF-8 only, so such a path or title would
    end in a UnicodeEncodeError traceback deep inside a reader or writer (fuzz report s22,
    item 4: ``LC_ALL=POSIX ztrace validate-trace 'trâce☃'``)."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(arg)
            shown = raw.decode("ascii", "backslashreplace")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"{shown}: not a UTF-8 name; ztrace needs UTF-8 names") from None
            raise ConfigError(
                f"{shown}: a UTF-8 name, but this locale's encoding is "
                f"{sys.getfilesystemencoding()}; run under a UTF-8 locale (LC_ALL=C.UTF-8)"
            ) from None


def _one_line(msg: str) -> str:
    """Errors are one line (a path or value holding a newline must not break that)."""
    return " ".join(msg.split("\n")).strip()
