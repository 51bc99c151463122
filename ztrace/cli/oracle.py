"""``ztrace oracle zram``: alias of ``ztrace check oracle`` (kept for scripts and docs)."""

from __future__ import annotations

import click

from ztrace.cli.check import oracle


@click.group(name="oracle", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Check the zsmalloc model page-exactly against the running kernel (= check oracle)."""


command.add_command(oracle, name="zram")
