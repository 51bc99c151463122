"""``ztrace validate locks|cross-kernel``: aliases of ``ztrace check locks|cross-kernel``."""

from __future__ import annotations

import click

from ztrace.cli.check import cross_kernel, locks


@click.group("validate", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Check replay predictions against the running kernel (= check locks; needs root)."""


command.add_command(locks)
command.add_command(cross_kernel)
