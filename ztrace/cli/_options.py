"""Click options that several subcommands share, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ztrace.errors import ConfigError


def output_file_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-o/--output FILE`` (required), passed to the command as ``out``."""
    return click.option(
        "-o", "--output", "out", required=True, type=click.Path(path_type=str), help=help
    )


def output_dir_option(
    help: str | None = None, *, required: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-o/--output DIR`` (not an existing file), passed to the command as ``out``: the
    trace or results directory that synth, sweep and replay write."""
    return click.option(
        "-o", "--output", "out", required=required, type=click.Path(file_okay=False), help=help
    )


#: ``--force`` for commands that write a directory: check_dir_target(out, force=force) then
#: replaces an existing non-empty -o directory whole instead of refusing it.
force_option = click.option(
    "--force", is_flag=True, help="Replace an existing non-empty -o directory whole."
)


def unique_designs(option: str, names: list[str]) -> list[str]:
    """Refuse a design (or limit) named twice, under any alias, as --locks does."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ConfigError(f"{option}: {n} is given twice")
        seen.add(n)
    return names
