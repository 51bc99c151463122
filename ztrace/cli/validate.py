"""``ztrace validate locks``: alias of ``ztrace check locks`` (kept for scripts and docs)."""

from __future__ import annotations

import click

from ztrace.cli.check import locks


@click.group("validate", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Check replay predictions against the running kernel (= check locks; needs root)."""


command.add_command(locks)
