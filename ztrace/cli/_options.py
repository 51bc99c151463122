"""Click options that several subcommands share, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def output_file_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-o/--output FILE`` (required), passed to the command as ``out``."""
    return click.option(
        "-o", "--output", "out", required=True, type=click.Path(path_type=str), help=help
    )
