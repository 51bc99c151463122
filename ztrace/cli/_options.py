"""Click options that several subcommands share, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ztrace.errors import ConfigError


def not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback refusing ``-o ''``: an empty path would mean the current directory to
    some calls and nothing to others (replay then wrote nothing and said nothing)."""
    if value == "":
        raise click.BadParameter("is empty; give a path", ctx=ctx, param=param)
    return value


def _output_option(*names: str, required: bool, type: click.ParamType, help: str | None) -> Any:
    """The ``-o/--output`` option every writing command takes, passed as ``out``; empty is
    refused (an empty path wrote nothing and said nothing)."""
    return click.option(
        "-o", "--output", *names, "out", required=required, type=type, callback=not_empty, help=help
    )


def output_file_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-o/--output FILE`` (required, not empty), passed to the command as ``out``; what may
    be at the path is safeio.check_file_target's policy (an existing file needs --force)."""
    return _output_option(required=True, type=click.Path(path_type=str), help=help)


def output_dir_option(
    help: str | None = None, *, required: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-o/--output DIR`` (not an existing file), passed to the command as ``out``: the
    trace or results directory that capture, synth, sweep, replay and check oracle write.
    ``--out`` stays accepted: capture and check oracle spelled it so before session 9.
    An empty path is refused."""
    return _output_option("--out", required=required, type=click.Path(file_okay=False), help=help)


def matrix_reps_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--reps N`` (passed as ``reps``): runs of every cell on each kernel of a VM scenario
    matrix, for ``vm matrix`` and ``check cross-kernel --run``, which both drive
    ``ztrace.vm.matrix``; 1..100 (runs are numbered rNN)."""
    return click.option("--reps", default=5, type=click.IntRange(1, 100), help=help)


def matrix_cells_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--cell NAME`` (repeatable, passed as ``cells``): a VM scenario matrix's cells by name
    or scenario prefix (``ztrace.vm.matrix.cells_named``); none given: every cell."""
    return click.option("--cell", "cells", multiple=True, help=help)


#: ``--force`` for commands that write a directory: check_dir_target(out, force=force) then
#: replaces an existing non-empty -o directory whole instead of refusing it.
force_option = click.option(
    "--force", is_flag=True, help="Replace an existing non-empty -o directory whole."
)

#: ``--force`` for commands that write one file: check_file_target(out, force=force) then
#: replaces an existing regular -o file instead of refusing it (a device or FIFO is written
#: into with or without it).
force_file_option = click.option("--force", is_flag=True, help="Replace an existing -o file.")


def unique_designs(option: str, names: list[str]) -> list[str]:
    """Refuse a design (or limit) named twice, under any alias, as --locks does."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ConfigError(f"{option}: {n} is given twice")
        seen.add(n)
    return names
